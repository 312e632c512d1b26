#include <chrono>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <boost/test/unit_test.hpp>

#include "tests/integration/harness.hpp"
#include "tests/support/mock_upstream_process.hpp"

using namespace tollgate::test;
using namespace tollgate::test::integration;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

constexpr int64_t opening = 1'000'000;

/// A gateway in front of `mock` whose idle key and user actors hibernate after
/// `hibernate_seconds` and are passivated after `idle_seconds`.
gateway_options hibernating(const mock_upstream& mock, int idle_seconds, int hibernate_seconds) {
  auto config = mock_gateway_config(mock.base_url());
  config["actors"] = {{"idle_seconds", idle_seconds}, {"hibernate_seconds", hibernate_seconds}};
  return options_with_config(config);
}

double gauge(const prometheus_text& m, const char* family, const char* kind) {
  return m.sum(family, {{"kind", kind}});
}

double activations(const test_gateway& gw, const char* kind, const char* from) {
  return scrape_metrics(gw).sum("tollgate_activations_total", {{"kind", kind}, {"from", from}});
}

/// Waits until no key or user actor is live and `keys` keys and `users` users are kept as
/// records.
bool wait_hibernated(const test_gateway& gw, double keys, double users) {
  return wait_until(20s, [&] {
    auto m = scrape_metrics(gw);
    return gauge(m, "tollgate_actors", "key") == 0 && gauge(m, "tollgate_actors", "user") == 0 &&
           gauge(m, "tollgate_hibernated", "key") == keys &&
           gauge(m, "tollgate_hibernated", "user") == users;
  });
}

long chat(const test_gateway& gw, const std::string& key) {
  return gw.consumer(key)
      .post("/v1/chat/completions", dump(chat_body("gpt-mock", "hello", 5)))
      .status;
}

/// Bea, with credits and a key, made one call through a `hibernating` gateway; her key and
/// user have hibernated since.
struct bea_asleep {
  explicit bea_asleep(int idle_seconds)
      : gw(store::sqlite, hibernating(mock, idle_seconds, 1))
      , admin(gw.admin())
      , bea(make_metered_user(admin, "bea@example.com", opening)) {
    BOOST_TEST(chat(gw, bea.key) == 200);
    BOOST_TEST_REQUIRE(wait_hibernated(gw, 1, 1));
  }

  mock_upstream mock;
  test_gateway gw;
  http_client admin;
  metered_user bea;
};

} // namespace

BOOST_AUTO_TEST_SUITE(hibernation)

/// Idle key and user actors end and leave records; the next call starts them again from the
/// records, not from storage, and they go on where they stopped: the balance, and the rate
/// windows (3 calls a minute: 2 before, 1 after, the fourth refused). `user_limits` (PATCHed
/// onto the user) and `key_limits` say whose window it is.
void check_wakes_where_it_stopped(const json& user_limits, const json& key_limits) {
  mock_upstream mock;
  test_gateway gw(store::sqlite, hibernating(mock, 300, 1));
  auto admin = gw.admin();
  auto bea = make_metered_user(admin, "bea@example.com", opening, key_limits);
  if (!user_limits.empty()) {
    auto patched = admin.patch("/admin/users/" + bea.id, dump(user_limits));
    BOOST_TEST_REQUIRE(patched.status == 200, patched.body);
  }
  BOOST_TEST(chat(gw, bea.key) == 200);
  BOOST_TEST(chat(gw, bea.key) == 200);
  auto before = me_of(gw, bea.key);
  BOOST_TEST(activations(gw, "key", "storage") == 1);
  BOOST_TEST(activations(gw, "user", "storage") == 1);

  BOOST_TEST_REQUIRE(wait_hibernated(gw, 1, 1));
  auto me = me_of(gw, bea.key); // wakes both
  BOOST_TEST(me["balance"] == before["balance"]);
  BOOST_TEST(me["balance"].get<int64_t>() < opening);
  BOOST_TEST(activations(gw, "key", "hibernation") == 1);
  BOOST_TEST(activations(gw, "user", "hibernation") == 1);
  BOOST_TEST(activations(gw, "key", "storage") == 1); // no storage read
  BOOST_TEST(activations(gw, "user", "storage") == 1);
  auto m = scrape_metrics(gw);
  BOOST_TEST(gauge(m, "tollgate_hibernated", "key") == 0);
  BOOST_TEST(gauge(m, "tollgate_actors", "key") == 1);

  BOOST_TEST(chat(gw, bea.key) == 200); // the third of the minute
  BOOST_TEST(chat(gw, bea.key) == 429);

  auto sql = gw.open_db();
  auto balance = check_ledger_invariants(*sql, bea.id);
  BOOST_TEST(ledger_of(*sql, bea.id).size() == 4u); // the opening credit and 3 charges
  BOOST_TEST(me_of(gw, bea.key)["balance"] == balance);
}

