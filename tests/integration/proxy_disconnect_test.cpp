#include <chrono>
#include <optional>
#include <string>
#include <thread>

#include <boost/test/unit_test.hpp>

#include "tests/integration/harness.hpp"
#include "tests/support/mock_upstream_process.hpp"

// A client that leaves in the middle of a stream: the gateway stops the upstream, charges what
// was delivered, records the call as client_gone and releases the rest of the hold. A client
// that only stops reading for a while gets the whole stream.

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

// A client that stops reading for two seconds: the gateway's write to it waits, the pieces that
// come meanwhile wait behind it, and once the client reads again they all reach it, whole,
// while the upstream is still sending (they do not wait for the end of the stream).
BOOST_AUTO_TEST_CASE(a_client_that_stops_reading_gets_every_piece_when_it_reads_again) {
  mock_upstream mock;
  // 1,000,000 tokens (about 7 MB) in 200 pieces, one every 15 ms: 3 s for the whole answer.
  // The client stops for 2.2 s, while more comes than the sockets' buffers can hold (the
  // gateway's send buffer grows to 4 MB at most: /proc/sys/net/ipv4/tcp_wmem).
  constexpr std::size_t tokens = 1'000'000;
  auto set = mock.settings({{"chunks", 200}, {"interval_ms", 15}, {"completion_tokens", tokens}});
  BOOST_TEST_REQUIRE(set.status == 200, set.body);
  test_gateway gw(store::sqlite, options_with_config(mock_gateway_config(mock.base_url())));
  auto admin = gw.admin();
  constexpr int64_t opening = 100'000'000;
  auto ada = make_metered_user(admin, "ada@example.com", opening);

  bool stalled = false;
  std::size_t read_while_upstream_sent = 0;
  stream_client client;
  client.receive_buffer = 16 * 1024;
  client.on_piece = [&](const abandoned_stream& s) {
    if (!stalled && s.events >= 1) {
      stalled = true;
      std::this_thread::sleep_for(2200ms);
    } else if (stalled && read_while_upstream_sent < s.received.size() &&
               mock.stats()["in_flight"] == 1) {
      read_while_upstream_sent = s.received.size();
    }
    return true;
  };
  auto body = chat_body("gpt-mock", "hello there mock", tokens, true, true);
  auto read = read_stream(gw.base_url(), "/v1/chat/completions", ada.key, dump(body), client, 60s);
  BOOST_TEST_REQUIRE(read.status == 200, read.received.substr(0, 500));
  BOOST_TEST_REQUIRE(stalled);
  BOOST_TEST(read.received.size() > 6'000'000u);
  // 200 pieces, the usage event, [DONE]; nothing lost, nothing twice, no error.
  BOOST_TEST(read.events == 202u);
  BOOST_TEST(word_count(summarize_stream(read.received).text) == tokens);
  BOOST_TEST(read.received.find("\"error\"") == std::string::npos);
  BOOST_TEST(read.received.ends_with("data: [DONE]\n\n"));
  // Nearly all of the answer reached the client before the upstream's last piece: the pieces
  // that waited were written as soon as the client read again. (Had they waited for the end
  // of the stream, the client would have had only what the sockets held: 3.6 of 6.3 MB here.)
  BOOST_TEST(read_while_upstream_sent * 10 > read.received.size() * 8,
             read_while_upstream_sent << " of " << read.received.size() << " bytes");

  auto sql = gw.open_db();
  auto usage = usage_row_of(*sql, read.request_id);
  BOOST_TEST_REQUIRE(usage.has_value());
  BOOST_TEST(usage->status == "ok");
  BOOST_TEST(usage->completion_tokens == static_cast<int64_t>(tokens));
  BOOST_TEST(check_ledger_invariants(*sql, ada.id) == opening - usage->cost);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(proxy_disconnect_live)

BOOST_AUTO_TEST_CASE(client_gone_mid_stream) {
  check_client_gone_mid_stream(store::postgresql);
}

BOOST_AUTO_TEST_SUITE_END()
