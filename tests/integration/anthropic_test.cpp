#include <optional>
#include <string>
#include <vector>

#include <boost/test/unit_test.hpp>

#include "schemas/pricing.hpp"
#include "tests/integration/harness.hpp"
#include "tests/support/mock_upstream_process.hpp"

// A provider of kind anthropic: callers speak chat completions, the upstream hears Anthropic's
// Messages API, and the charge is the price of the tokens the upstream reported.

using namespace tollgate::test;
using namespace tollgate::test::integration;
using nlohmann::json;

namespace {

const tollgate::schemas::model_price claude_price{1'000'000, 2'000'000};
const std::string api_key_env = "TOLLGATE_TEST_ANTHROPIC_KEY";
const std::string api_key = "sk-ant-test-key";

/// A gateway with model `claude-mock` on provider `claude` (kind anthropic, the mock behind it).
gateway_options anthropic_gateway(const std::string& mock_base_url) {
  json config{{"providers", json::array({{{"name", "claude"},
                                          {"kind", "anthropic"},
                                          {"base_url", mock_base_url},
                                          {"api_key_env", api_key_env}}})},
              {"models", json::array({{{"name", "claude-mock"},
                                       {"deployments", json::array({{{"provider", "claude"},
                                                                     {"model", "claude-3-mock"}}})},
                                       {"input_price", claude_price.input},
                                       {"output_price", claude_price.output}}})}};
  auto options = options_with_config(config);
  options.env[api_key_env] = api_key;
  return options;
}

/// A chat body with a system prompt (3 words) and a user message (3 words).
json claude_body(int64_t max_tokens, bool stream = false, bool include_usage = false) {
  json body{{"model", "claude-mock"},
            {"messages", json::array({{{"role", "system"}, {"content", "be brief please"}},
                                      {{"role", "user"}, {"content", "hello there mock"}}})}};
  if (max_tokens > 0)
    body["max_tokens"] = max_tokens;
  if (stream)
    body["stream"] = true;
  if (include_usage)
    body["stream_options"] = {{"include_usage", true}};
  return body;
}

/// The mock counts the system prompt and the user message: 6 prompt tokens.
constexpr int64_t mock_prompt_tokens = 6;

int64_t claude_cost(int64_t prompt_tokens, int64_t completion_tokens) {
  return tollgate::schemas::cost_of(claude_price, prompt_tokens, completion_tokens);
}

struct parsed_stream {
  std::vector<json> chunks; ///< Every event before [DONE], parsed.
  std::string text;
  std::vector<json> usage_chunks;
  std::vector<json> errors;
  std::vector<std::string> finish_reasons;
  bool done = false;
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
    if (chunk.contains("error"))
      out.errors.push_back(chunk);
    if (chunk.contains("usage") && chunk["usage"].is_object())
      out.usage_chunks.push_back(chunk);
    if (chunk.contains("choices"))
      for (const auto& choice : chunk["choices"]) {
        const auto& delta = choice["delta"];
        if (delta.contains("content") && delta["content"].is_string())
          out.text += delta["content"].get<std::string>();
        if (choice.contains("finish_reason") && choice["finish_reason"].is_string())
          out.finish_reasons.push_back(choice["finish_reason"].get<std::string>());
      }
    out.chunks.push_back(std::move(chunk));
  }
  return out;
}

/// The last request the mock received, checked to be an Anthropic one from tollgate.
json last_anthropic_request(mock_upstream& mock) {
  auto requests = mock.requests();
  BOOST_TEST_REQUIRE(!requests.empty(), "the mock received no request");
  auto last = requests.back();
  BOOST_TEST(last["path"] == "/v1/messages");
  BOOST_TEST(last["headers"]["x-api-key"] == api_key);
  BOOST_TEST(last["headers"]["anthropic-version"] == "2023-06-01");
  BOOST_TEST(!last["headers"].contains("authorization"));
  const auto& body = last["body"];
  BOOST_TEST(body["model"] == "claude-3-mock");
  BOOST_TEST(body["system"] == "be brief please", body.dump());
  BOOST_TEST(body["messages"] == json::parse(R"([{"role":"user","content":[{"type":"text",
                                  "text":"hello there mock"}]}])"),
             body.dump());
  BOOST_TEST(!body.contains("stream_options"));
  return body;
}

/// One charge of `cost` and a usage row with these tokens.
void expect_charged(soci::session& sql, const metered_user& user, const std::string& request_id,
                    int64_t prompt_tokens, int64_t completion_tokens, const std::string& what) {
  BOOST_TEST_CONTEXT(what << " (" << request_id << ")") {
    const auto cost = claude_cost(prompt_tokens, completion_tokens);
    std::optional<tollgate::schemas::ledger_entry> entry;
    for (auto& e : ledger_of(sql, user.id))
      if (e.request_id == request_id)
        entry = e;
    BOOST_TEST_REQUIRE(entry.has_value(), "no ledger entry");
    BOOST_TEST(entry->kind == "charge");
    BOOST_TEST(entry->amount == -cost);
    auto usage = usage_row_of(sql, request_id);
    BOOST_TEST_REQUIRE(usage.has_value(), "no usage row");
    BOOST_TEST(usage->model == "claude-mock");
    BOOST_TEST(usage->deployment == "claude/claude-3-mock");
    BOOST_TEST(usage->prompt_tokens == prompt_tokens);
    BOOST_TEST(usage->completion_tokens == completion_tokens);
    BOOST_TEST(usage->cost == cost);
    BOOST_TEST(usage->status == "ok");
  }
}

} // namespace