BOOST_AUTO_TEST_CASE(a_hibernated_key_wakes_where_it_stopped) {
  check_wakes_where_it_stopped(json::object(), {{"rpm", 3}});
}

BOOST_AUTO_TEST_CASE(a_hibernated_user_wakes_where_it_stopped) {
  check_wakes_where_it_stopped({{"rpm", 3}}, json::object());
}

// What admins change while a key or user sleeps applies on the very next call: a top-up
// (which wakes the user), a suspension and its end, a revocation.
BOOST_AUTO_TEST_CASE(admin_changes_reach_hibernated_keys_and_users) {
  bea_asleep asleep(300);
  auto& [mock, gw, admin, bea] = asleep;
  add_credits(admin, bea.id, 5'000, "top-up while asleep");
  BOOST_TEST(activations(gw, "user", "hibernation") == 1);

  BOOST_TEST_REQUIRE(wait_hibernated(gw, 1, 1));
  auto suspended = admin.patch("/admin/users/" + bea.id, dump({{"suspended", true}}));
  BOOST_TEST_REQUIRE(suspended.status == 200, suspended.body);
  expect_error(
      gw.consumer(bea.key).post("/v1/chat/completions", dump(chat_body("gpt-mock", "hello", 5))),
      403, "permission_error", "user_suspended", std::nullopt, "suspended while asleep");

  BOOST_TEST_REQUIRE(wait_hibernated(gw, 1, 1));
  auto resumed = admin.patch("/admin/users/" + bea.id, dump({{"suspended", false}}));
  BOOST_TEST_REQUIRE(resumed.status == 200, resumed.body);
  BOOST_TEST(chat(gw, bea.key) == 200);

  BOOST_TEST_REQUIRE(wait_hibernated(gw, 1, 1));
  auto revoked = admin.del("/admin/keys/" + bea.key_id);
  BOOST_TEST_REQUIRE(revoked.status == 200, revoked.body);
  expect_error(gw.consumer(bea.key).get("/v1/me"), 401, "authentication_error", "key_revoked",
               std::nullopt, "revoked while asleep");

  // Nothing was read from storage again: every change reached the records.
  BOOST_TEST(activations(gw, "key", "storage") == 1);
  BOOST_TEST(activations(gw, "user", "storage") == 1);
  auto sql = gw.open_db();
  auto balance = check_ledger_invariants(*sql, bea.id);
  BOOST_TEST(ledger_of(*sql, bea.id).size() == 4u); // opening, top-up, 2 charges
  BOOST_TEST(balance > opening);
  BOOST_TEST(balance < opening + 5'000);
}

// Records are kept until the idle time is up; then the key and user are passivated, and the
// next call loads them from storage.
BOOST_AUTO_TEST_CASE(hibernated_keys_and_users_are_passivated_when_idle_is_up) {
  bea_asleep asleep(3);
  auto& [mock, gw, admin, bea] = asleep;
  BOOST_TEST_REQUIRE(wait_hibernated(gw, 0, 0));
  BOOST_TEST(chat(gw, bea.key) == 200);
  BOOST_TEST(activations(gw, "key", "storage") == 2);
  BOOST_TEST(activations(gw, "user", "storage") == 2);
  BOOST_TEST(activations(gw, "key", "hibernation") == 0);
  auto sql = gw.open_db();
  check_ledger_invariants(*sql, bea.id);
}

// Calls and top-ups while keys and users keep hibernating and waking (pauses around the
// hibernation time): every call is answered, every credit lands once, and no credit is lost
// or made: per user, the stored balance is the sum of its ledger, the ledger holds the
// opening credit, each top-up and each call once, and the user's actor agrees with storage.
BOOST_AUTO_TEST_CASE(credits_hold_across_hibernation_under_traffic) {
  mock_upstream mock;
  test_gateway gw(store::sqlite, hibernating(mock, 300, 1));
  auto admin = gw.admin();
  constexpr int users = 3; // ann, ben, cat
  constexpr int bursts = 4;
  constexpr int calls_per_burst = 4;
  constexpr int top_ups = 12;
  struct account {
    metered_user user;
    std::string second_key;
    std::vector<long> statuses;
    std::vector<std::string> failures;
  };
  std::vector<account> accounts;
  for (int u = 0; u < users; ++u) {
    account a;
    const char* emails[] = {"ann@example.com", "ben@example.com", "cat@example.com"};
    a.user = make_metered_user(admin, emails[u], opening);
    a.second_key = create_key(admin, a.user.id)["key"].get<std::string>();
    accounts.push_back(std::move(a));
  }
  std::vector<std::thread> threads;
  for (int u = 0; u < users; ++u)
    threads.emplace_back([&, u] {
      auto& a = accounts[static_cast<std::size_t>(u)];
      std::mt19937 rng(static_cast<unsigned>(u) + 1);
      std::uniform_int_distribution<int> pause_ms(300, 1'800);
      for (int b = 0; b < bursts; ++b) {
        for (int i = 0; i < calls_per_burst; ++i) {
          const auto& key = i % 2 == 0 ? a.user.key : a.second_key;
          try {
            auto body = chat_body("gpt-mock", "hello", 5, i == 3);
            a.statuses.push_back(gw.consumer(key).post("/v1/chat/completions", dump(body)).status);
          } catch (const std::exception& e) {
            a.failures.push_back(e.what());
          }
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms(rng)));
      }
    });
  std::map<std::string, int> credited; // user id -> top-ups answered 201
  std::vector<std::string> top_up_failures;
  threads.emplace_back([&] {
    auto admin_client = gw.admin();
    std::mt19937 rng(99);
    std::uniform_int_distribution<int> pause_ms(100, 900);
    for (int t = 0; t < top_ups; ++t) {
      const auto& id = accounts[static_cast<std::size_t>(t % users)].user.id;
      auto response = post_credits(admin_client, id, 1'000, "top-up " + std::to_string(t),
                                   "top-up-" + std::to_string(t));
      if (response.status == 201)
        ++credited[id];
      else
        top_up_failures.push_back(std::to_string(response.status) + " " + response.body);
      std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms(rng)));
    }
  });
  for (auto& t : threads)
    t.join();

  BOOST_TEST(top_up_failures.empty(), top_up_failures.front());
  BOOST_TEST(activations(gw, "user", "hibernation") > 0); // they did sleep and wake
  auto sql = gw.open_db();
  for (const auto& a : accounts) {
    BOOST_TEST_CONTEXT("user " << a.user.id) {
      BOOST_TEST(a.failures.empty());
      BOOST_TEST(a.statuses.size() == static_cast<std::size_t>(bursts * calls_per_burst));
      for (auto status : a.statuses)
        BOOST_TEST(status == 200);
      auto balance = check_ledger_invariants(*sql, a.user.id);
      auto entries = ledger_of(*sql, a.user.id);
      BOOST_TEST(entries.size() ==
                 1u + static_cast<std::size_t>(credited[a.user.id]) + a.statuses.size());
      int64_t charged = 0;
      for (const auto& e : entries)
        if (e.kind == "charge")
          charged -= e.amount;
      BOOST_TEST(balance == opening + 1'000 * credited[a.user.id] - charged);
      BOOST_TEST(me_of(gw, a.user.key)["balance"] == balance);
    }
  }
}

BOOST_AUTO_TEST_SUITE_END()
