#include <chrono>
#include <string>

#include <boost/test/unit_test.hpp>

#include "tests/integration/harness.hpp"
#include "tests/support/mock_upstream_process.hpp"

// Timeouts through the real binary: a first token that does not come in time cancels the
// attempt and falls back (or answers 504 when there is nothing to fall back to); per-request
// headers override the deployment's timeouts; long silences mid-stream get keep-alive comments.

using namespace tollgate::test;
using namespace tollgate::test::integration;
using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

namespace {

constexpr int64_t opening = 1'000'000;

int64_t ms_since(steady_clock::time_point start) {
  return std::chrono::duration_cast<milliseconds>(steady_clock::now() - start).count();
}

/// Waits until the mock has seen `count` requests cancelled by the client and has none left
/// in flight: the gateway dropped the stalled connection instead of leaking it.
bool mock_saw_cancel(mock_upstream& mock, int count) {
  return wait_until(std::chrono::seconds{5}, [&] {
    auto stats = mock.stats();
    return stats["cancelled"].get<int>() >= count && stats["in_flight"].get<int>() == 0;
  });
}

} // namespace

BOOST_AUTO_TEST_SUITE(resilience_timeouts_sqlite)

// A stalled first token on A (first_token_ms 500) falls back to B; the call completes within
// about the timeout and A's attempt is cancelled.
BOOST_AUTO_TEST_CASE(stalled_first_token_falls_back) {
  mock_upstream a;
  mock_upstream b;
  BOOST_TEST_REQUIRE(a.settings({{"fault", "stall-after:0"}}).status == 200);
  test_gateway gw(store::sqlite,
                  options_with_config(failover_config(a.base_url(), b.base_url(),
                                                      {{"timeouts", {{"first_token_ms", 500}}}})));
  auto admin = gw.admin();
  auto ada = make_metered_user(admin, "ada@example.com", opening);
  auto client = gw.consumer(ada.key);
  auto sql = gw.open_db();

  int cancelled = 0;
  for (bool stream : {true, false}) {
    BOOST_TEST_CONTEXT((stream ? "streamed" : "not streamed")) {
      auto start = steady_clock::now();
      auto response = client.post("/v1/chat/completions",
                                  dump(chat_body("gpt-mock", "hello", 8, stream, stream)));
      auto elapsed = ms_since(start);
      BOOST_TEST_REQUIRE(response.status == 200, response.body);
      if (stream) {
        auto s = summarize_stream(response.body);
        BOOST_TEST(s.done);
        BOOST_TEST(!s.error.has_value());
        BOOST_TEST(s.content_events > 0u);
      }
      BOOST_TEST(elapsed >= 450, "answered after " << elapsed << " ms, before the timeout");
      BOOST_TEST(elapsed < 5'000, "answered after " << elapsed << " ms");
      auto attempts = attempts_of(*sql, response.header("x-request-id"));
      BOOST_TEST_REQUIRE(attempts.has_value());
      BOOST_TEST(attempts->attempts == 2);
      BOOST_TEST(attempts->log == "mock-a/mock-1:error,mock-b/mock-1:ok");
      auto usage = usage_row_of(*sql, response.header("x-request-id"));
      BOOST_TEST_REQUIRE(usage.has_value());
      BOOST_TEST(usage->status == "ok");
      BOOST_TEST(usage->deployment == "mock-b/mock-1");
      BOOST_TEST(usage->cost > 0);
      BOOST_TEST(mock_saw_cancel(a, ++cancelled),
                 "A's stalled request was not cancelled: " << a.stats());
    }
  }
  check_ledger_invariants(*sql, ada.id);
  BOOST_TEST(me_of(gw, ada.key)["held"] == 0);
}

// With a single deployment there is nothing to fall back to: 504 upstream_timeout, free.
BOOST_AUTO_TEST_CASE(stalled_first_token_without_fallback_is_504) {
  mock_upstream a;
  BOOST_TEST_REQUIRE(a.settings({{"fault", "stall-after:0"}}).status == 200);
  auto config = mock_gateway_config(a.base_url());
  config["models"][0]["deployments"][0]["timeouts"] = {{"first_token_ms", 300}};
  test_gateway gw(store::sqlite, options_with_config(config));
  auto admin = gw.admin();
  auto ada = make_metered_user(admin, "ada@example.com", opening);
  auto client = gw.consumer(ada.key);
  auto sql = gw.open_db();

  int cancelled = 0;
  for (bool stream : {false, true}) {
    auto what = std::string(stream ? "streamed" : "not streamed");
    auto start = steady_clock::now();
    auto response =
        client.post("/v1/chat/completions", dump(chat_body("gpt-mock", "hello", 8, stream)));
    auto elapsed = ms_since(start);
    expect_error(response, 504, "server_error", "upstream_timeout", std::nullopt, what);
    BOOST_TEST(elapsed < 5'000, what << ": answered after " << elapsed << " ms");
    auto usage = usage_row_of(*sql, response.header("x-request-id"));
    BOOST_TEST_REQUIRE(usage.has_value(), what);
    BOOST_TEST(usage->status == "upstream_error", what);
    BOOST_TEST(usage->cost == 0, what);
    BOOST_TEST(attempts_of(*sql, response.header("x-request-id"))->log == "mock/mock-1:error",
               what);
    BOOST_TEST(mock_saw_cancel(a, ++cancelled), what << ": not cancelled: " << a.stats());
  }
  BOOST_TEST(check_ledger_invariants(*sql, ada.id) == opening);
  BOOST_TEST(ledger_of(*sql, ada.id).size() == 1u);
  BOOST_TEST(me_of(gw, ada.key)["held"] == 0);
}

// x-tollgate-timeout-first-token-ms overrides the deployment's (default, 60 s) timeout.
BOOST_AUTO_TEST_CASE(first_token_header_overrides_deployment) {
  mock_upstream a;
  mock_upstream b;
  BOOST_TEST_REQUIRE(a.settings({{"fault", "stall-after:0"}}).status == 200);
  test_gateway gw(store::sqlite, options_with_config(failover_config(a.base_url(), b.base_url())));
  auto admin = gw.admin();
  auto ada = make_metered_user(admin, "ada@example.com", opening);
  auto client = gw.consumer(ada.key);
  client.timeouts(milliseconds{5'000}, milliseconds{20'000});
  auto sql = gw.open_db();

  auto start = steady_clock::now();
  auto response = client.post("/v1/chat/completions", dump(chat_body("gpt-mock", "hello", 8, true)),
                              {{"x-tollgate-timeout-first-token-ms", "300"}});
  auto elapsed = ms_since(start);
  BOOST_TEST_REQUIRE(response.status == 200, response.body);
  BOOST_TEST(summarize_stream(response.body).done);
  BOOST_TEST(elapsed >= 250, "answered after " << elapsed << " ms");
  BOOST_TEST(elapsed < 5'000, "answered after " << elapsed << " ms: the header was ignored");
  BOOST_TEST(attempts_of(*sql, response.header("x-request-id"))->log ==
             "mock-a/mock-1:error,mock-b/mock-1:ok");
  BOOST_TEST(mock_saw_cancel(a, 1), a.stats());
  // The second attempt sends the caller's body again, prepared as the first was (the first
  // attempt used up the parsed body: the retry parses the request anew).
  auto sent_a = a.requests();
  auto sent_b = b.requests();
  BOOST_TEST_REQUIRE(sent_a.size() == 1u);
  BOOST_TEST_REQUIRE(sent_b.size() == 1u);
  BOOST_TEST(sent_b[0]["body"] == sent_a[0]["body"],
             sent_a[0]["body"] << " / " << sent_b[0]["body"]);
  BOOST_TEST(sent_b[0]["body"]["model"] == "mock-1");
  BOOST_TEST(sent_b[0]["body"]["messages"][0]["content"] == "hello");
  BOOST_TEST(sent_b[0]["body"]["stream_options"]["include_usage"] == true);
}

// x-tollgate-timeout-ms bounds the whole call: a stream still running then ends with an
// error event, and what was delivered is charged.
BOOST_AUTO_TEST_CASE(total_timeout_header_ends_long_stream) {
  mock_upstream a;
  mock_upstream b;
  BOOST_TEST_REQUIRE(
      a.settings({{"chunks", 10}, {"interval_ms", 300}, {"completion_tokens", 20}}).status == 200);
  test_gateway gw(store::sqlite, options_with_config(failover_config(a.base_url(), b.base_url())));
  auto admin = gw.admin();
  auto ada = make_metered_user(admin, "ada@example.com", opening);
  auto client = gw.consumer(ada.key);
  auto sql = gw.open_db();

  auto start = steady_clock::now();
  auto response =
      client.post("/v1/chat/completions", dump(chat_body("gpt-mock", "hello", 20, true, true)),
                  {{"x-tollgate-timeout-ms", "1000"}});
  auto elapsed = ms_since(start);
  BOOST_TEST_REQUIRE(response.status == 200, response.body);
  auto s = summarize_stream(response.body);
  BOOST_TEST(!s.done, response.body);
  BOOST_TEST_REQUIRE(s.error.has_value(), "no error event: " << response.body);
  BOOST_TEST((*s.error)["code"] == "upstream_stream_error");
  BOOST_TEST(s.content_events >= 1u);
  BOOST_TEST(s.content_events < 10u);
  BOOST_TEST(elapsed < 2'500, "the 1 s total timeout ended the call after " << elapsed << " ms");
  BOOST_TEST(b.stats()["requests"] == 0, "a stream that had started fell back");
  auto usage = usage_row_of(*sql, response.header("x-request-id"));
  BOOST_TEST_REQUIRE(usage.has_value());
  BOOST_TEST(usage->status == "upstream_error");
  BOOST_TEST(usage->cost > 0);
  auto entries = ledger_of(*sql, ada.id);
  BOOST_TEST_REQUIRE(entries.size() == 2u);
  BOOST_TEST(entries.back().amount == -usage->cost);
  check_ledger_invariants(*sql, ada.id);
  BOOST_TEST(me_of(gw, ada.key)["held"] == 0);
}

// keepalive_seconds 1 and 2.5 s between two chunks: the caller gets `: keep-alive` comments
// in the silence, and the stream still completes.
BOOST_AUTO_TEST_CASE(keepalive_comments_in_silence) {
  mock_upstream a;
  mock_upstream b;
  BOOST_TEST_REQUIRE(a.settings({{"chunks", 2}, {"interval_ms", 2'500}}).status == 200);
  auto config = failover_config(a.base_url(), b.base_url());
  config["routing"]["keepalive_seconds"] = 1;
  test_gateway gw(store::sqlite, options_with_config(config));
  auto admin = gw.admin();
  auto ada = make_metered_user(admin, "ada@example.com", opening);
  auto client = gw.consumer(ada.key);

  auto response =
      client.post("/v1/chat/completions", dump(chat_body("gpt-mock", "hello", 8, true, true)));
  BOOST_TEST_REQUIRE(response.status == 200, response.body);
  auto s = summarize_stream(response.body);
  BOOST_TEST(s.done, response.body);
  BOOST_TEST(!s.error.has_value(), response.body);
  BOOST_TEST(s.content_events == 2u, response.body);
  BOOST_TEST(s.keepalives >= 1u, "no keep-alive comment in 2.5 s of silence: " << response.body);
  BOOST_TEST(s.bad_events.empty());
  auto sql = gw.open_db();
  BOOST_TEST(usage_row_of(*sql, response.header("x-request-id"))->status == "ok");
  BOOST_TEST(me_of(gw, ada.key)["held"] == 0);
}

BOOST_AUTO_TEST_SUITE_END()