BOOST_AUTO_TEST_SUITE(anthropic_sqlite)

BOOST_AUTO_TEST_CASE(round_trips_charge_the_reported_tokens) {
  mock_upstream mock;
  test_gateway gw(store::sqlite, anthropic_gateway(mock.base_url()));
  auto admin = gw.admin();
  constexpr int64_t opening = 100'000;
  auto ada = make_metered_user(admin, "ada@example.com", opening);
  auto client = gw.consumer(ada.key);

  // Not streamed, 10 of the mock's 16 tokens: Anthropic's max_tokens stop is OpenAI's length.
  auto plain = client.post("/v1/chat/completions", dump(claude_body(10)));
  BOOST_TEST_REQUIRE(plain.status == 200, plain.body);
  auto answer = plain.json();
  BOOST_TEST(answer["object"] == "chat.completion");
  BOOST_TEST(answer["model"] == "claude-3-mock");
  BOOST_TEST_REQUIRE(answer["choices"].size() == 1u);
  BOOST_TEST(answer["choices"][0]["message"]["role"] == "assistant");
  auto text = answer["choices"][0]["message"]["content"].get<std::string>();
  BOOST_TEST(text.starts_with("mock reply"));
  BOOST_TEST(word_count(text) == 10u);
  BOOST_TEST(answer["choices"][0]["finish_reason"] == "length");
  BOOST_TEST(answer["usage"]["prompt_tokens"] == mock_prompt_tokens);
  BOOST_TEST(answer["usage"]["completion_tokens"] == 10);
  BOOST_TEST(answer["usage"]["total_tokens"] == mock_prompt_tokens + 10);
  BOOST_TEST(plain.header("x-tollgate-cost") ==
             std::to_string(claude_cost(mock_prompt_tokens, 10)));
  const auto plain_id = plain.header("x-request-id");
  auto sent = last_anthropic_request(mock);
  BOOST_TEST(sent["max_tokens"] == 10);
  BOOST_TEST(!sent.contains("stream"));

  // No max_tokens from the caller: Anthropic still gets one; the mock's 16 tokens end the turn.
  auto open = client.post("/v1/chat/completions", dump(claude_body(0)));
  BOOST_TEST_REQUIRE(open.status == 200, open.body);
  BOOST_TEST(open.json()["choices"][0]["finish_reason"] == "stop");
  BOOST_TEST(open.json()["usage"]["completion_tokens"] == 16);
  const auto open_id = open.header("x-request-id");
  sent = last_anthropic_request(mock);
  BOOST_TEST_REQUIRE(sent["max_tokens"].is_number_integer(), sent.dump());
  BOOST_TEST(sent["max_tokens"].get<int64_t>() >= 16);

  // Streamed, usage asked for: OpenAI chunks, the usage chunk last, then [DONE].
  auto told = client.post("/v1/chat/completions", dump(claude_body(12, true, true)));
  BOOST_TEST_REQUIRE(told.status == 200, told.body);
  BOOST_TEST(told.header("content-type").starts_with("text/event-stream"));
  const auto told_id = told.header("x-request-id");
  auto told_stream = parse_stream(told.body);
  BOOST_TEST(told_stream.done, told.body);
  BOOST_TEST(told_stream.errors.empty(), told.body);
  BOOST_TEST(word_count(told_stream.text) == 12u, told.body);
  BOOST_TEST(told_stream.text.starts_with("mock reply"));
  // 12 of the mock's 16 tokens: cut by max_tokens.
  BOOST_TEST(told_stream.finish_reasons == std::vector<std::string>{"length"}, told.body);
  BOOST_TEST_REQUIRE(told_stream.usage_chunks.size() == 1u, told.body);
  BOOST_TEST(told_stream.chunks.back() == told_stream.usage_chunks.front());
  const auto& usage = told_stream.usage_chunks.front()["usage"];
  BOOST_TEST(usage["prompt_tokens"] == mock_prompt_tokens);
  BOOST_TEST(usage["completion_tokens"] == 12);
  for (const auto& chunk : told_stream.chunks)
    BOOST_TEST(chunk["object"] == "chat.completion.chunk");
  BOOST_TEST(told_stream.chunks.front()["choices"][0]["delta"]["role"] == "assistant");
  sent = last_anthropic_request(mock);
  BOOST_TEST(sent["stream"] == true);
  BOOST_TEST(sent["max_tokens"] == 12);

  // Streamed, usage not asked for: not shown, yet charged from what the upstream reported.
  auto quiet = client.post("/v1/chat/completions", dump(claude_body(12, true, false)));
  BOOST_TEST_REQUIRE(quiet.status == 200, quiet.body);
  const auto quiet_id = quiet.header("x-request-id");
  auto quiet_stream = parse_stream(quiet.body);
  BOOST_TEST(quiet_stream.done, quiet.body);
  BOOST_TEST(quiet_stream.usage_chunks.empty(), quiet.body);
  BOOST_TEST(word_count(quiet_stream.text) == 12u);

  auto sql = gw.open_db();
  expect_charged(*sql, ada, plain_id, mock_prompt_tokens, 10, "not streamed");
  expect_charged(*sql, ada, open_id, mock_prompt_tokens, 16, "no max_tokens");
  expect_charged(*sql, ada, told_id, mock_prompt_tokens, 12, "streamed, usage asked");
  expect_charged(*sql, ada, quiet_id, mock_prompt_tokens, 12, "streamed, usage not asked");
  const auto expected = opening - claude_cost(mock_prompt_tokens, 10) -
                        claude_cost(mock_prompt_tokens, 16) -
                        2 * claude_cost(mock_prompt_tokens, 12);
  BOOST_TEST(check_ledger_invariants(*sql, ada.id) == expected);
  auto me = me_of(gw, ada.key);
  BOOST_TEST(me["balance"] == expected);
  BOOST_TEST(me["held"] == 0);
  BOOST_TEST(mock.stats()["requests"] == 4);
}

