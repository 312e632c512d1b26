#include <chrono>
#include <csignal>
#include <map>
#include <string>
#include <thread>

#include <boost/test/unit_test.hpp>

#include "tests/integration/harness.hpp"
#include "tests/support/mock_upstream_process.hpp"
#include "tests/support/thread_stats.hpp"

// Operating the gateway: /metrics is valid Prometheus text whose counters match the calls
// made; a drain (by request or SIGTERM) lets the streams in flight finish, refuses new calls
// with 503 `draining`, and exits 0.

using namespace tollgate::test;
using namespace tollgate::test::integration;
using namespace std::chrono_literals;
using nlohmann::json;
using std::chrono::milliseconds;

namespace {

constexpr int64_t opening = 1'000'000;

/// Checks what every exposition must satisfy: no format errors, HELP and TYPE for every
/// family, the gateway's own families named tollgate_* beside the standard process_* ones,
/// counters named *_total, and histograms whose buckets are cumulative up to +Inf.
void check_exposition(const prometheus_text& m) {
  for (const auto& e : m.errors)
    BOOST_TEST(false, "/metrics: " << e);
  for (const auto& [family, type] : m.types) {
    BOOST_TEST_CONTEXT("family " << family) {
      BOOST_TEST(m.help.count(family) == 1u, "no HELP");
      BOOST_TEST((family.starts_with("tollgate_") || family.starts_with("process_")));
      if (type == "counter")
        BOOST_TEST(family.ends_with("_total"));
    }
  }
  for (const auto& [family, type] : m.types) {
    if (type != "histogram")
      continue;
    for (const auto& s : m.samples) {
      if (s.name != family + "_count")
        continue;
      BOOST_TEST_CONTEXT("histogram " << family << " " << json(s.labels).dump()) {
        double previous = 0;
        bool saw_inf = false;
        for (const auto& b : m.samples) {
          if (b.name != family + "_bucket")
            continue;
          auto labels = b.labels;
          auto le = labels["le"];
          labels.erase("le");
          if (labels != s.labels)
            continue;
          BOOST_TEST(b.value >= previous, "bucket le=" << le << " is not cumulative");
          previous = b.value;
          if (le == "+Inf") {
            saw_inf = true;
            BOOST_TEST(b.value == s.value, "+Inf bucket differs from _count");
          }
        }
        BOOST_TEST(saw_inf, "no +Inf bucket");
        BOOST_TEST(m.value(family + "_sum", s.labels).has_value(), "no _sum");
      }
    }
  }
}

/// A gateway in front of a mock that streams 20 chunks 100 ms apart (2 s a stream).
struct slow_stream_setup {
  mock_upstream mock;
  test_gateway gw;
  metered_user ada;

