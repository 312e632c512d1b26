#include <latch>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <boost/test/unit_test.hpp>

#include "schemas/chat.hpp"
#include "schemas/pricing.hpp"
#include "tests/integration/harness.hpp"
#include "tests/support/mock_upstream_process.hpp"

// Many calls at once against a balance that covers only some of them: the user actor admits
// what the balance covers and the store never overdraws.

using namespace tollgate::test;
using namespace tollgate::test::integration;
using nlohmann::json;

namespace {

const tollgate::schemas::model_price mock_price{1'000'000, 2'000'000};

/// 22 one-letter words: the mock counts 22 prompt tokens, and the gateway's estimate is 22 as
/// well (3 per request + 4 per message + 43 bytes / 3), so the prompt is held at its cost.
const std::string exact_prompt = "a b c d e f g h i j k l m n o p q r s t u v";
constexpr int64_t prompt_tokens = 22;

constexpr int threads = 16;
constexpr int calls = 200;

/// What one concurrent call got back.
struct call_outcome {
  http_response response;
  std::string failure; ///< Transport error, if the call got no response.
  bool streamed = false;
};

/// Sends `calls` chat completions with `key` from `threads` threads released together; every
/// fourth call streams, so both paths take from the same balance.
std::vector<call_outcome> run_calls(const test_gateway& gw, const std::string& key,
                                    int64_t max_tokens) {
  std::vector<call_outcome> outcomes(calls);
  std::latch start(threads);
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t)
    workers.emplace_back([&, t] {
      auto client = gw.consumer(key);
      start.arrive_and_wait();
      for (int i = t; i < calls; i += threads) {
        auto& out = outcomes[static_cast<std::size_t>(i)];
        out.streamed = i % 4 == 0;
        auto body = chat_body("gpt-mock", exact_prompt, max_tokens, out.streamed, false);
        try {
          out.response = client.post("/v1/chat/completions", dump(body));
        } catch (const std::exception& e) {
          out.failure = e.what();
        }
      }
    });
  for (auto& w : workers)
    w.join();
  return outcomes;
}

/// Checks every answer (200 at `cost`, or 402) and the store after them; returns the number
/// of calls charged.
std::size_t check_outcomes(const test_gateway& gw, mock_upstream& mock, const metered_user& user,
                           int64_t opening, const std::vector<call_outcome>& outcomes,
                           int64_t completion_tokens, int64_t cost) {
  std::set<std::string> charged_ids;
  int refused = 0;
  for (int i = 0; i < calls; ++i) {
    const auto& out = outcomes[static_cast<std::size_t>(i)];
    BOOST_TEST_CONTEXT("call " << i << (out.streamed ? " (streamed)" : "") << ": " << out.failure
                               << out.response.status << " " << out.response.body) {
      BOOST_TEST_REQUIRE(out.failure.empty());
      if (out.response.status == 200) {
        auto [_, fresh] = charged_ids.insert(out.response.header("x-request-id"));
        BOOST_TEST(fresh);
        if (out.streamed) {
          auto events = sse_data(out.response.body);
          BOOST_TEST_REQUIRE(!events.empty());
          BOOST_TEST(events.back() == "[DONE]");
        } else {
          BOOST_TEST(out.response.header("x-tollgate-cost") == std::to_string(cost));
        }
      } else {
        expect_error(out.response, 402, "insufficient_quota", "insufficient_quota", std::nullopt,
                     "refused call " + std::to_string(i));
        ++refused;
      }
    }
  }
  BOOST_TEST(charged_ids.size() + static_cast<std::size_t>(refused) ==
             static_cast<std::size_t>(calls));

  auto sql = gw.open_db();
  auto balance = check_ledger_invariants(*sql, user.id);
  BOOST_TEST(balance == opening - static_cast<int64_t>(charged_ids.size()) * cost);
  BOOST_TEST(balance >= 0);
  auto entries = ledger_of(*sql, user.id);
  BOOST_TEST_REQUIRE(entries.size() == charged_ids.size() + 1);
  std::set<std::string> entry_ids;
  for (std::size_t i = 1; i < entries.size(); ++i) {
    BOOST_TEST(entries[i].kind == "charge");
    BOOST_TEST(entries[i].amount == -cost);
    entry_ids.insert(entries[i].request_id);
  }
  BOOST_TEST((entry_ids == charged_ids));
  auto usage = usage_of(*sql, user.id);
  BOOST_TEST(usage.size() == charged_ids.size());
  for (const auto& row : usage) {
    BOOST_TEST(charged_ids.count(row.request_id) == 1u, row.request_id);
    BOOST_TEST(row.status == "ok");
    BOOST_TEST(row.prompt_tokens == prompt_tokens);
    BOOST_TEST(row.completion_tokens == completion_tokens);
    BOOST_TEST(row.cost == cost);
  }
  auto me = me_of(gw, user.key);
  BOOST_TEST(me["balance"] == balance);
  BOOST_TEST(me["held"] == 0);
  BOOST_TEST(me["available"] == balance);
  BOOST_TEST(mock.stats()["requests"] == static_cast<int>(charged_ids.size()));
  return charged_ids.size();
}