BOOST_AUTO_TEST_CASE(upstream_failures_look_like_openai_ones) {
  mock_upstream mock;
  test_gateway gw(store::sqlite, anthropic_gateway(mock.base_url()));
  auto admin = gw.admin();
  constexpr int64_t opening = 100'000;
  auto bob = make_metered_user(admin, "bob@example.com", opening);
  auto client = gw.consumer(bob.key);

  // Anthropic's error bodies become OpenAI's; nothing is charged.
  BOOST_TEST_REQUIRE(mock.settings({{"fault", "status:400"}}).status == 200);
  auto rejected = client.post("/v1/chat/completions", dump(claude_body(10)));
  expect_error(rejected, 400, "invalid_request_error", "upstream_rejected", std::nullopt,
               "a 400 from anthropic");
  BOOST_TEST(rejected.json()["error"]["message"].get<std::string>().ends_with("mock fault"),
             rejected.body);

  BOOST_TEST_REQUIRE(mock.settings({{"fault", "status:529"}}).status == 200);
  auto overloaded = client.post("/v1/chat/completions", dump(claude_body(10, true, true)));
  expect_error(overloaded, 502, "server_error", "upstream_error", std::nullopt,
               "anthropic overloaded");
  BOOST_TEST(overloaded.body.find("HTTP 529") != std::string::npos, overloaded.body);

  BOOST_TEST_REQUIRE(mock.settings({{"fault", "status:429"}}).status == 200);
  auto limited = client.post("/v1/chat/completions", dump(claude_body(10)));
  expect_error(limited, 503, "server_error", "upstream_rate_limited", std::nullopt,
               "anthropic rate limiting");

  auto sql = gw.open_db();
  BOOST_TEST(check_ledger_invariants(*sql, bob.id) == opening);

  // A stream that breaks after its first piece: the caller gets that piece and an error
  // event, never [DONE]; the call is recorded as an upstream error.
  BOOST_TEST_REQUIRE(
      mock.settings({{"fault", "malformed-after:1"}, {"chunks", 4}, {"completion_tokens", 8}})
          .status == 200);
  auto broken = client.post("/v1/chat/completions", dump(claude_body(20, true, true)));
  BOOST_TEST_REQUIRE(broken.status == 200, broken.body);
  auto broken_stream = parse_stream(broken.body);
  BOOST_TEST(!broken_stream.done, broken.body);
  BOOST_TEST(broken_stream.text == "mock reply", broken.body);
  BOOST_TEST_REQUIRE(broken_stream.errors.size() == 1u, broken.body);
  BOOST_TEST(broken_stream.errors.front()["error"]["code"] == "upstream_stream_error");
  auto usage = usage_row_of(*sql, broken.header("x-request-id"));
  BOOST_TEST_REQUIRE(usage.has_value());
  BOOST_TEST(usage->status == "upstream_error");
  BOOST_TEST(check_ledger_invariants(*sql, bob.id) == opening - usage->cost);

  // Broken before anything reached the caller: an ordinary error answer.
  BOOST_TEST_REQUIRE(mock.settings({{"fault", "malformed-after:0"}}).status == 200);
  auto early = client.post("/v1/chat/completions", dump(claude_body(20, true, true)));
  expect_error(early, 502, "server_error", "upstream_malformed", std::nullopt,
               "a stream malformed at once");
}

BOOST_AUTO_TEST_SUITE_END()