  slow_stream_setup()
      : gw(store::sqlite, options_with_config(mock_gateway_config(mock.base_url()))) {
    BOOST_TEST_REQUIRE(mock.settings({{"chunks", 20}, {"interval_ms", 100}}).status == 200);
    auto admin = gw.admin();
    ada = make_metered_user(admin, "ada@example.com", opening);
  }
};

/// Starts a slow stream, calls `begin_drain` once it is in flight, then checks that the
/// stream completes, new calls get 503 `draining`, the charge is durable and the process
/// exits 0.
template <class BeginDrain>
void check_drain(BeginDrain begin_drain) {
  slow_stream_setup s;
  std::string body;
  long status = 0;
  std::string error;
  std::thread streamer([&] {
    try {
      auto client = s.gw.consumer(s.ada.key);
      client.timeouts(milliseconds{5'000}, milliseconds{30'000});
      auto response =
          client.post("/v1/chat/completions", dump(chat_body("gpt-mock", "hello", 20, true, true)));
      status = response.status;
      body = response.body;
    } catch (const std::exception& e) {
      error = e.what();
    }
  });
  bool in_flight =
      wait_until(std::chrono::seconds{5}, [&] { return s.mock.stats()["in_flight"] == 1; });
  if (in_flight)
    begin_drain(s.gw);
  // New calls are refused while the stream finishes.
  bool refusing = wait_until(std::chrono::seconds{2},
                             [&] { return s.gw.anonymous().get("/ready").status == 503; });
  std::optional<http_response> refused;
  if (refusing)
    refused = s.gw.consumer(s.ada.key).post("/v1/chat/completions",
                                            dump(chat_body("gpt-mock", "hello", 8)));
  bool stream_running = s.mock.stats()["in_flight"] == 1;
  streamer.join();
  BOOST_TEST_REQUIRE(in_flight, "the stream never reached the mock");
  BOOST_TEST(refusing, "GET /ready did not answer 503 while draining");
  if (refused)
    expect_error(*refused, 503, "server_error", "draining", std::nullopt, "a call while draining");
  BOOST_TEST(stream_running, "the stream ended before the refused call was made");

  BOOST_TEST_REQUIRE(error.empty(), "the stream in flight broke: " << error);
  BOOST_TEST_REQUIRE(status == 200, body);
  auto summary = summarize_stream(body);
  BOOST_TEST(summary.done, body);
  BOOST_TEST(!summary.error.has_value(), body);
  BOOST_TEST(summary.content_events == 16u, body);

  bool exited = wait_until(std::chrono::seconds{20}, [&] { return !s.gw.process().running(); });
  BOOST_TEST(exited, "still running 20 s after the drain began");
  BOOST_TEST(s.gw.process().stop() == 0, "exit status");

  // The stream's charge was made durable before the process went away.
  auto sql = s.gw.open_db();
  auto entries = ledger_of(*sql, s.ada.id);
  BOOST_TEST_REQUIRE(entries.size() == 2u);
  BOOST_TEST(entries.back().kind == "charge");
  auto usage = usage_of(*sql, s.ada.id);
  BOOST_TEST_REQUIRE(usage.size() == 1u);
  BOOST_TEST(usage[0].status == "ok");
  BOOST_TEST(entries.back().amount == -usage[0].cost);
  check_ledger_invariants(*sql, s.ada.id);
}

/// Threads of the gateway's process by name, after it served a chat completion.
std::map<std::string, int> threads_after_a_call(const nlohmann::json& config) {
  mock_upstream mock;
  auto with_mock = mock_gateway_config(mock.base_url());
  with_mock.update(config);
  test_gateway gw(store::sqlite, options_with_config(with_mock));
  auto admin = gw.admin();
  auto ada = make_metered_user(admin, "ada@example.com", 10'000);
  auto r = gw.consumer(ada.key).post("/v1/chat/completions", dump(chat_body("gpt-mock", "hi", 5)));
  BOOST_TEST_REQUIRE(r.status == 200, r.body);
  return threads_by_name(gw.process().pid());
}

std::string list_threads(const std::map<std::string, int>& names) {
  std::string all;
  for (const auto& [name, count] : names)
    all += name + " x" + std::to_string(count) + ", ";
  return all;
}

} // namespace

BOOST_AUTO_TEST_SUITE(resilience_ops_sqlite)

// 3 calls answered and 1 refused by the key's rpm: /metrics parses and its counters say so;
// the token and credit counters equal the usage rows.
BOOST_AUTO_TEST_CASE(metrics_match_calls) {
  mock_upstream mock;
  test_gateway gw(store::sqlite, options_with_config(mock_gateway_config(mock.base_url())));
  auto admin = gw.admin();
  auto ada = make_metered_user(admin, "ada@example.com", opening, {{"rpm", 3}});
  auto client = gw.consumer(ada.key);

  check_exposition(scrape_metrics(gw));
  for (bool stream : {false, true, false}) {
    auto response =
        client.post("/v1/chat/completions", dump(chat_body("gpt-mock", "hello", 8, stream, true)));
    BOOST_TEST_REQUIRE(response.status == 200, response.body);
  }
  auto limited = client.post("/v1/chat/completions", dump(chat_body("gpt-mock", "hello", 8)));
  BOOST_TEST_REQUIRE(limited.status == 429, limited.body);
  auto limited_type = limited.json()["error"]["type"].get<std::string>();

  auto m = scrape_metrics(gw);
  check_exposition(m);
  const std::string chat = "/v1/chat/completions";
  BOOST_TEST(
      m.value("tollgate_requests_total", {{"endpoint", chat}, {"code", "200"}}).value_or(-1) == 3);
  BOOST_TEST(
      m.value("tollgate_requests_total", {{"endpoint", chat}, {"code", "429"}}).value_or(-1) == 1);
  BOOST_TEST(m.sum("tollgate_requests_total", {{"endpoint", chat}}) == 4);
  BOOST_TEST(m.sum("tollgate_errors_total", {{"type", limited_type}}) == 1);
  BOOST_TEST(m.sum("tollgate_rate_limited_total") == 1);
  BOOST_TEST(m.sum("tollgate_rate_limited_total", {{"scope", "key"}}) == 1);

  auto sql = gw.open_db();
  int64_t prompt = 0;
  int64_t completion = 0;
  int64_t cost = 0;
  auto rows = usage_of(*sql, ada.id);
  BOOST_TEST_REQUIRE(rows.size() == 3u);
  for (const auto& r : rows) {
    prompt += r.prompt_tokens;
    completion += r.completion_tokens;
    cost += r.cost;
  }
  BOOST_TEST(cost > 0);
  BOOST_TEST(m.sum("tollgate_tokens_total", {{"model", "gpt-mock"}, {"kind", "prompt"}}) == prompt);
  BOOST_TEST(m.sum("tollgate_tokens_total", {{"model", "gpt-mock"}, {"kind", "completion"}}) ==
             completion);
  BOOST_TEST(m.sum("tollgate_credits_charged_micro_total", {{"model", "gpt-mock"}}) == cost);
  BOOST_TEST(m.sum("tollgate_request_duration_seconds_count", {{"endpoint", chat}}) == 3);
  BOOST_TEST(m.sum("tollgate_time_to_first_token_seconds_count", {{"model", "gpt-mock"}}) == 3);
  BOOST_TEST(m.sum("tollgate_overhead_seconds_count") == 3);
  BOOST_TEST(m.value("tollgate_upstream_calls_in_flight").value_or(-1) == 0);
  BOOST_TEST(m.value("tollgate_breaker_state", {{"deployment", "mock/mock-1"}}).value_or(-1) == 0);
  BOOST_TEST(m.sum("tollgate_upstream_retries_total") == 0);
  BOOST_TEST(m.sum("tollgate_ledger_batch_size_count") >= 1);
  BOOST_TEST(m.sum("tollgate_ledger_commit_seconds_count") >= 1);
  // One wait per balance change committed: the opening credit and 3 charges.
  BOOST_TEST(m.sum("tollgate_ledger_wait_seconds_count") == 4);
  BOOST_TEST(m.sum("tollgate_ledger_batch_size_sum") == 4);
  BOOST_TEST(m.sum("tollgate_actors", {{"kind", "user"}}) >= 1);
  for (const char* family :
       {"tollgate_requests_total", "tollgate_errors_total", "tollgate_tokens_total",
        "tollgate_credits_charged_micro_total", "tollgate_request_duration_seconds",
        "tollgate_time_to_first_token_seconds", "tollgate_overhead_seconds",
        "tollgate_upstream_calls_in_flight", "tollgate_breaker_state",
        "tollgate_upstream_retries_total", "tollgate_rate_limited_total",
        "tollgate_ledger_batch_size", "tollgate_ledger_commit_seconds",
        "tollgate_ledger_wait_seconds", "tollgate_actors"})
    BOOST_TEST(m.types.count(family) == 1u, family << " has no TYPE");
  BOOST_TEST(m.types["tollgate_requests_total"] == "counter");
  BOOST_TEST(m.types["tollgate_breaker_state"] == "gauge");
  BOOST_TEST(m.types["tollgate_request_duration_seconds"] == "histogram");

  // The process's own figures, under the names every Prometheus client library uses.
  auto now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch());
  auto started = m.value("process_start_time_seconds").value_or(0);
  BOOST_TEST(started > now.count() - 3600);
  BOOST_TEST(started <= now.count() + 5);
  BOOST_TEST(m.value("process_cpu_seconds_total").value_or(0) > 0);
  BOOST_TEST(m.value("process_resident_memory_bytes").value_or(0) > 1 << 20);
  BOOST_TEST(m.value("process_virtual_memory_bytes").value_or(0) >=
             m.value("process_resident_memory_bytes").value_or(1));
  BOOST_TEST(m.value("process_open_fds").value_or(0) >= 3); // the listener, the database, ...
  BOOST_TEST(m.value("process_max_fds").value_or(0) >= m.value("process_open_fds").value_or(1));
  BOOST_TEST(m.types["process_cpu_seconds_total"] == "counter");
  BOOST_TEST(m.types["process_resident_memory_bytes"] == "gauge");
#ifdef TOLLGATE_JEMALLOC
  // jemalloc's totals, read at the scrape: what the gateway holds fits in the pages that hold
  // it, which fit in what is mapped.
  auto allocated = m.value("tollgate_allocator_bytes", {{"state", "allocated"}}).value_or(0);
  auto active = m.value("tollgate_allocator_bytes", {{"state", "active"}}).value_or(0);
  auto mapped = m.value("tollgate_allocator_bytes", {{"state", "mapped"}}).value_or(0);
  BOOST_TEST(allocated > 0);
  BOOST_TEST(allocated <= active);
  BOOST_TEST(active <= mapped);
  BOOST_TEST(m.value("tollgate_allocator_bytes", {{"state", "resident"}}).value_or(0) > 0);
#endif
}

