#include <chrono>
#include <csignal>
#include <fstream>
#include <map>
#include <string>
#include <thread>

#include <boost/test/unit_test.hpp>

#include "schemas/pricing.hpp"
#include "tests/integration/harness.hpp"
#include "tests/support/mock_upstream_process.hpp"

// Operations that touch money, on SQLite and PostgreSQL: a reload (by request or SIGHUP)
// changes prices and models for later calls without dropping the calls in flight, and a bad
// file changes nothing; usage reports total exactly what the ledger charged.

using namespace tollgate::test;
using namespace tollgate::test::integration;
using nlohmann::json;
using std::chrono::milliseconds;

namespace {

constexpr int64_t opening = 10'000'000;

void write_config(test_gateway& gw, const std::string& text) {
  auto path = gw.process().work_dir() / "tollgate.json";
  std::ofstream out{path, std::ios::binary | std::ios::trunc};
  out << text;
  out.close();
  BOOST_TEST_REQUIRE(static_cast<bool>(out), "cannot write " << path);
}

/// mock_gateway_config with gpt-mock at these prices.
json priced_config(const std::string& mock_url, int64_t input, int64_t output) {
  auto config = mock_gateway_config(mock_url);
  config["models"][0]["input_price"] = input;
  config["models"][0]["output_price"] = output;
  return config;
}

/// gpt-mock's pricing as GET /v1/models shows it.
json listed_pricing(const test_gateway& gw, const std::string& key) {
  auto response = gw.consumer(key).get("/v1/models");
  BOOST_TEST_REQUIRE(response.status == 200, response.body);
  auto doc = response.json();
  for (const auto& m : doc["data"])
    if (m["id"] == "gpt-mock")
      return m["pricing"];
  return {};
}

/// Makes a call and checks that its charge is its tokens at `price`; returns the cost.
int64_t check_charged_at(const test_gateway& gw, soci::session& sql, const metered_user& u,
                         const tollgate::schemas::model_price& price, bool stream,
                         const std::string& what) {
  auto response = gw.consumer(u.key).post("/v1/chat/completions",
                                          dump(chat_body("gpt-mock", "hello", 8, stream, stream)));
  BOOST_TEST_REQUIRE(response.status == 200, what << ": " << response.body);
  auto usage = usage_row_of(sql, response.header("x-request-id"));
  BOOST_TEST_REQUIRE(usage.has_value(), what << ": no usage row");
  auto expected = tollgate::schemas::cost_of(price, usage->prompt_tokens, usage->completion_tokens);
  BOOST_TEST(usage->cost == expected, what << ": charged " << usage->cost << " for "
                                           << usage->prompt_tokens << " + "
                                           << usage->completion_tokens << " tokens");
  BOOST_TEST(ledger_of(sql, u.id).back().amount == -usage->cost, what);
  return usage->cost;
}

int audit_count(const test_gateway& gw, const std::string& action) {
  auto audit = gw.admin().get("/admin/audit?limit=1000").json();
  int n = 0;
  for (const auto& row : audit["data"])
    n += row.value("action", "") == action ? 1 : 0;
  return n;
}

/// A reload with new prices and a new model: later calls pay the new prices, a stream in
/// flight completes at the price it started with, a bad file is refused with 400
/// invalid_config and changes nothing.
void check_reload(store kind) {
  mock_upstream mock;
  const tollgate::schemas::model_price old_price{1'000'000, 2'000'000};
  const tollgate::schemas::model_price new_price{3'000'000, 7'000'000};
  test_gateway gw(
      kind, options_with_config(priced_config(mock.base_url(), old_price.input, old_price.output)));
  auto admin = gw.admin();
  auto ada = make_metered_user(admin, "ada@example.com", opening);
  auto sql = gw.open_db();

  check_charged_at(gw, *sql, ada, old_price, false, "before the reload");
  expect_error(
      gw.consumer(ada.key).post("/v1/chat/completions", dump(chat_body("gpt-new", "hello", 8))),
      404, "not_found_error", "model_not_found", std::nullopt, "gpt-new before the reload");

  // A slow stream is in flight while the prices change.
  BOOST_TEST_REQUIRE(mock.settings({{"chunks", 10}, {"interval_ms", 100}}).status == 200);
  http_response streamed;
  std::thread streamer([&] {
    streamed = gw.consumer(ada.key).post("/v1/chat/completions",
                                         dump(chat_body("gpt-mock", "hello", 16, true, true)));
  });
  bool in_flight =
      wait_until(std::chrono::seconds{5}, [&] { return mock.stats()["in_flight"] == 1; });

  auto config = priced_config(mock.base_url(), new_price.input, new_price.output);
  auto gpt_new = config["models"][0];
  gpt_new["name"] = "gpt-new";
  config["models"].push_back(gpt_new);
  write_config(gw, config.dump());
  auto reloaded = admin.post("/admin/control/reload", "");
  streamer.join();
  BOOST_TEST_REQUIRE(in_flight);
  BOOST_TEST_REQUIRE(reloaded.status == 200, reloaded.body);
  BOOST_TEST(reloaded.json()["reloaded"] == true);
  BOOST_TEST(reloaded.json()["models"] == 3);

  BOOST_TEST_CONTEXT("stream in flight during the reload: " << streamed.body) {
    BOOST_TEST_REQUIRE(streamed.status == 200);
    auto s = summarize_stream(streamed.body);
    BOOST_TEST(s.done);
    BOOST_TEST(!s.error.has_value());
    auto usage = usage_row_of(*sql, streamed.header("x-request-id"));
    BOOST_TEST_REQUIRE(usage.has_value());
    BOOST_TEST(usage->status == "ok");
    BOOST_TEST(usage->cost == tollgate::schemas::cost_of(old_price, usage->prompt_tokens,
                                                         usage->completion_tokens));
  }
  BOOST_TEST_REQUIRE(mock.settings({{"chunks", 4}, {"interval_ms", 0}}).status == 200);

  BOOST_TEST(listed_pricing(gw, ada.key)["output"] == new_price.output);
  check_charged_at(gw, *sql, ada, new_price, false, "after the reload");
  check_charged_at(gw, *sql, ada, new_price, true, "streamed after the reload");
  auto on_new =
      gw.consumer(ada.key).post("/v1/chat/completions", dump(chat_body("gpt-new", "hello", 8)));
  BOOST_TEST(on_new.status == 200, on_new.body);
  BOOST_TEST(audit_count(gw, "config.reload") == 1);

  // Bad files: refused, and the last good configuration stays.
  auto unknown_key = priced_config(mock.base_url(), 5, 5);
  unknown_key["bogus"] = 1;
  for (const auto& bad : {std::string("{not json"), unknown_key.dump(),
                          json{{"models", json::array({{{"name", "x"}}})}}.dump()}) {
    write_config(gw, bad);
    expect_error(admin.post("/admin/control/reload", ""), 400, "invalid_request_error",
                 "invalid_config", std::nullopt, "reload of " + bad.substr(0, 60));
  }
  BOOST_TEST(listed_pricing(gw, ada.key)["output"] == new_price.output);
  check_charged_at(gw, *sql, ada, new_price, false, "after the refused reloads");
  BOOST_TEST(gw.consumer(ada.key)
                 .post("/v1/chat/completions", dump(chat_body("gpt-new", "hello", 8)))
                 .status == 200);

  check_ledger_invariants(*sql, ada.id);
  BOOST_TEST(me_of(gw, ada.key)["held"] == 0);
}

/// SIGHUP re-reads the file as the reload request does.
void check_sighup_reload(store kind) {
  mock_upstream mock;
  const tollgate::schemas::model_price old_price{1'000'000, 2'000'000};
  const tollgate::schemas::model_price new_price{4'000'000, 9'000'000};
  test_gateway gw(
      kind, options_with_config(priced_config(mock.base_url(), old_price.input, old_price.output)));
  auto admin = gw.admin();
  auto ada = make_metered_user(admin, "ada@example.com", opening);
  auto sql = gw.open_db();

  check_charged_at(gw, *sql, ada, old_price, false, "before SIGHUP");
  write_config(gw, priced_config(mock.base_url(), new_price.input, new_price.output).dump());
  ::kill(gw.process().pid(), SIGHUP);
  bool reloaded = wait_until(std::chrono::seconds{5}, [&] {
    return listed_pricing(gw, ada.key)["output"] == new_price.output;
  });
  BOOST_TEST_REQUIRE(reloaded,
                     "prices unchanged 5 s after SIGHUP: " << listed_pricing(gw, ada.key));
  BOOST_TEST(gw.process().running(), "SIGHUP stopped the gateway");
  check_charged_at(gw, *sql, ada, new_price, false, "after SIGHUP");
  BOOST_TEST(
      wait_until(std::chrono::seconds{5}, [&] { return audit_count(gw, "config.reload") == 1; }));
  check_ledger_invariants(*sql, ada.id);
}

/// Sums of one user's usage rows, overall and per key.
struct usage_sums {
  int64_t calls = 0;
  int64_t prompt = 0;
  int64_t completion = 0;
  int64_t cost = 0;
};

std::map<std::string, usage_sums> sums_by_key(soci::session& sql, const std::string& user_id,
                                              usage_sums& total) {
  std::map<std::string, usage_sums> by_key;
  for (const auto& r : usage_of(sql, user_id)) {
    for (auto* s : {&by_key[r.key_id], &total}) {
      ++s->calls;
      s->prompt += r.prompt_tokens;
      s->completion += r.completion_tokens;
      s->cost += r.cost;
    }
  }
  return by_key;
}

void check_totals(const json& total, const usage_sums& s, const std::string& what) {
  BOOST_TEST_CONTEXT(what << ": " << total.dump()) {
    BOOST_TEST(total["calls"] == s.calls);
    BOOST_TEST(total["prompt_tokens"] == s.prompt);
    BOOST_TEST(total["completion_tokens"] == s.completion);
    BOOST_TEST(total["cost"] == s.cost);
  }
}

/// The rows of a report add up to its total.
void check_rows_add_up(const json& report, const std::string& what) {
  BOOST_TEST_CONTEXT(what << ": " << report.dump()) {
    BOOST_TEST(report["object"] == "usage_report");
    usage_sums sum;
    for (const auto& row : report["data"]) {
      sum.calls += row["calls"].get<int64_t>();
      sum.prompt += row["prompt_tokens"].get<int64_t>();
      sum.completion += row["completion_tokens"].get<int64_t>();
      sum.cost += row["cost"].get<int64_t>();
    }
    check_totals(report["total"], sum, what + " (rows)");
  }
}

/// Usage reports against the ledger: a user's total cost is exactly what the ledger charged
/// them, grouped by day, model or key; /v1/usage shows only the key's own user.
void check_usage_report(store kind) {
  mock_upstream mock;
  test_gateway gw(kind, options_with_config(mock_gateway_config(mock.base_url())));
  auto admin = gw.admin();
  auto ada = make_metered_user(admin, "ada@example.com", opening);
  auto ada_second = create_key(admin, ada.id)["key"].get<std::string>();
  auto bob = make_metered_user(admin, "bob@example.com", opening);
  auto sql = gw.open_db();

  auto call = [&](const std::string& key, const std::string& model, bool stream) {
    return gw.consumer(key).post("/v1/chat/completions",
                                 dump(chat_body(model, "hello there", 12, stream, stream)));
  };
  BOOST_TEST(call(ada.key, "gpt-mock", false).status == 200);
  BOOST_TEST(call(ada.key, "gpt-mock", true).status == 200);
  BOOST_TEST(call(ada_second, "gpt-mock", false).status == 200);
  BOOST_TEST(call(ada_second, "echo-1", false).status == 200);
  BOOST_TEST(call(bob.key, "gpt-mock", false).status == 200);
  BOOST_TEST(call(bob.key, "gpt-mock", true).status == 200);
  // A broken stream (charged for what it delivered) and a failure (free) count too.
  BOOST_TEST_REQUIRE(mock.settings({{"fault", "reset-after:2"}, {"chunks", 6}}).status == 200);
  BOOST_TEST(call(ada.key, "gpt-mock", true).status == 200);
  BOOST_TEST_REQUIRE(mock.settings({{"fault", "status:500"}}).status == 200);
  BOOST_TEST(call(ada.key, "gpt-mock", false).status == 502);
  BOOST_TEST_REQUIRE(mock.settings({{"fault", "none"}}).status == 200);

  usage_sums ada_total;
  auto ada_keys = sums_by_key(*sql, ada.id, ada_total);
  usage_sums bob_total;
  sums_by_key(*sql, bob.id, bob_total);
  BOOST_TEST(ada_total.calls == 6);
  BOOST_TEST(ada_keys.size() == 2u);
  int64_t ada_charged = 0;
  for (const auto& e : ledger_of(*sql, ada.id))
    if (e.kind == "charge")
      ada_charged -= e.amount;
  BOOST_TEST(ada_charged > 0);
  BOOST_TEST(ada_total.cost == ada_charged);

  for (const char* group : {"day", "model", "key"}) {
    auto response = admin.get("/admin/usage?group_by=" + std::string(group) + "&user=" + ada.id);
    BOOST_TEST_REQUIRE(response.status == 200, response.body);
    auto report = response.json();
    auto what = std::string("GET /admin/usage?group_by=") + group + "&user=ada";
    check_rows_add_up(report, what);
    check_totals(report["total"], ada_total, what);
    BOOST_TEST(report["total"]["cost"] == ada_charged, what << ": not what the ledger charged");
    if (std::string(group) == "model") {
      std::map<std::string, int64_t> calls;
      for (const auto& row : report["data"])
        calls[row["model"].get<std::string>()] = row["calls"].get<int64_t>();
      BOOST_TEST(calls["gpt-mock"] == 5);
      BOOST_TEST(calls["echo-1"] == 1);
    }
    if (std::string(group) == "key") {
      BOOST_TEST(report["data"].size() == ada_keys.size());
      for (const auto& row : report["data"]) {
        auto id = row["key_id"].get<std::string>();
        BOOST_TEST_REQUIRE(ada_keys.count(id) == 1u, "unknown key " << id);
        check_totals(row, ada_keys[id], what + " key " + id);
      }
    }
    if (std::string(group) == "day") {
      BOOST_TEST(report["data"].size() == 1u);
      BOOST_TEST(report["data"][0]["day"].get<int64_t>() % 86'400 == 0);
    }
  }

  // Everyone's usage is the sum of both users'.
  auto all = admin.get("/admin/usage?group_by=model").json();
  check_rows_add_up(all, "GET /admin/usage");
  usage_sums both{ada_total.calls + bob_total.calls, ada_total.prompt + bob_total.prompt,
                  ada_total.completion + bob_total.completion, ada_total.cost + bob_total.cost};
  check_totals(all["total"], both, "GET /admin/usage");
  // A window in the future is empty.
  auto later =
      admin.get("/admin/usage?user=" + ada.id + "&from=" + std::to_string(unix_now() + 86'400))
          .json();
  check_totals(later["total"], {}, "a window in the future");

  // /v1/usage: the key's own user, whatever the query asks for.
  for (const auto& path : {std::string("/v1/usage"), std::string("/v1/usage?group_by=key"),
                           "/v1/usage?user=" + bob.id}) {
    auto response = gw.consumer(ada.key).get(path);
    BOOST_TEST_REQUIRE(response.status == 200, path << ": " << response.body);
    auto report = response.json();
    check_rows_add_up(report, path);
    check_totals(report["total"], ada_total, path + " with ada's key");
  }
  auto keyed = gw.consumer(ada_second).get("/v1/usage?group_by=key").json();
  for (const auto& row : keyed["data"])
    BOOST_TEST(ada_keys.count(row["key_id"].get<std::string>()) == 1u, row.dump());
  auto bobs = gw.consumer(bob.key).get("/v1/usage").json();
  check_totals(bobs["total"], bob_total, "/v1/usage with bob's key");
  expect_error(gw.consumer(ada.key).get("/v1/usage?group_by=week"), 400, "invalid_request_error",
               "invalid_value", std::string("group_by"), "group_by=week");

  check_ledger_invariants(*sql, ada.id);
  check_ledger_invariants(*sql, bob.id);
}

} // namespace

BOOST_AUTO_TEST_SUITE(resilience_accounting_sqlite)

BOOST_AUTO_TEST_CASE(reload_changes_prices_for_later_calls) {
  check_reload(store::sqlite);
}

BOOST_AUTO_TEST_CASE(sighup_reloads) {
  check_sighup_reload(store::sqlite);
}

BOOST_AUTO_TEST_CASE(usage_report_equals_ledger) {
  check_usage_report(store::sqlite);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(resilience_accounting_live)

BOOST_AUTO_TEST_CASE(reload_changes_prices_for_later_calls) {
  check_reload(store::postgresql);
}

BOOST_AUTO_TEST_CASE(sighup_reloads) {
  check_sighup_reload(store::postgresql);
}

BOOST_AUTO_TEST_CASE(usage_report_equals_ledger) {
  check_usage_report(store::postgresql);
}

BOOST_AUTO_TEST_SUITE_END()
