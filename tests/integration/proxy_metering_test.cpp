#include <optional>
#include <set>
#include <string>
#include <vector>

#include <boost/test/unit_test.hpp>

#include "schemas/chat.hpp"
#include "schemas/pricing.hpp"
#include "tests/integration/harness.hpp"
#include "tests/support/mock_upstream_process.hpp"

// The metered proxy path charges exactly what the upstream reported, caps max_tokens to what
// the balance covers, and never lets a test key reach the paid upstream.

using namespace tollgate::test;
using namespace tollgate::test::integration;
using nlohmann::json;

namespace {

/// gpt-mock's price (see mock_gateway_config).
const tollgate::schemas::model_price mock_price{1'000'000, 2'000'000};

/// Three words: the mock reports 3 prompt tokens for it.
const std::string short_prompt = "hello there mock";

/// What gpt-mock costs for tokens as the mock counts them: 1 per prompt, 2 per completion token.
int64_t mock_cost(int64_t prompt_tokens, int64_t completion_tokens) {
  return tollgate::schemas::cost_of(mock_price, prompt_tokens, completion_tokens);
}

/// The gateway's own prompt estimate for `body`, as its validator computes it.
int64_t estimated_prompt(const json& body) {
  auto parsed = tollgate::schemas::parse_chat_request(body.dump());
  BOOST_TEST_REQUIRE(static_cast<bool>(parsed));
  return parsed->prompt_tokens;
}

/// A streamed answer, taken apart.
struct parsed_stream {
  std::vector<json> chunks; ///< Every event before [DONE], parsed.
  std::string text;         ///< The concatenated delta contents.
  std::vector<json> usage_chunks;
  bool done = false; ///< Ended with [DONE] (and nothing after it).
};

parsed_stream parse_stream(const std::string& body) {
  parsed_stream out;
  for (const auto& data : sse_data(body)) {
    BOOST_TEST(!out.done, "an event after [DONE]: " << data);
    if (data == "[DONE]") {
      out.done = true;
      continue;
    }
    auto chunk = json::parse(data, nullptr, false);
    BOOST_TEST_REQUIRE(chunk.is_object(), "not a JSON event: " << data);
    if (chunk.contains("usage") && chunk["usage"].is_object())
      out.usage_chunks.push_back(chunk);
    if (chunk.contains("choices"))
      for (const auto& choice : chunk["choices"])
        if (choice.contains("delta") && choice["delta"].contains("content") &&
            choice["delta"]["content"].is_string())
          out.text += choice["delta"]["content"].get<std::string>();
    out.chunks.push_back(std::move(chunk));
  }
  return out;
}

/// The ledger entry of `request_id`, if the user has one.
std::optional<tollgate::schemas::ledger_entry>
entry_of(soci::session& sql, const std::string& user_id, const std::string& request_id) {
  for (auto& e : ledger_of(sql, user_id))
    if (e.request_id == request_id)
      return e;
  return std::nullopt;
}

/// The last request the mock received.
json last_upstream_body(mock_upstream& mock) {
  auto requests = mock.requests();
  BOOST_TEST_REQUIRE(!requests.empty(), "the mock received no request");
  return requests.back()["body"];
}

/// Checks the stored outcome of one successful call: one charge entry of `cost` and a usage
/// row with the mock's token counts.
void expect_charged(soci::session& sql, const metered_user& user, const std::string& request_id,
                    int64_t prompt_tokens, int64_t completion_tokens, int64_t cost,
                    const std::string& what) {
  BOOST_TEST_CONTEXT(what << " (" << request_id << ")") {
    auto entry = entry_of(sql, user.id, request_id);
    BOOST_TEST_REQUIRE(entry.has_value(), "no ledger entry");
    BOOST_TEST(entry->kind == "charge");
    BOOST_TEST(entry->amount == -cost);
    auto usage = usage_row_of(sql, request_id);
    BOOST_TEST_REQUIRE(usage.has_value(), "no usage row");
    BOOST_TEST(usage->user_id == user.id);
    BOOST_TEST(usage->key_id == user.key_id);
    BOOST_TEST(usage->model == "gpt-mock");
    BOOST_TEST(usage->deployment == "mock/mock-1");
    BOOST_TEST(usage->prompt_tokens == prompt_tokens);
    BOOST_TEST(usage->completion_tokens == completion_tokens);
    BOOST_TEST(usage->cost == cost);
    BOOST_TEST(usage->status == "ok");
    BOOST_TEST(usage->latency_ms >= 0);
    BOOST_TEST(usage->ttft_ms >= 0);
    BOOST_TEST(usage->ttft_ms <= usage->latency_ms);
  }
}

/// Non-streamed and streamed calls, and an embedding, each charge exactly the price of the
/// tokens the mock reported; a stream shows the usage chunk only when the caller asked, while
/// the upstream is always asked for it.
void check_exact_charges(store kind) {
  mock_upstream mock;
  test_gateway gw(kind, options_with_config(mock_gateway_config(mock.base_url())));
  auto admin = gw.admin();
  constexpr int64_t opening = 10'000;
  auto ada = make_metered_user(admin, "ada@example.com", opening);
  auto client = gw.consumer(ada.key);

  auto models = client.get("/v1/models");
  BOOST_TEST_REQUIRE(models.status == 200, models.body);
  bool listed = false;
  auto listing = models.json();
  for (const auto& m : listing["data"])
    if (m["id"] == "gpt-mock") {
      listed = true;
      BOOST_TEST(m["pricing"]["input"] == 1'000'000);
      BOOST_TEST(m["pricing"]["output"] == 2'000'000);
    }
  BOOST_TEST(listed, models.body);

  // Not streamed: 3 prompt and 10 completion tokens.
  auto plain = client.post("/v1/chat/completions", dump(chat_body("gpt-mock", short_prompt, 10)));
  BOOST_TEST_REQUIRE(plain.status == 200, plain.body);
  const auto plain_cost = mock_cost(3, 10);
  auto plain_body = plain.json();
  BOOST_TEST(plain_body["object"] == "chat.completion");
  BOOST_TEST(plain_body["usage"]["prompt_tokens"] == 3);
  BOOST_TEST(plain_body["usage"]["completion_tokens"] == 10);
  BOOST_TEST(word_count(plain_body["choices"][0]["message"]["content"].get<std::string>()) == 10u);
  BOOST_TEST(plain.header("x-tollgate-cost") == std::to_string(plain_cost));
  const auto plain_id = plain.header("x-request-id");
  BOOST_TEST_REQUIRE(!plain_id.empty());
  auto upstream = last_upstream_body(mock);
  BOOST_TEST(upstream["model"] == "mock-1");
  BOOST_TEST(upstream["max_tokens"] == 10);

  // Streamed without asking for usage: 12 completion tokens, no usage chunk shown.
  auto quiet = client.post("/v1/chat/completions",
                           dump(chat_body("gpt-mock", short_prompt, 12, true, false)));
  BOOST_TEST_REQUIRE(quiet.status == 200, quiet.body);
  BOOST_TEST(quiet.header("content-type").starts_with("text/event-stream"));
  const auto quiet_cost = mock_cost(3, 12);
  const auto quiet_id = quiet.header("x-request-id");
  BOOST_TEST_REQUIRE(!quiet_id.empty());
  auto quiet_stream = parse_stream(quiet.body);
  BOOST_TEST(quiet_stream.done, quiet.body);
  BOOST_TEST(quiet_stream.usage_chunks.empty(), "usage shown unasked: " << quiet.body);
  for (const auto& chunk : quiet_stream.chunks)
    BOOST_TEST(!chunk["choices"].empty(), "a chunk without choices: " << chunk.dump());
  BOOST_TEST(word_count(quiet_stream.text) == 12u);
  BOOST_TEST(quiet_stream.text.starts_with("mock reply"));
  upstream = last_upstream_body(mock);
  BOOST_TEST(upstream["model"] == "mock-1");
  BOOST_TEST(upstream["stream"] == true);
  BOOST_TEST(upstream["stream_options"]["include_usage"] == true, upstream.dump());

  // Streamed and asking for usage: the usage chunk comes last, before [DONE].
  auto told = client.post("/v1/chat/completions",
                          dump(chat_body("gpt-mock", short_prompt, 12, true, true)));
  BOOST_TEST_REQUIRE(told.status == 200, told.body);
  const auto told_id = told.header("x-request-id");
  auto told_stream = parse_stream(told.body);
  BOOST_TEST(told_stream.done, told.body);
  BOOST_TEST_REQUIRE(told_stream.usage_chunks.size() == 1u, told.body);
  BOOST_TEST(told_stream.chunks.back() == told_stream.usage_chunks.front());
  const auto& usage = told_stream.usage_chunks.front()["usage"];
  BOOST_TEST(usage["prompt_tokens"] == 3);
  BOOST_TEST(usage["completion_tokens"] == 12);
  BOOST_TEST(usage["total_tokens"] == 15);
  BOOST_TEST(word_count(told_stream.text) == 12u);
  upstream = last_upstream_body(mock);
  BOOST_TEST(upstream["stream_options"]["include_usage"] == true, upstream.dump());

  // An embedding: prompt tokens only.
  auto embedded =
      client.post("/v1/embeddings", dump({{"model", "gpt-mock"}, {"input", "one two three four"}}));
  BOOST_TEST_REQUIRE(embedded.status == 200, embedded.body);
  const auto embed_cost = mock_cost(4, 0);
  BOOST_TEST(embedded.header("x-tollgate-cost") == std::to_string(embed_cost));
  const auto embed_id = embedded.header("x-request-id");
  BOOST_TEST(last_upstream_body(mock)["model"] == "mock-1");

  std::set<std::string> ids{plain_id, quiet_id, told_id, embed_id};
  BOOST_TEST(ids.size() == 4u, "request ids are not distinct");
  auto sql = gw.open_db();
  expect_charged(*sql, ada, plain_id, 3, 10, plain_cost, "not streamed");
  expect_charged(*sql, ada, quiet_id, 3, 12, quiet_cost, "streamed, usage not asked");
  expect_charged(*sql, ada, told_id, 3, 12, quiet_cost, "streamed, usage asked");
  expect_charged(*sql, ada, embed_id, 4, 0, embed_cost, "embedding");
  const auto expected = opening - plain_cost - 2 * quiet_cost - embed_cost;
  BOOST_TEST(check_ledger_invariants(*sql, ada.id) == expected);
  BOOST_TEST(ledger_of(*sql, ada.id).size() == 5u);
  BOOST_TEST(usage_of(*sql, ada.id).size() == 4u);
  auto me = me_of(gw, ada.key);
  BOOST_TEST(me["balance"] == expected);
  BOOST_TEST(me["held"] == 0);
  BOOST_TEST(me["available"] == expected);
  BOOST_TEST(mock.stats()["requests"] == 4);
}

/// A caller who gives no max_tokens (or more than the balance covers) on a small balance gets
/// an answer capped to what the balance covers; one who cannot afford even a minimal answer
/// gets 402. The balance never goes negative.
void check_capped_max_tokens(store kind) {
  mock_upstream mock;
  // The mock answers with as many tokens as max_tokens allows.
  auto set = mock.settings({{"completion_tokens", 100'000}});
  BOOST_TEST_REQUIRE(set.status == 200, set.body);
  test_gateway gw(kind, options_with_config(mock_gateway_config(mock.base_url())));
  auto admin = gw.admin();
  constexpr int64_t opening = 100;
  auto bob = make_metered_user(admin, "bob@example.com", opening);
  auto client = gw.consumer(bob.key);

  // No max_tokens: the model's default of 4096 would cost far more than 100.
  auto body = chat_body("gpt-mock", short_prompt);
  const auto estimate = estimated_prompt(body);
  auto response = client.post("/v1/chat/completions", dump(body));
  BOOST_TEST_REQUIRE(response.status == 200, response.body);
  auto sent = last_upstream_body(mock);
  BOOST_TEST_REQUIRE(sent.contains("max_tokens"), "no max_tokens sent upstream: " << sent.dump());
  const auto capped = sent["max_tokens"].get<int64_t>();
  BOOST_TEST(capped >= 16);
  // The most completion tokens whose worst case the balance covers.
  BOOST_TEST(mock_cost(estimate, capped) <= opening);
  BOOST_TEST(mock_cost(estimate, capped + 1) > opening);
  const auto cost = mock_cost(3, capped);
  BOOST_TEST(response.json()["usage"]["completion_tokens"] == capped);
  BOOST_TEST(response.header("x-tollgate-cost") == std::to_string(cost));
  BOOST_TEST(cost <= opening);
  auto sql = gw.open_db();
  BOOST_TEST(check_ledger_invariants(*sql, bob.id) == opening - cost);

  // What is left cannot cover 16 tokens: refused with 402, nothing sent upstream.
  const auto left = opening - cost;
  BOOST_TEST_REQUIRE(mock_cost(estimate, 16) > left);
  auto snapshot = take_snapshot(*sql);
  auto refused = client.post("/v1/chat/completions", dump(chat_body("gpt-mock", short_prompt)));
  expect_error(refused, 402, "insufficient_quota", "insufficient_quota", std::nullopt,
               "balance below a minimal call");
  auto refused_stream =
      client.post("/v1/chat/completions", dump(chat_body("gpt-mock", short_prompt, 0, true, true)));
  expect_error(refused_stream, 402, "insufficient_quota", "insufficient_quota", std::nullopt,
               "balance below a minimal call, streamed");
  BOOST_TEST(take_snapshot(*gw.open_db()) == snapshot);
  BOOST_TEST(mock.stats()["requests"] == 1);

  // A stream asking for more than the balance covers is capped the same way.
  constexpr int64_t top_up = 300;
  add_credits(admin, bob.id, top_up);
  const auto available = left + top_up;
  auto streamed = client.post("/v1/chat/completions",
                              dump(chat_body("gpt-mock", short_prompt, 5000, true, true)));
  BOOST_TEST_REQUIRE(streamed.status == 200, streamed.body);
  sent = last_upstream_body(mock);
  const auto stream_cap = sent["max_tokens"].get<int64_t>();
  BOOST_TEST(stream_cap < 5000);
  BOOST_TEST(mock_cost(estimate, stream_cap) <= available);
  BOOST_TEST(mock_cost(estimate, stream_cap + 1) > available);
  BOOST_TEST(sent["stream_options"]["include_usage"] == true);
  auto events = sse_data(streamed.body);
  BOOST_TEST_REQUIRE(!events.empty());
  BOOST_TEST(events.back() == "[DONE]");
  const auto stream_cost = mock_cost(3, stream_cap);
  auto entry = entry_of(*gw.open_db(), bob.id, streamed.header("x-request-id"));
  BOOST_TEST_REQUIRE(entry.has_value());
  BOOST_TEST(entry->amount == -stream_cost);

  sql = gw.open_db();
  auto balance = check_ledger_invariants(*sql, bob.id);
  BOOST_TEST(balance == available - stream_cost);
  BOOST_TEST(balance >= 0);
  auto me = me_of(gw, bob.key);
  BOOST_TEST(me["balance"] == balance);
  BOOST_TEST(me["held"] == 0);
}

/// Test keys are answered by the built-in echo provider, free, even for the priced model and
/// even without credits; the paid upstream never sees them.
void check_test_keys(store kind) {
  mock_upstream mock;
  test_gateway gw(kind, options_with_config(mock_gateway_config(mock.base_url())));
  auto admin = gw.admin();
  constexpr int64_t opening = 1'000;
  auto carol = make_metered_user(admin, "carol@example.com", opening, {{"environment", "test"}});
  auto dave = make_metered_user(admin, "dave@example.com", 0, {{"environment", "test"}});
  BOOST_TEST_REQUIRE(carol.key.starts_with("tg-test-"));

  struct free_call {
    std::string what;
    const metered_user* user;
    json body;
  };
  const std::vector<free_call> calls{
      {"priced model", &carol, chat_body("gpt-mock", short_prompt, 10)},
      {"priced model, no max_tokens", &carol, chat_body("gpt-mock", short_prompt)},
      {"priced model, streamed", &carol, chat_body("gpt-mock", short_prompt, 10, true, true)},
      {"free model", &carol, chat_body("echo-1", short_prompt, 10)},
      {"priced model, no credits", &dave, chat_body("gpt-mock", short_prompt, 10)},
      {"priced model, no credits, streamed", &dave,
       chat_body("gpt-mock", short_prompt, 0, true, false)},
      {"embedding", &carol, json{{"model", "gpt-mock"}, {"input", "one two three"}}},
  };
  std::vector<std::string> ids;
  for (const auto& c : calls) {
    bool streamed = c.body.value("stream", false);
    bool embedding = c.body.contains("input");
    auto response = gw.consumer(c.user->key)
                        .post(embedding ? "/v1/embeddings" : "/v1/chat/completions", dump(c.body));
    BOOST_TEST_CONTEXT(c.what << ": " << response.status << " " << response.body) {
      BOOST_TEST_REQUIRE(response.status == 200);
      ids.push_back(response.header("x-request-id"));
      if (streamed) {
        auto events = sse_data(response.body);
        BOOST_TEST_REQUIRE(events.size() >= 2u);
        BOOST_TEST(events.back() == "[DONE]");
      } else {
        BOOST_TEST(response.header("x-tollgate-cost") == "0");
        if (!embedding)
          BOOST_TEST(
              !response.json()["choices"][0]["message"]["content"].get<std::string>().empty());
      }
    }
  }

  BOOST_TEST(mock.stats()["requests"] == 0);
  BOOST_TEST(mock.requests().empty());
  auto sql = gw.open_db();
  BOOST_TEST(check_ledger_invariants(*sql, carol.id) == opening);
  BOOST_TEST(check_ledger_invariants(*sql, dave.id) == 0);
  BOOST_TEST(ledger_of(*sql, carol.id).size() == 1u);
  BOOST_TEST(ledger_of(*sql, dave.id).empty());
  for (std::size_t i = 0; i < ids.size(); ++i)
    BOOST_TEST_CONTEXT(calls[i].what) {
      auto usage = usage_row_of(*sql, ids[i]);
      BOOST_TEST_REQUIRE(usage.has_value());
      BOOST_TEST(usage->cost == 0);
      BOOST_TEST(usage->status == "ok");
      BOOST_TEST(!usage->deployment.starts_with("mock/"), usage->deployment);
    }
  auto me = me_of(gw, carol.key);
  BOOST_TEST(me["balance"] == opening);
  BOOST_TEST(me["held"] == 0);
}

} // namespace

BOOST_AUTO_TEST_SUITE(proxy_metering_sqlite)

BOOST_AUTO_TEST_CASE(exact_charges) {
  check_exact_charges(store::sqlite);
}

BOOST_AUTO_TEST_CASE(capped_max_tokens) {
  check_capped_max_tokens(store::sqlite);
}

BOOST_AUTO_TEST_CASE(test_keys_are_free) {
  check_test_keys(store::sqlite);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(proxy_metering_live)

BOOST_AUTO_TEST_CASE(exact_charges) {
  check_exact_charges(store::postgresql);
}

BOOST_AUTO_TEST_CASE(capped_max_tokens) {
  check_capped_max_tokens(store::postgresql);
}

BOOST_AUTO_TEST_CASE(test_keys_are_free) {
  check_test_keys(store::postgresql);
}

BOOST_AUTO_TEST_SUITE_END()