// The parser itself rejects what Prometheus would.
/// Idle key and user actors passivate (the actors gauge drops to 0), and their day windows
/// are kept for their next activation, on a single node without Redis too: 2 of 3 calls of
/// the day, passivation, then of 2 more calls only the third of the day is admitted.
/// `user_limits` (PATCHed onto the user) and `key_limits` say whose day window it is.
void check_day_window_survives_passivation(const json& user_limits, const json& key_limits) {
  mock_upstream mock;
  auto config = mock_gateway_config(mock.base_url());
  config["actors"] = {{"idle_seconds", 1}};
  test_gateway gw(store::sqlite, options_with_config(config));
  auto admin = gw.admin();
  auto bea = make_metered_user(admin, "bea@example.com", opening, key_limits);
  if (!user_limits.empty()) {
    auto patched = admin.patch("/admin/users/" + bea.id, dump(user_limits));
    BOOST_TEST_REQUIRE(patched.status == 200, patched.body);
  }
  auto client = gw.consumer(bea.key);
  auto call = [&] {
    return client.post("/v1/chat/completions", dump(chat_body("gpt-mock", "hello", 5))).status;
  };
  BOOST_TEST(call() == 200);
  BOOST_TEST(call() == 200);
  BOOST_TEST_REQUIRE(wait_until(15s, [&] {
    auto m = scrape_metrics(gw);
    return m.sum("tollgate_actors", {{"kind", "key"}}) == 0 &&
           m.sum("tollgate_actors", {{"kind", "user"}}) == 0;
  }));
  BOOST_TEST(call() == 200); // the third of the day
  BOOST_TEST(call() == 429);
  BOOST_TEST(scrape_metrics(gw).sum("tollgate_actors", {{"kind", "key"}}) == 1);
  auto sql = gw.open_db();
  check_ledger_invariants(*sql, bea.id);
  BOOST_TEST(ledger_of(*sql, bea.id).size() == 4u); // the opening credit and 3 charges
}

