#include <optional>
#include <set>
#include <string>
#include <vector>

#include <boost/test/unit_test.hpp>

#include "schemas/chat.hpp"
#include "schemas/pricing.hpp"
#include "tests/integration/harness.hpp"
#include "tests/support/mock_upstream_process.hpp"
#include "tests/support/ports.hpp"

// Upstream failures: a call that produced nothing costs nothing and answers an OpenAI-shaped
// error; a stream that breaks after some tokens charges what was delivered; an upstream that
// reports no usage is charged on tollgate's own count.

using namespace tollgate::test;
using namespace tollgate::test::integration;
using nlohmann::json;

namespace {

const std::string prompt = "hello there mock";
const tollgate::schemas::model_price mock_price{1'000'000, 2'000'000};

/// The mock config plus `gpt-dead`, whose provider points at a port nothing listens on.
json config_with_dead_upstream(const std::string& mock_base_url) {
  auto config = mock_gateway_config(mock_base_url);
  auto closed = "http://127.0.0.1:" + std::to_string(free_loopback_port()) + "/v1";
  config["providers"].push_back({{"name", "dead"}, {"kind", "openai"}, {"base_url", closed}});
  config["models"].push_back({{"name", "gpt-dead"},
                              {"deployments", json::array({{{"provider", "dead"}}})},
                              {"input_price", 1'000'000},
                              {"output_price", 2'000'000}});
  return config;
}

int64_t estimated_prompt(const json& body) {
  auto parsed = tollgate::schemas::parse_chat_request(body.dump());
  BOOST_TEST_REQUIRE(static_cast<bool>(parsed));
  return parsed->prompt_tokens;
}

/// The generated text of a stream's events, as delivered, and whether it carried an error
/// event with `code`.
struct delivered_stream {
  std::string text;
  std::size_t content_events = 0;
  std::optional<json> error;
  bool done = false;
};

delivered_stream read_delivered(const std::string& body) {
  delivered_stream out;
  for (const auto& data : sse_data(body)) {
    if (data == "[DONE]") {
      out.done = true;
      continue;
    }
    auto event = json::parse(data, nullptr, false);
    BOOST_TEST_REQUIRE(event.is_object(), "not a JSON event: " << data);
    if (event.contains("error")) {
      out.error = event["error"];
      continue;
    }
    for (const auto& choice : event.value("choices", json::array()))
      if (choice.contains("delta") && choice["delta"].contains("content") &&
          choice["delta"]["content"].is_string()) {
        out.text += choice["delta"]["content"].get<std::string>();
        ++out.content_events;
      }
  }
  return out;
}

/// One upstream fault and how the caller must see it.
struct fault_case {
  std::string what;
  std::string fault; ///< The mock's fault setting.
  std::string model;
  bool stream = false;
  long status = 0;
  std::string type;
  std::set<std::string> codes; ///< Acceptable codes.
};

/// Every fault before any token: the error, no ledger entry, a usage row costing nothing,
/// nothing held and the balance as it was.
void check_failures_cost_nothing(store kind) {
  mock_upstream mock;
  test_gateway gw(kind, options_with_config(config_with_dead_upstream(mock.base_url())));
  auto admin = gw.admin();
  constexpr int64_t opening = 10'000;
  auto ada = make_metered_user(admin, "ada@example.com", opening);
  auto client = gw.consumer(ada.key);

  const std::string server = "server_error";
  const std::string invalid = "invalid_request_error";
  // clang-format off
  const std::vector<fault_case> cases{
    {"upstream 500", "status:500", "gpt-mock", false, 502, server, {"upstream_error"}},
    {"upstream 500, streamed", "status:500", "gpt-mock", true, 502, server, {"upstream_error"}},
    {"upstream 503", "status:503", "gpt-mock", false, 502, server, {"upstream_error"}},
    {"upstream 429", "status:429", "gpt-mock", false, 503, server, {"upstream_rate_limited"}},
    {"upstream 429, streamed", "status:429", "gpt-mock", true, 503, server, {"upstream_rate_limited"}},
    {"upstream 400", "status:400", "gpt-mock", false, 400, invalid, {"upstream_rejected"}},
    {"upstream 400, streamed", "status:400", "gpt-mock", true, 400, invalid, {"upstream_rejected"}},
    {"connection reset before the answer", "reset-after:0", "gpt-mock", false, 502, server, {"upstream_unreachable", "upstream_error"}},
    {"connection reset before the first event", "reset-after:0", "gpt-mock", true, 502, server, {"upstream_unreachable", "upstream_error"}},
    {"malformed answer", "malformed-after:0", "gpt-mock", false, 502, server, {"upstream_malformed"}},
    {"malformed first event", "malformed-after:0", "gpt-mock", true, 502, server, {"upstream_malformed"}},
    {"connection refused", "none", "gpt-dead", false, 502, server, {"upstream_unreachable"}},
    {"connection refused, streamed", "none", "gpt-dead", true, 502, server, {"upstream_unreachable"}},
  };
  // clang-format on

  auto sql = gw.open_db();
  for (const auto& c : cases) {
    auto set = mock.settings({{"fault", c.fault}});
    BOOST_TEST_REQUIRE(set.status == 200, set.body);
    auto ledger_before = ledger_of(*sql, ada.id).size();
    auto mock_before = mock.stats()["requests"].get<int>();
    auto response = client.post("/v1/chat/completions",
                                dump(chat_body(c.model, prompt, 10, c.stream, c.stream)));
    auto sent = mock.stats()["requests"].get<int>() - mock_before;
    BOOST_TEST_MESSAGE(c.what << ": the mock received " << sent << " request(s)");
    BOOST_TEST_CONTEXT(c.what << " -> " << response.status << " " << response.body) {
      BOOST_TEST(response.status == c.status);
      BOOST_TEST(response.header("content-type").starts_with("application/json"));
      // The dead upstream is never reached; the mock is, at most twice (libcurl resends a
      // request once when a reused connection dies before any answer).
      if (c.model == "gpt-mock") {
        BOOST_TEST(sent >= 1);
        BOOST_TEST(sent <= 2);
      } else {
        BOOST_TEST(sent == 0);
      }
      const auto request_id = response.header("x-request-id");
      BOOST_TEST_REQUIRE(!request_id.empty());
      auto doc = json::parse(response.body, nullptr, false);
      BOOST_TEST_REQUIRE((doc.is_object() && doc.size() == 1u && doc.contains("error")));
      const auto& error = doc["error"];
      BOOST_TEST(error.value("type", "") == c.type);
      BOOST_TEST(c.codes.count(error.value("code", "")) == 1u);
      BOOST_TEST(!error.value("message", "").empty());
      BOOST_TEST(error.contains("param"));
      if (c.status == 503)
        BOOST_TEST(!response.header("retry-after").empty());

      BOOST_TEST(ledger_of(*sql, ada.id).size() == ledger_before);
      auto usage = usage_row_of(*sql, request_id);
      BOOST_TEST_REQUIRE(usage.has_value(), "no usage row");
      BOOST_TEST(usage->cost == 0);
      BOOST_TEST(usage->status == "upstream_error");
      BOOST_TEST(usage->prompt_tokens == 0);
      BOOST_TEST(usage->completion_tokens == 0);
      BOOST_TEST(usage->model == c.model);
      auto me = me_of(gw, ada.key);
      BOOST_TEST(me["balance"] == opening);
      BOOST_TEST(me["held"] == 0);
      BOOST_TEST(me["available"] == opening);
    }
  }
  BOOST_TEST(check_ledger_invariants(*sql, ada.id) == opening);
  BOOST_TEST(ledger_of(*sql, ada.id).size() == 1u);
  BOOST_TEST(usage_of(*sql, ada.id).size() == cases.size());
}

/// A stream that breaks after three events ends with an error event, no [DONE], and charges
/// exactly the tokens delivered (counted by tollgate, since no usage was reported).
void check_broken_stream_charges_delivered(store kind) {
  mock_upstream mock;
  auto set = mock.settings({{"fault", "reset-after:3"}, {"chunks", 8}, {"completion_tokens", 16}});
  BOOST_TEST_REQUIRE(set.status == 200, set.body);
  test_gateway gw(kind, options_with_config(mock_gateway_config(mock.base_url())));
  auto admin = gw.admin();
  constexpr int64_t opening = 10'000;
  auto ada = make_metered_user(admin, "ada@example.com", opening);

  auto body = chat_body("gpt-mock", prompt, 16, true, true);
  auto response = gw.consumer(ada.key).post("/v1/chat/completions", dump(body));
  BOOST_TEST_REQUIRE(response.status == 200, response.body);
  const auto request_id = response.header("x-request-id");
  auto delivered = read_delivered(response.body);
  BOOST_TEST(delivered.content_events == 3u, response.body);
  BOOST_TEST(!delivered.done, response.body);
  BOOST_TEST_REQUIRE(delivered.error.has_value(), "no error event: " << response.body);
  BOOST_TEST((*delivered.error)["code"] == "upstream_stream_error");
  BOOST_TEST(!(*delivered.error).value("message", "").empty());

  // Tollgate's count: its prompt estimate, and a token per 3 bytes of delivered text.
  const auto prompt_tokens = estimated_prompt(body);
  const auto completion_tokens =
      tollgate::schemas::estimate_tokens_of_size(static_cast<int64_t>(delivered.text.size()));
  const auto cost = tollgate::schemas::cost_of(mock_price, prompt_tokens, completion_tokens);
  const auto hold = tollgate::schemas::cost_of(mock_price, prompt_tokens, 16);
  BOOST_TEST(cost > 0);
  BOOST_TEST(cost <= hold);

  auto sql = gw.open_db();
  auto usage = usage_row_of(*sql, request_id);
  BOOST_TEST_REQUIRE(usage.has_value());
  BOOST_TEST(usage->status == "upstream_error");
  BOOST_TEST(usage->prompt_tokens == prompt_tokens);
  BOOST_TEST(usage->completion_tokens == completion_tokens);
  BOOST_TEST(usage->cost == cost);
  auto entries = ledger_of(*sql, ada.id);
  BOOST_TEST_REQUIRE(entries.size() == 2u);
  BOOST_TEST(entries.back().request_id == request_id);
  BOOST_TEST(entries.back().amount == -cost);
  BOOST_TEST(check_ledger_invariants(*sql, ada.id) == opening - cost);
  auto me = me_of(gw, ada.key);
  BOOST_TEST(me["balance"] == opening - cost);
  BOOST_TEST(me["held"] == 0);
}

/// An upstream that reports no usage is still charged: tollgate counts the tokens itself.
void check_missing_usage_is_estimated(store kind) {
  mock_upstream mock;
  BOOST_TEST_REQUIRE(mock.settings({{"usage", false}}).status == 200);
  test_gateway gw(kind, options_with_config(mock_gateway_config(mock.base_url())));
  auto admin = gw.admin();
  constexpr int64_t opening = 10'000;
  auto ada = make_metered_user(admin, "ada@example.com", opening);
  auto client = gw.consumer(ada.key);

  auto sql = gw.open_db();
  int64_t charged = 0;
  constexpr int64_t max_tokens = 12;
  for (bool stream : {false, true}) {
    auto body = chat_body("gpt-mock", prompt, max_tokens, stream, stream);
    auto response = client.post("/v1/chat/completions", dump(body));
    BOOST_TEST_CONTEXT((stream ? "streamed" : "not streamed") << ": " << response.body) {
      BOOST_TEST_REQUIRE(response.status == 200);
      std::string text;
      if (stream) {
        auto delivered = read_delivered(response.body);
        BOOST_TEST(delivered.done);
        BOOST_TEST(!delivered.error.has_value());
        text = delivered.text;
      } else {
        auto doc = response.json();
        BOOST_TEST(!doc.contains("usage"));
        text = doc["choices"][0]["message"]["content"].get<std::string>();
      }
      BOOST_TEST_REQUIRE(!text.empty());
      const auto request_id = response.header("x-request-id");
      auto usage = usage_row_of(*sql, request_id);
      BOOST_TEST_REQUIRE(usage.has_value());
      BOOST_TEST(usage->status == "ok");
      const auto prompt_tokens = estimated_prompt(body);
      BOOST_TEST(usage->prompt_tokens == prompt_tokens);
      BOOST_TEST(usage->cost > 0);
      BOOST_TEST(usage->cost <= tollgate::schemas::cost_of(mock_price, prompt_tokens, max_tokens));
      auto entries = ledger_of(*sql, ada.id);
      BOOST_TEST_REQUIRE(!entries.empty());
      BOOST_TEST(entries.back().request_id == request_id);
      BOOST_TEST(entries.back().amount == -usage->cost);
      // The row must agree with itself: the upstream cannot have produced more than the
      // max_tokens it was sent, and the cost is the row's tokens at the model's price.
      BOOST_TEST(usage->completion_tokens > 0);
      BOOST_TEST(usage->completion_tokens <= max_tokens,
                 "usage row: " << usage->completion_tokens << " completion tokens (estimated from "
                               << text.size() << " bytes) for max_tokens " << max_tokens);
      BOOST_TEST(usage->cost == tollgate::schemas::cost_of(mock_price, usage->prompt_tokens,
                                                           usage->completion_tokens),
                 "usage row: cost " << usage->cost << " for " << usage->prompt_tokens << " + "
                                    << usage->completion_tokens << " tokens");
      if (!stream)
        BOOST_TEST(response.header("x-tollgate-cost") == std::to_string(usage->cost));
      charged += usage->cost;
    }
  }
  BOOST_TEST(check_ledger_invariants(*sql, ada.id) == opening - charged);
  BOOST_TEST(ledger_of(*sql, ada.id).size() == 3u);
  BOOST_TEST(me_of(gw, ada.key)["held"] == 0);
}

} // namespace

BOOST_AUTO_TEST_SUITE(proxy_faults_sqlite)

BOOST_AUTO_TEST_CASE(failures_cost_nothing) {
  check_failures_cost_nothing(store::sqlite);
}

BOOST_AUTO_TEST_CASE(broken_stream_charges_delivered) {
  check_broken_stream_charges_delivered(store::sqlite);
}

BOOST_AUTO_TEST_CASE(missing_usage_is_estimated) {
  check_missing_usage_is_estimated(store::sqlite);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(proxy_faults_live)

BOOST_AUTO_TEST_CASE(failures_cost_nothing) {
  check_failures_cost_nothing(store::postgresql);
}

BOOST_AUTO_TEST_CASE(broken_stream_charges_delivered) {
  check_broken_stream_charges_delivered(store::postgresql);
}

BOOST_AUTO_TEST_CASE(missing_usage_is_estimated) {
  check_missing_usage_is_estimated(store::postgresql);
}

BOOST_AUTO_TEST_SUITE_END()
