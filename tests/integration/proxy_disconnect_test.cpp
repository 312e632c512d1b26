#include <chrono>
#include <optional>
#include <string>

#include <boost/test/unit_test.hpp>

#include "tests/integration/harness.hpp"
#include "tests/support/mock_upstream_process.hpp"

// A client that leaves in the middle of a stream: the gateway stops the upstream, charges what
// was delivered, records the call as client_gone and releases the rest of the hold.

using namespace tollgate::test;
using namespace tollgate::test::integration;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

void check_client_gone_mid_stream(store kind) {
  mock_upstream mock;
  // 200 tokens in 50 chunks, one every 50 ms: 2.5 s for the whole answer.
  auto set = mock.settings({{"chunks", 50}, {"interval_ms", 50}, {"completion_tokens", 200}});
  BOOST_TEST_REQUIRE(set.status == 200, set.body);
  test_gateway gw(kind, options_with_config(mock_gateway_config(mock.base_url())));
  auto admin = gw.admin();
  constexpr int64_t opening = 100'000;
  auto erin = make_metered_user(admin, "erin@example.com", opening);

  auto body = chat_body("gpt-mock", "hello there mock", 200, true, true);
  auto left =
      read_stream_then_leave(gw.base_url(), "/v1/chat/completions", erin.key, dump(body), 3, 10s);
  const auto left_at = std::chrono::steady_clock::now();
  BOOST_TEST_REQUIRE(left.status == 200, left.received);
  BOOST_TEST_REQUIRE(left.events >= 3u, left.received);
  BOOST_TEST_REQUIRE(!left.request_id.empty());
  BOOST_TEST(left.received.find("[DONE]") == std::string::npos, left.received);

  // The gateway notices at its next write and settles: poll the store, bounded.
  auto sql = gw.open_db();
  std::optional<usage_row> usage;
  bool settled = wait_until(10s, [&] {
    usage = usage_row_of(*sql, left.request_id);
    return usage.has_value();
  });
  BOOST_TEST_REQUIRE(settled, "no usage row 10 s after the client left");
  BOOST_TEST_MESSAGE("settled " << std::chrono::duration_cast<std::chrono::milliseconds>(
                                       std::chrono::steady_clock::now() - left_at)
                                       .count()
                                << " ms after the client left");
  BOOST_TEST(usage->status == "client_gone");
  BOOST_TEST(usage->key_id == erin.key_id);
  BOOST_TEST(usage->deployment == "mock/mock-1");
  BOOST_TEST(usage->completion_tokens > 0);
  // Only part of the answer was produced before the upstream was stopped.
  BOOST_TEST(usage->completion_tokens < 200);
  BOOST_TEST(usage->cost > 0);

  auto entries = ledger_of(*sql, erin.id);
  BOOST_TEST_REQUIRE(entries.size() == 2u);
  BOOST_TEST(entries.back().request_id == left.request_id);
  BOOST_TEST(entries.back().kind == "charge");
  BOOST_TEST(entries.back().amount == -usage->cost);
  BOOST_TEST(check_ledger_invariants(*sql, erin.id) == opening - usage->cost);

  json me;
  bool released = wait_until(5s, [&] {
    me = me_of(gw, erin.key);
    return me["held"] == 0;
  });
  BOOST_TEST(released, "hold still open: " << me.dump());
  BOOST_TEST(me["balance"] == opening - usage->cost);
  BOOST_TEST(me["available"] == opening - usage->cost);

  // The upstream stream was cancelled, not run to its end.
  json stats;
  bool cancelled = wait_until(5s, [&] {
    stats = mock.stats();
    return stats["cancelled"] == 1 && stats["in_flight"] == 0;
  });
  BOOST_TEST(cancelled, "mock stats: " << stats.dump());
  BOOST_TEST(stats["requests"] == 1);
}

} // namespace

BOOST_AUTO_TEST_SUITE(proxy_disconnect_sqlite)

BOOST_AUTO_TEST_CASE(client_gone_mid_stream) {
  check_client_gone_mid_stream(store::sqlite);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(proxy_disconnect_live)

BOOST_AUTO_TEST_CASE(client_gone_mid_stream) {
  check_client_gone_mid_stream(store::postgresql);
}

BOOST_AUTO_TEST_SUITE_END()