BOOST_AUTO_TEST_CASE(a_passivated_key_keeps_its_day_window) {
  check_day_window_survives_passivation(json::object(), {{"rpd", 3}});
}

BOOST_AUTO_TEST_CASE(a_passivated_user_keeps_its_day_window) {
  check_day_window_survives_passivation({{"rpd", 3}}, json::object());
}

BOOST_AUTO_TEST_CASE(threads_carry_the_names_operators_see) {
  // top -H, perf and /proc tell the gateway's threads apart by these names.
  auto names = threads_after_a_call(nlohmann::json::object());
  BOOST_TEST_CONTEXT("threads: " << list_threads(names)) {
    BOOST_TEST(names["tg-ledger"] == 1);   // the ledger writer
    BOOST_TEST(names["tg-upstream"] == 0); // the curl loop runs on the workers
    BOOST_TEST(names["tg-db-read"] == 2);  // SQLite readers
    BOOST_TEST(names["tg-clock"] == 1);    // actor timeouts and delayed messages
    BOOST_TEST(names["tg-worker"] >= 1);   // actor workers: also the upstream's sockets and,
                                           // by default, the front end's
    BOOST_TEST(names["tg-http"] == 0);
  }
}

BOOST_AUTO_TEST_CASE(the_front_end_runs_on_threads_of_its_own_when_configured) {
  auto names = threads_after_a_call({{"http", {{"threads", 2}}}});
  BOOST_TEST_CONTEXT("threads: " << list_threads(names)) {
    BOOST_TEST(names["tg-http"] >= 1); // RESTinio threads that served a request
    BOOST_TEST(names["tg-worker"] >= 1);
  }
}

BOOST_AUTO_TEST_CASE(prometheus_parser_rejects_bad_text) {
  auto good =
      parse_prometheus("# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 2\n"
                       "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 0.5\nh_count 1\n");
  BOOST_TEST(good.errors.empty());
  BOOST_TEST(good.value("a_total", {{"x", "1"}}).value_or(-1) == 2);
  BOOST_TEST(good.value("h_count").value_or(-1) == 1);
  for (const char* bad :
       {"untyped_sample 1\n", "# TYPE a counter\na{x=1} 1\n", "# TYPE a counter\na 1 2 3\n",
        "# TYPE a counter\na one\n", "# TYPE a counter\na 1\na 2\n", "# TYPE a bogus\n",
        "# TYPE a counter\n# TYPE a gauge\n", "# TYPE a counter\na 1"})
    BOOST_TEST(!parse_prometheus(bad).errors.empty(), "accepted: " << bad);
}

// POST /admin/control/drain: 202, the stream in flight completes with [DONE], new calls get
// 503 draining, and the process exits 0.
BOOST_AUTO_TEST_CASE(drain_finishes_streams_and_exits_zero) {
  check_drain([](test_gateway& gw) {
    auto response = gw.admin().post("/admin/control/drain", "");
    BOOST_TEST(response.status == 202, response.body);
    if (response.status == 202) {
      auto doc = response.json();
      BOOST_TEST(doc["draining"] == true);
      BOOST_TEST(doc["in_flight"] == 1, response.body);
    }
  });
}

// SIGTERM drains the same way.
BOOST_AUTO_TEST_CASE(sigterm_drains_and_exits_zero) {
  check_drain([](test_gateway& gw) { ::kill(gw.process().pid(), SIGTERM); });
}

BOOST_AUTO_TEST_SUITE_END()
