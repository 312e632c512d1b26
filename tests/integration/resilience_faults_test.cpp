#include <algorithm>
#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/test/unit_test.hpp>

#include "tests/integration/harness.hpp"
#include "tests/support/mock_upstream_process.hpp"

// Faults that touch money, on SQLite and PostgreSQL: a stream that breaks or stalls after its
// first byte charges what was delivered and never falls back; a provider actor killed under
// calls in flight is restarted and nothing hangs or stays held; retries stay within their
// budget under an upstream that always fails; after a mix of every fault the ledger
// invariants of DESIGN.md hold; and on PostgreSQL, sessions the server ends fail no call.

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

int requests_of(mock_upstream& mock) {
  return mock.stats()["requests"].get<int>();
}

/// What one call in a background thread got; Boost.Test checks run on the main thread.
struct call_result {
  long status = 0;
  std::string body;
  std::string request_id;
  std::string transport_error; ///< Set when the client gave up (timeout, reset).
  int64_t elapsed_ms = 0;
};

call_result post_chat(const std::string& base_url, const std::string& key, const json& body,
                      milliseconds timeout, const header_list& headers = {}) {
  call_result r;
  http_client client(base_url);
  client.bearer(key);
  client.timeouts(milliseconds{5'000}, timeout);
  auto start = steady_clock::now();
  try {
    auto response = client.post("/v1/chat/completions", body.dump(), headers);
    r.status = response.status;
    r.body = response.body;
    r.request_id = response.header("x-request-id");
  } catch (const std::exception& e) {
    r.transport_error = e.what();
  }
  r.elapsed_ms = ms_since(start);
  return r;
}

/// True if `body` is an OpenAI-shaped error object.
bool openai_error_shaped(const std::string& body) {
  auto doc = json::parse(body, nullptr, false);
  return doc.is_object() && doc.size() == 1u && doc.contains("error") && doc["error"].is_object() &&
         doc["error"].contains("message") && doc["error"].contains("type") &&
         doc["error"].contains("code") && doc["error"].contains("param");
}

/// Every usage row of `user_id` with a cost has exactly one charge of that cost in the ledger,
/// and rows without a cost have none; returns the total charged.
int64_t check_charges_match_usage(soci::session& sql, const std::string& user_id) {
  std::map<std::string, int64_t> charges;
  for (const auto& e : ledger_of(sql, user_id))
    if (e.kind == "charge") {
      BOOST_TEST(charges.count(e.request_id) == 0u, "two charges for " << e.request_id);
      charges[e.request_id] = e.amount;
    }
  int64_t total = 0;
  for (const auto& row : usage_of(sql, user_id)) {
    BOOST_TEST_CONTEXT("usage row " << row.request_id << " (" << row.status << ")") {
      BOOST_TEST(row.cost >= 0);
      if (row.cost > 0) {
        BOOST_TEST(charges.count(row.request_id) == 1u);
        BOOST_TEST(charges[row.request_id] == -row.cost);
      } else {
        BOOST_TEST(charges.count(row.request_id) == 0u);
      }
      total += row.cost;
    }
  }
  int64_t charged = 0;
  for (const auto& [id, amount] : charges)
    charged -= amount;
  BOOST_TEST(charged == total);
  return total;
}

/// A stream broken after its first bytes on A: an error event, no [DONE], B never asked, the
/// delivered part charged, the attempt logged as broken, and nothing held.
void check_mid_stream_fault(store kind, const std::string& fault, const json& a_extra,
                            const header_list& headers, const std::string& what) {
  BOOST_TEST_MESSAGE(what);
  mock_upstream a;
  mock_upstream b;
  BOOST_TEST_REQUIRE(
      a.settings({{"fault", fault}, {"chunks", 8}, {"completion_tokens", 16}}).status == 200);
  test_gateway gw(kind, options_with_config(failover_config(a.base_url(), b.base_url(), a_extra)));
  auto admin = gw.admin();
  auto ada = make_metered_user(admin, "ada@example.com", opening);
  auto client = gw.consumer(ada.key);
  client.timeouts(milliseconds{5'000}, milliseconds{20'000});
  auto sql = gw.open_db();

  auto start = steady_clock::now();
  auto response = client.post("/v1/chat/completions",
                              dump(chat_body("gpt-mock", "hello there", 16, true, true)), headers);
  auto elapsed = ms_since(start);
  BOOST_TEST_CONTEXT(what << " -> " << response.status << " " << response.body) {
    BOOST_TEST_REQUIRE(response.status == 200);
    BOOST_TEST(elapsed < 5'000, "ended after " << elapsed << " ms");
    auto s = summarize_stream(response.body);
    BOOST_TEST(s.content_events == 3u);
    BOOST_TEST(!s.done);
    BOOST_TEST_REQUIRE(s.error.has_value(), "no error event");
    BOOST_TEST((*s.error)["code"] == "upstream_stream_error");
    BOOST_TEST((*s.error)["type"] == "server_error");
    BOOST_TEST(!(*s.error).value("message", "").empty());
    BOOST_TEST(requests_of(b) == 0, "the call fell back after its first byte");

    const auto request_id = response.header("x-request-id");
    auto usage = usage_row_of(*sql, request_id);
    BOOST_TEST_REQUIRE(usage.has_value(), "no usage row");
    BOOST_TEST(usage->status == "upstream_error");
    BOOST_TEST(usage->deployment == "mock-a/mock-1");
    BOOST_TEST(usage->completion_tokens > 0);
    BOOST_TEST(usage->completion_tokens < 16);
    BOOST_TEST(usage->cost > 0);
    auto attempts = attempts_of(*sql, request_id);
    BOOST_TEST(attempts->attempts == 1);
    BOOST_TEST(attempts->log == "mock-a/mock-1:broken");
    auto entries = ledger_of(*sql, ada.id);
    BOOST_TEST_REQUIRE(entries.size() == 2u);
    BOOST_TEST(entries.back().request_id == request_id);
    BOOST_TEST(entries.back().kind == "charge");
    BOOST_TEST(entries.back().amount == -usage->cost);
    BOOST_TEST(check_ledger_invariants(*sql, ada.id) == opening - usage->cost);
    auto me = me_of(gw, ada.key);
    BOOST_TEST(me["held"] == 0);
    BOOST_TEST(me["balance"] == opening - usage->cost);
  }
}

void check_mid_stream_reset(store kind) {
  check_mid_stream_fault(kind, "reset-after:3", json::object(), {}, "reset after 3 events");
}

void check_mid_stream_stall(store kind) {
  check_mid_stream_fault(kind, "stall-after:3", {{"timeouts", {{"idle_ms", 300}}}}, {},
                         "stall after 3 events, idle_ms 300");
  // The deployment waits 120 s by default; the caller's header cuts that to 300 ms.
  check_mid_stream_fault(kind, "stall-after:3", json::object(),
                         {{"x-tollgate-timeout-idle-ms", "300"}},
                         "stall after 3 events, x-tollgate-timeout-idle-ms 300");
}

/// POST /admin/providers/mock/restart while a stream and a buffered call are in flight: both
/// end within a bound (answered, or an OpenAI-shaped error), nothing stays held, the provider
/// comes back and later calls succeed.
void check_provider_restart(store kind) {
  mock_upstream mock;
  // Streams take 10 x 150 ms; buffered answers 1.5 s.
  BOOST_TEST_REQUIRE(
      mock.settings({{"chunks", 10}, {"interval_ms", 150}, {"latency_ms", 1'500}}).status == 200);
  test_gateway gw(kind, options_with_config(mock_gateway_config(mock.base_url())));
  auto admin = gw.admin();
  auto ada = make_metered_user(admin, "ada@example.com", opening);
  auto sql = gw.open_db();

  call_result streamed;
  call_result buffered;
  std::thread stream_thread([&] {
    streamed = post_chat(gw.base_url(), ada.key, chat_body("gpt-mock", "hello", 16, true, true),
                         milliseconds{20'000});
  });
  std::thread buffered_thread([&] {
    buffered =
        post_chat(gw.base_url(), ada.key, chat_body("gpt-mock", "hello", 16), milliseconds{20'000});
  });
  bool both_in_flight =
      wait_until(std::chrono::seconds{5}, [&] { return mock.stats()["in_flight"] == 2; });
  std::this_thread::sleep_for(milliseconds{200});
  auto restarted = admin.post("/admin/providers/mock/restart", "");
  stream_thread.join();
  buffered_thread.join();
  BOOST_TEST(both_in_flight, "the two calls never reached the mock together: " << mock.stats());
  BOOST_TEST_REQUIRE(restarted.status == 202, restarted.body);
  BOOST_TEST(restarted.json()["provider"] == "mock");

  BOOST_TEST_CONTEXT("stream in flight at the restart -> " << streamed.status << " "
                                                           << streamed.transport_error << " "
                                                           << streamed.body) {
    BOOST_TEST_REQUIRE(streamed.transport_error.empty(), "the stream hung or broke");
    BOOST_TEST(streamed.elapsed_ms < 15'000);
    if (streamed.status == 200) {
      auto s = summarize_stream(streamed.body);
      BOOST_TEST((s.done || (s.error && (*s.error)["code"] == "upstream_stream_error")),
                 "a stream must end with [DONE] or an error event");
      BOOST_TEST(!(s.done && s.error), "[DONE] after an error event");
    } else {
      BOOST_TEST(streamed.status >= 500);
      BOOST_TEST(openai_error_shaped(streamed.body));
    }
    BOOST_TEST(usage_row_of(*sql, streamed.request_id).has_value());
  }
  BOOST_TEST_CONTEXT("buffered call in flight at the restart -> " << buffered.status << " "
                                                                  << buffered.transport_error << " "
                                                                  << buffered.body) {
    BOOST_TEST_REQUIRE(buffered.transport_error.empty(), "the call hung or broke");
    BOOST_TEST(buffered.elapsed_ms < 15'000);
    if (buffered.status == 200)
      BOOST_TEST(json::parse(buffered.body).contains("choices"));
    else
      BOOST_TEST((buffered.status >= 500 && openai_error_shaped(buffered.body)));
    BOOST_TEST(usage_row_of(*sql, buffered.request_id).has_value());
  }
  BOOST_TEST(wait_until(std::chrono::seconds{5}, [&] { return me_of(gw, ada.key)["held"] == 0; }),
             "a hold stayed open: " << me_of(gw, ada.key));

  // The supervisor brings the provider back; later calls succeed.
  BOOST_TEST_REQUIRE(mock.settings({{"latency_ms", 0}}).status == 200);
  auto client = gw.consumer(ada.key);
  bool back = wait_until(std::chrono::seconds{10}, [&] {
    return provider_status(gw, "mock/mock-1")["up"] == true &&
           client.post("/v1/chat/completions", dump(chat_body("gpt-mock", "hello", 8))).status ==
               200;
  });
  BOOST_TEST_REQUIRE(back, "no successful call within 10 s of the restart: "
                               << provider_status(gw, "mock/mock-1"));
  for (bool stream : {false, true, false}) {
    auto response =
        client.post("/v1/chat/completions", dump(chat_body("gpt-mock", "hello", 8, stream)));
    BOOST_TEST(response.status == 200, response.body);
    if (stream)
      BOOST_TEST(summarize_stream(response.body).done, response.body);
  }
  BOOST_TEST(wait_until(std::chrono::seconds{5}, [&] { return mock.stats()["in_flight"] == 0; }),
             "upstream requests left running: " << mock.stats());

  auto audit = admin.get("/admin/audit").json();
  int restarts = 0;
  for (const auto& row : audit["data"])
    restarts += row.value("action", "") == "provider.restart" && row.value("target", "") == "mock";
  BOOST_TEST(restarts == 1, audit.dump());
  expect_error(admin.post("/admin/providers/nobody/restart", ""), 404, "not_found_error",
               "not_found", std::nullopt, "restart of an unknown provider");

  check_charges_match_usage(*sql, ada.id);
  check_ledger_invariants(*sql, ada.id);
  BOOST_TEST(me_of(gw, ada.key)["held"] == 0);
}

/// A client that leaves a stream whose provider actor was restarted meanwhile: the upstream
/// request must still be cancelled, not left to run (and bill) to its end.
void check_leaving_after_provider_restart(store kind) {
  mock_upstream mock;
  BOOST_TEST_REQUIRE(mock.settings({{"chunks", 20}, {"interval_ms", 300}}).status == 200);
  test_gateway gw(kind, options_with_config(mock_gateway_config(mock.base_url())));
  auto admin = gw.admin();
  auto ada = make_metered_user(admin, "ada@example.com", opening);
  auto sql = gw.open_db();

  abandoned_stream left;
  std::thread reader([&] {
    // Leaves after 4 events (about 1 s), long after the restart below.
    left = read_stream_then_leave(gw.base_url(), "/v1/chat/completions", ada.key,
                                  dump(chat_body("gpt-mock", "hello", 16, true)), 4,
                                  milliseconds{20'000});
  });
  bool started = wait_until(std::chrono::seconds{5}, [&] { return requests_of(mock) == 1; });
  auto restarted = admin.post("/admin/providers/mock/restart", "");
  reader.join();
  BOOST_TEST_REQUIRE(started);
  BOOST_TEST_REQUIRE(restarted.status == 202, restarted.body);
  BOOST_TEST_REQUIRE(left.status == 200);
  BOOST_TEST(left.events >= 4u);
  // The stream would run 6 s; a cancelled one ends at once.
  bool cancelled = wait_until(std::chrono::seconds{3}, [&] {
    auto stats = mock.stats();
    return stats["cancelled"] == 1 && stats["in_flight"] == 0;
  });
  BOOST_TEST(cancelled, "the upstream stream kept running after the client left: " << mock.stats());
  BOOST_TEST(wait_until(std::chrono::seconds{10},
                        [&] { return usage_row_of(*sql, left.request_id).has_value(); }));
  if (auto usage = usage_row_of(*sql, left.request_id)) {
    BOOST_TEST(usage->status == "client_gone");
    BOOST_TEST(usage->completion_tokens < 16,
               "charged " << usage->cost << " for " << usage->completion_tokens
                          << " completion tokens, the whole answer, though the client left after "
                          << left.events << " events");
  }
  check_charges_match_usage(*sql, ada.id);
  check_ledger_invariants(*sql, ada.id);
  BOOST_TEST(me_of(gw, ada.key)["held"] == 0);
}

/// A stream that stalls mid-way while its provider actor is restarted: the idle timeout ends
/// the call with an error event, and the stalled upstream request must be cancelled, not left
/// open until the total timeout.
void check_stall_after_provider_restart(store kind) {
  mock_upstream mock;
  BOOST_TEST_REQUIRE(mock.settings({{"fault", "stall-after:2"}}).status == 200);
  test_gateway gw(kind, options_with_config(mock_gateway_config(mock.base_url())));
  auto admin = gw.admin();
  auto ada = make_metered_user(admin, "ada@example.com", opening);
  auto sql = gw.open_db();

  call_result streamed;
  std::thread streamer([&] {
    streamed = post_chat(gw.base_url(), ada.key, chat_body("gpt-mock", "hello", 16, true, true),
                         milliseconds{20'000}, {{"x-tollgate-timeout-idle-ms", "1000"}});
  });
  bool started = wait_until(std::chrono::seconds{5}, [&] { return requests_of(mock) == 1; });
  auto restarted = admin.post("/admin/providers/mock/restart", "");
  streamer.join();
  BOOST_TEST_REQUIRE(started);
  BOOST_TEST_REQUIRE(restarted.status == 202, restarted.body);
  BOOST_TEST_CONTEXT("stalled stream -> " << streamed.status << " " << streamed.transport_error
                                          << " " << streamed.body) {
    BOOST_TEST_REQUIRE(streamed.transport_error.empty());
    BOOST_TEST(streamed.elapsed_ms < 5'000);
    auto s = summarize_stream(streamed.body);
    BOOST_TEST_REQUIRE(s.error.has_value());
    BOOST_TEST((*s.error)["code"] == "upstream_stream_error");
  }
  bool cancelled = wait_until(std::chrono::seconds{3}, [&] {
    auto stats = mock.stats();
    return stats["cancelled"] == 1 && stats["in_flight"] == 0;
  });
  BOOST_TEST(cancelled, "the stalled upstream request was left open: " << mock.stats());
  check_charges_match_usage(*sql, ada.id);
  check_ledger_invariants(*sql, ada.id);
  BOOST_TEST(me_of(gw, ada.key)["held"] == 0);
}

/// Runs `calls` chat completions at once; returns what each got.
std::vector<call_result> burst(const test_gateway& gw, const std::string& key, int calls,
                               bool stream) {
  std::vector<call_result> results(static_cast<std::size_t>(calls));
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < results.size(); ++i)
    threads.emplace_back([&, i] {
      results[i] = post_chat(gw.base_url(), key, chat_body("gpt-mock", "hello", 8, stream),
                             milliseconds{20'000});
    });
  for (auto& t : threads)
    t.join();
  return results;
}

double retries_metric(const test_gateway& gw) {
  return scrape_metrics(gw).sum("tollgate_upstream_retries_total");
}

/// Retries under upstreams that always fail: at most max_attempts requests per call, fewer
/// once the retry budget binds, every call an OpenAI-shaped 5xx, nothing charged, and
/// tollgate_upstream_retries_total counting exactly the requests beyond the first of each call.
void check_retry_budget(store kind) {
  constexpr int max_attempts = 3;
  constexpr int calls = 10;
  mock_upstream a;
  mock_upstream b;
  json never_trips{{"breaker", {{"failures", 1000}, {"min_calls", 1000}}}};
  auto config = failover_config(a.base_url(), b.base_url(), never_trips, never_trips);
  // Four deployments, so that max_attempts, not the deployment count, ends each call.
  auto& deployments = config["models"][0]["deployments"];
  for (auto [provider, priority] : {std::pair{"mock-a", 3}, std::pair{"mock-b", 4}}) {
    json d{{"provider", provider}, {"model", "mock-2"}, {"priority", priority}};
    d.update(never_trips);
    d["timeouts"] = {{"first_token_ms", 300}};
    deployments.push_back(d);
  }
  for (std::size_t i = 0; i < 2; ++i)
    deployments[i]["timeouts"] = {{"first_token_ms", 300}};
  config["routing"] = {{"max_attempts", max_attempts},
                       {"retry_budget_percent", 20},
                       {"backoff_ms", 10},
                       {"max_backoff_ms", 50}};
  test_gateway gw(kind, options_with_config(config));
  auto admin = gw.admin();
  auto ada = make_metered_user(admin, "ada@example.com", opening);
  auto sql = gw.open_db();
  auto upstream_requests = [&] { return requests_of(a) + requests_of(b); };
  int made = 0;

  auto check_results = [&](const std::vector<call_result>& results, const std::string& what) {
    int64_t attempts = 0;
    for (const auto& r : results) {
      BOOST_TEST_CONTEXT(what << ": " << r.status << " " << r.transport_error << " " << r.body) {
        BOOST_TEST(r.transport_error.empty());
        BOOST_TEST(r.status >= 500);
        BOOST_TEST(r.status < 600);
        BOOST_TEST(openai_error_shaped(r.body));
        auto doc = json::parse(r.body, nullptr, false);
        if (openai_error_shaped(r.body))
          BOOST_TEST(doc["error"]["type"] == "server_error");
        auto record = attempts_of(*sql, r.request_id);
        BOOST_TEST_REQUIRE(record.has_value(), "no usage row");
        BOOST_TEST(record->attempts >= 1);
        BOOST_TEST(record->attempts <= max_attempts);
        attempts += record->attempts;
        auto usage = usage_row_of(*sql, r.request_id);
        BOOST_TEST(usage->cost == 0);
        BOOST_TEST(usage->status == "upstream_error");
      }
    }
    return attempts;
  };

  // Alone, a failing call makes exactly max_attempts attempts, all logged.
  BOOST_TEST_REQUIRE(a.settings({{"fault", "status:500"}}).status == 200);
  BOOST_TEST_REQUIRE(b.settings({{"fault", "status:500"}}).status == 200);
  auto single =
      post_chat(gw.base_url(), ada.key, chat_body("gpt-mock", "hello", 8), milliseconds{20'000});
  ++made;
  BOOST_TEST(single.status == 502, single.body);
  BOOST_TEST_REQUIRE(openai_error_shaped(single.body), single.body);
  BOOST_TEST(json::parse(single.body)["error"]["code"] == "upstream_error");
  BOOST_TEST(upstream_requests() == max_attempts);
  BOOST_TEST(attempts_of(*sql, single.request_id)->log ==
             "mock-a/mock-1:500,mock-b/mock-1:500,mock-a/mock-2:500");
  BOOST_TEST(retries_metric(gw) == max_attempts - 1);

  // A burst of instantly failing calls: never more than max_attempts each.
  int before = upstream_requests();
  auto fast = burst(gw, ada.key, calls, false);
  made += calls;
  int fast_requests = upstream_requests() - before;
  BOOST_TEST_MESSAGE(calls << " calls failing at once (HTTP 500): " << fast_requests
                           << " upstream requests");
  BOOST_TEST(fast_requests >= calls);
  BOOST_TEST(fast_requests <= calls * max_attempts);
  BOOST_TEST(check_results(fast, "burst of HTTP 500s") == fast_requests);
  BOOST_TEST(retries_metric(gw) == upstream_requests() - made);

  // A burst of calls whose attempts all stall until first_token_ms (300 ms): the attempts
  // overlap, so the budget (20% of the calls in flight) must turn most retries away.
  BOOST_TEST_REQUIRE(a.settings({{"fault", "stall-after:0"}}).status == 200);
  BOOST_TEST_REQUIRE(b.settings({{"fault", "stall-after:0"}}).status == 200);
  before = upstream_requests();
  auto slow = burst(gw, ada.key, calls, true);
  made += calls;
  int slow_requests = upstream_requests() - before;
  BOOST_TEST_MESSAGE(calls << " calls stalling together: " << slow_requests
                           << " upstream requests");
  BOOST_TEST(slow_requests >= calls);
  BOOST_TEST(slow_requests < calls * max_attempts, "the retry budget never bound");
  BOOST_TEST(check_results(slow, "burst of stalls") == slow_requests);
  BOOST_TEST(retries_metric(gw) == upstream_requests() - made);

  // Nothing was charged, nothing is held.
  BOOST_TEST(check_ledger_invariants(*sql, ada.id) == opening);
  BOOST_TEST(ledger_of(*sql, ada.id).size() == 1u);
  BOOST_TEST(wait_until(std::chrono::seconds{5}, [&] { return me_of(gw, ada.key)["held"] == 0; }));
  BOOST_TEST(wait_until(std::chrono::seconds{5}, [&] {
    return a.stats()["in_flight"] == 0 && b.stats()["in_flight"] == 0;
  }));
}

/// Every fault at once, over two users and concurrent calls: afterwards the invariants hold
/// for each user, every charge matches its usage row, and nothing stays held.
void check_invariants_after_fault_mix(store kind) {
  mock_upstream a;
  mock_upstream b;
  json a_extra{{"breaker", {{"failures", 3}, {"cooldown_ms", 300}}},
               {"timeouts", {{"first_token_ms", 400}, {"idle_ms", 300}}}};
  json b_extra{{"timeouts", {{"first_token_ms", 400}, {"idle_ms", 300}}}};
  test_gateway gw(
      kind, options_with_config(failover_config(a.base_url(), b.base_url(), a_extra, b_extra)));
  auto admin = gw.admin();
  auto ada = make_metered_user(admin, "ada@example.com", opening);
  auto bob = make_metered_user(admin, "bob@example.com", opening);
  auto sql = gw.open_db();

  struct phase {
    std::string a_fault;
    std::string b_fault;
  };
  // clang-format off
  const std::vector<phase> phases{
    {"status:500", "none"},
    {"reset-after:2", "none"},
    {"stall-after:2", "status:503"},
    {"stall-after:0", "none"},
    {"malformed-after:2", "reset-after:0"},
    {"status:429", "stall-after:1"},
    {"none", "none"},
  };
  // clang-format on
  int answered = 0;
  for (const auto& p : phases) {
    BOOST_TEST_REQUIRE(a.settings({{"fault", p.a_fault}, {"chunks", 6}}).status == 200);
    BOOST_TEST_REQUIRE(b.settings({{"fault", p.b_fault}, {"chunks", 6}}).status == 200);
    std::vector<call_result> results(8);
    std::vector<std::thread> threads;
    for (std::size_t i = 0; i < results.size(); ++i)
      threads.emplace_back([&, i] {
        const auto& key = i % 2 == 0 ? ada.key : bob.key;
        results[i] =
            post_chat(gw.base_url(), key, chat_body("gpt-mock", "hello there", 12, i % 4 < 2, true),
                      milliseconds{20'000});
      });
    for (auto& t : threads)
      t.join();
    for (const auto& r : results) {
      BOOST_TEST_CONTEXT("A " << p.a_fault << ", B " << p.b_fault << " -> " << r.status << " "
                              << r.transport_error << " " << r.body) {
        BOOST_TEST(r.transport_error.empty());
        BOOST_TEST(r.elapsed_ms < 10'000);
        BOOST_TEST((r.status == 200 || openai_error_shaped(r.body)));
        answered += r.status == 200 ? 1 : 0;
      }
    }
  }
  BOOST_TEST_MESSAGE(answered << " of " << phases.size() * 8 << " calls answered 200");

  BOOST_TEST(wait_until(std::chrono::seconds{5}, [&] {
    return a.stats()["in_flight"] == 0 && b.stats()["in_flight"] == 0;
  }));
  int64_t charged = 0;
  for (const auto* u : {&ada, &bob}) {
    BOOST_TEST_CONTEXT("user " << u->id) {
      BOOST_TEST(
          wait_until(std::chrono::seconds{5}, [&] { return me_of(gw, u->key)["held"] == 0; }),
          me_of(gw, u->key));
      // Calls turned away before routing (every breaker open) leave no usage row.
      BOOST_TEST(usage_of(*sql, u->id).size() <= phases.size() * 4);
      auto spent = check_charges_match_usage(*sql, u->id);
      BOOST_TEST(check_ledger_invariants(*sql, u->id) == opening - spent);
      BOOST_TEST(me_of(gw, u->key)["balance"] == opening - spent);
      charged += spent;
    }
  }
  BOOST_TEST(charged > 0);
  auto snapshot = take_snapshot(*sql);
  BOOST_TEST(snapshot.balance_total == snapshot.ledger_total);
}

/// PostgreSQL ends every session of the gateway while they sit idle (an administrator's
/// pg_terminate_backend; a node taking over a shard does the same to a stalled node): the
/// next reads, credits and calls all succeed on new sessions, and each is in the ledger once.
void check_sessions_ended_by_the_server() {
  mock_upstream mock;
  test_gateway gw(store::postgresql, options_with_config(mock_gateway_config(mock.base_url())));
  auto admin = gw.admin();
  auto ada = make_metered_user(admin, "ada@example.com", opening);
  auto client = gw.consumer(ada.key);
  auto sql = gw.open_db();
  const int64_t top_up = 1'000;
  // More of each than the gateway has sessions: every one of them serves a job.
  const int rounds = 8;
  auto serve = [&](const std::string& phase) {
    for (int i = 0; i < rounds; ++i) {
      BOOST_TEST_CONTEXT(phase << " the sessions ended, round " << i) {
        auto ledger = admin.get("/admin/users/" + ada.id + "/ledger");
        BOOST_TEST(ledger.status == 200, ledger.body);
        auto credit = post_credits(admin, ada.id, top_up, "top-up", phase + std::to_string(i));
        BOOST_TEST(credit.status == 201, credit.body);
        auto call = client.post("/v1/chat/completions", dump(chat_body("gpt-mock", "hello", 8)));
        BOOST_TEST(call.status == 200, call.body);
      }
    }
    // A key made now is read from the store on its first call.
    auto fresh = create_key(admin, ada.id);
    auto call = gw.consumer(fresh["key"])
                    .post("/v1/chat/completions", dump(chat_body("gpt-mock", "hello", 8)));
    BOOST_TEST(call.status == 200, phase << " the sessions ended, a new key: " << call.body);
  };
  serve("before");

  const std::string others =
      " FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()";
  long long ended = 0;
  *sql << "SELECT coalesce(sum(CASE WHEN pg_terminate_backend(pid) THEN 1 ELSE 0 END), 0)" + others,
      soci::into(ended);
  BOOST_TEST_MESSAGE("ended " << ended << " sessions of the gateway");
  BOOST_TEST_REQUIRE(ended >= 2); // the ledger writer's and at least one reader's
  BOOST_TEST_REQUIRE(wait_until(std::chrono::seconds{10}, [&] {
    long long left = 0;
    *sql << "SELECT count(*)" + others, soci::into(left);
    return left == 0;
  }));
  serve("after");

  int credits = 0;
  int charges = 0;
  for (const auto& e : ledger_of(*sql, ada.id)) {
    credits += e.kind == "credit" ? 1 : 0;
    charges += e.kind == "charge" ? 1 : 0;
  }
  BOOST_TEST(credits == 1 + 2 * rounds); // the opening credit and each top-up, once
  BOOST_TEST(charges == 2 * (rounds + 1));
  auto spent = check_charges_match_usage(*sql, ada.id);
  BOOST_TEST(check_ledger_invariants(*sql, ada.id) == opening + 2 * rounds * top_up - spent);
  BOOST_TEST(me_of(gw, ada.key)["balance"] == opening + 2 * rounds * top_up - spent);
}

} // namespace

BOOST_AUTO_TEST_SUITE(resilience_faults_sqlite)

BOOST_AUTO_TEST_CASE(mid_stream_reset_charges_delivered) {
  check_mid_stream_reset(store::sqlite);
}

BOOST_AUTO_TEST_CASE(mid_stream_stall_charges_delivered) {
  check_mid_stream_stall(store::sqlite);
}

BOOST_AUTO_TEST_CASE(provider_restart_under_calls) {
  check_provider_restart(store::sqlite);
}

BOOST_AUTO_TEST_CASE(leaving_after_provider_restart_cancels_upstream) {
  check_leaving_after_provider_restart(store::sqlite);
}

BOOST_AUTO_TEST_CASE(stall_after_provider_restart_cancels_upstream) {
  check_stall_after_provider_restart(store::sqlite);
}

BOOST_AUTO_TEST_CASE(retries_stay_within_budget) {
  check_retry_budget(store::sqlite);
}

BOOST_AUTO_TEST_CASE(invariants_after_fault_mix) {
  check_invariants_after_fault_mix(store::sqlite);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(resilience_faults_live)

BOOST_AUTO_TEST_CASE(mid_stream_reset_charges_delivered) {
  check_mid_stream_reset(store::postgresql);
}

BOOST_AUTO_TEST_CASE(mid_stream_stall_charges_delivered) {
  check_mid_stream_stall(store::postgresql);
}

BOOST_AUTO_TEST_CASE(provider_restart_under_calls) {
  check_provider_restart(store::postgresql);
}

BOOST_AUTO_TEST_CASE(leaving_after_provider_restart_cancels_upstream) {
  check_leaving_after_provider_restart(store::postgresql);
}

BOOST_AUTO_TEST_CASE(stall_after_provider_restart_cancels_upstream) {
  check_stall_after_provider_restart(store::postgresql);
}

BOOST_AUTO_TEST_CASE(retries_stay_within_budget) {
  check_retry_budget(store::postgresql);
}

BOOST_AUTO_TEST_CASE(invariants_after_fault_mix) {
  check_invariants_after_fault_mix(store::postgresql);
}

BOOST_AUTO_TEST_CASE(sessions_ended_by_the_server_fail_no_call) {
  check_sessions_ended_by_the_server();
}

BOOST_AUTO_TEST_SUITE_END()
