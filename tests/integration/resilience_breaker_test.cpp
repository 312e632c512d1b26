#include <algorithm>
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include <boost/test/unit_test.hpp>

#include "tests/integration/harness.hpp"
#include "tests/support/mock_upstream_process.hpp"

// Circuit breakers through the real binary: each kind of upstream fault trips deployment A's
// breaker after the configured count and traffic moves to deployment B; after the cooldown
// the breaker half-opens, and probes that succeed close it again.

using namespace tollgate::test;
using namespace tollgate::test::integration;
using nlohmann::json;

namespace {

const std::string deployment_a = "mock-a/mock-1";
const std::string deployment_b = "mock-b/mock-1";
constexpr int64_t opening = 1'000'000;

/// Checks that a chat completion succeeded completely, streamed or not.
void expect_complete(const http_response& response, bool stream, const std::string& what) {
  BOOST_TEST_CONTEXT(what << " -> " << response.status << " " << response.body) {
    BOOST_TEST_REQUIRE(response.status == 200);
    if (stream) {
      auto s = summarize_stream(response.body);
      BOOST_TEST(s.done);
      BOOST_TEST(!s.error.has_value());
      BOOST_TEST(s.content_events > 0u);
    } else {
      auto doc = response.json();
      BOOST_TEST(!doc["choices"][0]["message"]["content"].get<std::string>().empty());
    }
  }
}

int requests_of(mock_upstream& mock) {
  return mock.stats()["requests"].get<int>();
}

/// The tollgate_breaker_state sample of `deployment`; -1 if it is not exported.
double breaker_metric(const test_gateway& gw, const std::string& deployment) {
  return scrape_metrics(gw)
      .value("tollgate_breaker_state", {{"deployment", deployment}})
      .value_or(-1);
}

/// One kind of upstream fault on deployment A.
struct trip_case {
  std::string what;
  std::string fault;    ///< mock A's fault setting
  bool refused = false; ///< A points at a closed port instead of the mock
  bool stalled = false; ///< A's first_token_ms is short, so the stall times out
  std::string outcome;  ///< A's outcome in the attempt log
};

/// `failures` calls that fail on A and succeed on B open A's breaker; later calls skip A.
void check_fault_trips_breaker(const trip_case& c) {
  BOOST_TEST_MESSAGE("fault kind: " << c.what);
  constexpr int failures = 3;
  constexpr int after_open = 4;
  mock_upstream a;
  mock_upstream b;
  BOOST_TEST_REQUIRE(a.settings({{"fault", c.fault}}).status == 200);
  json a_extra{{"breaker", {{"failures", failures}, {"min_calls", 1000}, {"cooldown_ms", 60'000}}}};
  if (c.stalled)
    a_extra["timeouts"] = {{"first_token_ms", 300}};
  test_gateway gw(store::sqlite,
                  options_with_config(failover_config(c.refused ? closed_port_url() : a.base_url(),
                                                      b.base_url(), a_extra)));
  auto admin = gw.admin();
  auto ada = make_metered_user(admin, "ada@example.com", opening);
  auto client = gw.consumer(ada.key);
  auto sql = gw.open_db();

  BOOST_TEST(provider_status(gw, deployment_a)["breaker"] == "closed");
  for (int i = 0; i < failures; ++i) {
    bool stream = i % 2 == 1;
    auto response =
        client.post("/v1/chat/completions", dump(chat_body("gpt-mock", "hello", 8, stream)));
    auto what = c.what + ", failing call " + std::to_string(i + 1);
    expect_complete(response, stream, what);
    auto attempts = attempts_of(*sql, response.header("x-request-id"));
    BOOST_TEST_REQUIRE(attempts.has_value(), what << ": no usage row");
    BOOST_TEST(attempts->attempts == 2, what);
    BOOST_TEST(attempts->log == deployment_a + ":" + c.outcome + "," + deployment_b + ":ok", what);
    auto status = provider_status(gw, deployment_a);
    BOOST_TEST(status["breaker"] == (i + 1 < failures ? "closed" : "open"), what << ": " << status);
  }

  auto status = provider_status(gw, deployment_a);
  BOOST_TEST(status["breaker"] == "open", status);
  BOOST_TEST(status["trips"] == 1, status);
  BOOST_TEST(status["failures"] == failures, status);
  BOOST_TEST(provider_status(gw, deployment_b)["breaker"] == "closed");
  BOOST_TEST(breaker_metric(gw, deployment_a) == 2);

  // Open: A is not asked any more; B answers every call at the first attempt.
  auto a_before = requests_of(a);
  auto b_before = requests_of(b);
  for (int i = 0; i < after_open; ++i) {
    bool stream = i % 2 == 0;
    auto response =
        client.post("/v1/chat/completions", dump(chat_body("gpt-mock", "hello", 8, stream)));
    auto what = c.what + ", call " + std::to_string(i + 1) + " after the trip";
    expect_complete(response, stream, what);
    auto attempts = attempts_of(*sql, response.header("x-request-id"));
    BOOST_TEST_REQUIRE(attempts.has_value(), what << ": no usage row");
    BOOST_TEST(attempts->attempts == 1, what);
    BOOST_TEST(attempts->log == deployment_b + ":ok", what);
  }
  BOOST_TEST(requests_of(a) == a_before, "A was called while its breaker was open");
  BOOST_TEST(requests_of(b) == b_before + after_open);
  BOOST_TEST(provider_status(gw, deployment_a)["breaker"] == "open");

  // Every call was answered by B and charged once; nothing is left held.
  BOOST_TEST(usage_of(*sql, ada.id).size() == static_cast<std::size_t>(failures + after_open));
  BOOST_TEST(ledger_of(*sql, ada.id).size() == static_cast<std::size_t>(1 + failures + after_open));
  check_ledger_invariants(*sql, ada.id);
  BOOST_TEST(me_of(gw, ada.key)["held"] == 0);
}

} // namespace

BOOST_AUTO_TEST_SUITE(resilience_breaker_sqlite)

BOOST_AUTO_TEST_CASE(upstream_500_trips_breaker) {
  check_fault_trips_breaker({"upstream 500", "status:500", false, false, "500"});
}

BOOST_AUTO_TEST_CASE(upstream_503_trips_breaker) {
  check_fault_trips_breaker({"upstream 503", "status:503", false, false, "503"});
}

BOOST_AUTO_TEST_CASE(upstream_429_trips_breaker) {
  check_fault_trips_breaker({"upstream 429", "status:429", false, false, "429"});
}

BOOST_AUTO_TEST_CASE(connection_reset_trips_breaker) {
  check_fault_trips_breaker({"connection reset", "reset-after:0", false, false, "error"});
}

BOOST_AUTO_TEST_CASE(connection_refused_trips_breaker) {
  check_fault_trips_breaker({"connection refused", "none", true, false, "error"});
}

BOOST_AUTO_TEST_CASE(stalled_first_token_trips_breaker) {
  check_fault_trips_breaker({"stalled first token", "stall-after:0", false, true, "error"});
}

// Open -> half-open after the cooldown; a failed probe opens it again for twice as long; once
// the mock heals, the probes succeed, the breaker closes and A takes the traffic again.
BOOST_AUTO_TEST_CASE(half_opens_and_closes_when_healed) {
  mock_upstream a;
  mock_upstream b;
  BOOST_TEST_REQUIRE(a.settings({{"fault", "status:500"}}).status == 200);
  json a_extra{
      {"breaker",
       {{"failures", 2}, {"min_calls", 1000}, {"cooldown_ms", 300}, {"half_open_probes", 2}}}};
  test_gateway gw(store::sqlite,
                  options_with_config(failover_config(a.base_url(), b.base_url(), a_extra)));
  auto admin = gw.admin();
  auto ada = make_metered_user(admin, "ada@example.com", opening);
  auto client = gw.consumer(ada.key);
  auto sql = gw.open_db();
  auto call = [&](const std::string& what) {
    auto response = client.post("/v1/chat/completions", dump(chat_body("gpt-mock", "hello", 8)));
    expect_complete(response, false, what);
    auto attempts = attempts_of(*sql, response.header("x-request-id"));
    BOOST_TEST_REQUIRE(attempts.has_value(), what << ": no usage row");
    return attempts->log;
  };
  auto breaker_is = [&](const std::string& state) {
    return provider_status(gw, deployment_a)["breaker"] == state;
  };

  for (int i = 0; i < 2; ++i)
    call("failing call " + std::to_string(i + 1));
  BOOST_TEST_REQUIRE(breaker_is("open"));
  BOOST_TEST(breaker_metric(gw, deployment_a) == 2);

  // Still failing when it half-opens: the probe fails and the breaker opens again.
  BOOST_TEST_REQUIRE(
      wait_until(std::chrono::seconds{5}, [&] { return breaker_is("half_open"); }),
      "no half-open within 5 s of a 300 ms cooldown: " << provider_status(gw, deployment_a));
  BOOST_TEST(call("failed probe") == deployment_a + ":500," + deployment_b + ":ok");
  auto status = provider_status(gw, deployment_a);
  BOOST_TEST(status["breaker"] == "open", status);
  BOOST_TEST(status["trips"] == 2, status);

  // Healed: after the (doubled) cooldown, two successful probes close it.
  BOOST_TEST_REQUIRE(a.settings({{"fault", "none"}}).status == 200);
  BOOST_TEST_REQUIRE(
      wait_until(std::chrono::seconds{5}, [&] { return breaker_is("half_open"); }),
      "no half-open within 5 s of a 600 ms cooldown: " << provider_status(gw, deployment_a));
  auto a_before = requests_of(a);
  auto b_before = requests_of(b);
  BOOST_TEST(call("first probe") == deployment_a + ":ok");
  BOOST_TEST(call("second probe") == deployment_a + ":ok");
  status = provider_status(gw, deployment_a);
  BOOST_TEST(status["breaker"] == "closed", status);
  BOOST_TEST(breaker_metric(gw, deployment_a) == 0);
  for (int i = 0; i < 3; ++i)
    BOOST_TEST(call("call after closing " + std::to_string(i + 1)) == deployment_a + ":ok");
  BOOST_TEST(requests_of(a) == a_before + 5);
  BOOST_TEST(requests_of(b) == b_before);
  BOOST_TEST(provider_status(gw, deployment_a)["breaker"] == "closed");

  check_ledger_invariants(*sql, ada.id);
  BOOST_TEST(me_of(gw, ada.key)["held"] == 0);
}

// An admin trips and resets a provider's breakers by hand; both are audited.
BOOST_AUTO_TEST_CASE(admin_trip_and_reset) {
  mock_upstream a;
  mock_upstream b;
  test_gateway gw(store::sqlite, options_with_config(failover_config(a.base_url(), b.base_url())));
  auto admin = gw.admin();
  auto ada = make_metered_user(admin, "ada@example.com", opening);
  auto client = gw.consumer(ada.key);
  auto sql = gw.open_db();

  auto tripped = admin.post("/admin/providers/mock-a/trip", "");
  BOOST_TEST_REQUIRE(tripped.status == 200, tripped.body);
  BOOST_TEST(provider_status(gw, deployment_a)["breaker"] == "open");
  BOOST_TEST(breaker_metric(gw, deployment_a) == 2);
  auto response = client.post("/v1/chat/completions", dump(chat_body("gpt-mock", "hello", 8)));
  expect_complete(response, false, "call while A is tripped");
  BOOST_TEST(attempts_of(*sql, response.header("x-request-id"))->log == deployment_b + ":ok");
  BOOST_TEST(requests_of(a) == 0);

  auto reset = admin.post("/admin/providers/mock-a/reset", "");
  BOOST_TEST_REQUIRE(reset.status == 200, reset.body);
  BOOST_TEST(provider_status(gw, deployment_a)["breaker"] == "closed");
  BOOST_TEST(breaker_metric(gw, deployment_a) == 0);
  response = client.post("/v1/chat/completions", dump(chat_body("gpt-mock", "hello", 8)));
  expect_complete(response, false, "call after the reset");
  BOOST_TEST(attempts_of(*sql, response.header("x-request-id"))->log == deployment_a + ":ok");

  expect_error(admin.post("/admin/providers/nobody/trip", ""), 404, "not_found_error", "not_found",
               std::nullopt, "trip of an unknown provider");
  auto audit = admin.get("/admin/audit").json();
  std::vector<std::string> actions;
  for (const auto& row : audit["data"])
    if (row.value("target", "") == "mock-a")
      actions.push_back(row.value("action", ""));
  BOOST_TEST(std::count(actions.begin(), actions.end(), "provider.trip") == 1);
  BOOST_TEST(std::count(actions.begin(), actions.end(), "provider.reset") == 1);
}

BOOST_AUTO_TEST_SUITE_END()