std::unique_ptr<mock_upstream> overlapping_mock() {
  auto mock = std::make_unique<mock_upstream>();
  // A little latency so that the calls overlap in the gateway.
  auto set = mock->settings({{"latency_ms", 20}, {"ttft_ms", 20}});
  BOOST_TEST_REQUIRE(set.status == 200, set.body);
  return mock;
}

/// Each call holds exactly what it costs: exactly the calls the balance covers get through.
void check_exact_holds(store kind) {
  auto mock = overlapping_mock();
  test_gateway gw(kind, options_with_config(mock_gateway_config(mock->base_url())));
  auto admin = gw.admin();
  constexpr int64_t max_tokens = 10;
  auto parsed =
      tollgate::schemas::parse_chat_request(chat_body("gpt-mock", exact_prompt, max_tokens).dump());
  BOOST_TEST_REQUIRE(static_cast<bool>(parsed));
  const auto hold = tollgate::schemas::cost_of(mock_price, parsed->prompt_tokens, max_tokens);
  const auto cost = tollgate::schemas::cost_of(mock_price, prompt_tokens, max_tokens);
  BOOST_TEST_REQUIRE(hold == cost, "the prompt was chosen so that hold == cost; the estimate is "
                                       << parsed->prompt_tokens);
  constexpr int covered = 40;
  const int64_t opening = covered * cost + cost / 2;
  auto ada = make_metered_user(admin, "ada@example.com", opening);

  auto outcomes = run_calls(gw, ada.key, max_tokens);
  auto charged = check_outcomes(gw, *mock, ada, opening, outcomes, max_tokens, cost);
  BOOST_TEST(charged == static_cast<std::size_t>(covered));
}

/// Each call holds more than it costs (max_tokens 40, the mock answers 16): what settling
/// releases goes back to the balance, so the number of calls served lies between what the
/// holds and what the costs allow, and nothing is ever overdrawn.
void check_released_holds(store kind) {
  auto mock = overlapping_mock();
  test_gateway gw(kind, options_with_config(mock_gateway_config(mock->base_url())));
  auto admin = gw.admin();
  constexpr int64_t max_tokens = 40;
  constexpr int64_t answered = 16; // the mock's default completion_tokens
  auto parsed =
      tollgate::schemas::parse_chat_request(chat_body("gpt-mock", exact_prompt, max_tokens).dump());
  BOOST_TEST_REQUIRE(static_cast<bool>(parsed));
  const auto hold = tollgate::schemas::cost_of(mock_price, parsed->prompt_tokens, max_tokens);
  const auto cost = tollgate::schemas::cost_of(mock_price, prompt_tokens, answered);
  BOOST_TEST_REQUIRE(hold > cost);
  const int64_t opening = 40 * cost + cost / 2;
  auto bob = make_metered_user(admin, "bob@example.com", opening);

  auto outcomes = run_calls(gw, bob.key, max_tokens);
  auto charged =
      static_cast<int64_t>(check_outcomes(gw, *mock, bob, opening, outcomes, answered, cost));
  BOOST_TEST(charged >= opening / hold);
  BOOST_TEST(charged <= opening / cost);
}

} // namespace

BOOST_AUTO_TEST_SUITE(proxy_concurrency_sqlite)

BOOST_AUTO_TEST_CASE(exact_holds) {
  check_exact_holds(store::sqlite);
}

BOOST_AUTO_TEST_CASE(released_holds) {
  check_released_holds(store::sqlite);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(proxy_concurrency_live)

BOOST_AUTO_TEST_CASE(exact_holds) {
  check_exact_holds(store::postgresql);
}

BOOST_AUTO_TEST_CASE(released_holds) {
  check_released_holds(store::postgresql);
}

BOOST_AUTO_TEST_SUITE_END()
