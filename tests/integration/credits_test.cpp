#include <latch>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <boost/test/unit_test.hpp>

#include "tests/integration/harness.hpp"

using namespace tollgate::test;
using namespace tollgate::test::integration;
using nlohmann::json;

namespace {

/// What one concurrent call got back.
struct answer {
  http_response response;
  std::string failure; ///< Transport error, if the call got no response.
};

/// Runs `calls` on `threads` threads at once (released together), each with its own admin
/// client; `call(client, index)` runs for index in [0, calls), split evenly over the threads.
template <class Call>
std::vector<answer> run_concurrently(const test_gateway& gw, int threads, int calls, Call call) {
  std::vector<answer> answers(static_cast<std::size_t>(calls));
  std::vector<http_client> clients;
  for (int t = 0; t < threads; ++t)
    clients.push_back(gw.admin());
  std::latch start(threads);
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      start.arrive_and_wait();
      for (int i = t; i < calls; i += threads) {
        auto& slot = answers[static_cast<std::size_t>(i)];
        try {
          slot.response = call(clients[static_cast<std::size_t>(t)], i);
        } catch (const std::exception& e) {
          slot.failure = e.what();
        }
      }
    });
  }
  for (auto& w : workers)
    w.join();
  return answers;
}

/// 20 callers send the same top-up with the same Idempotency-Key at the same moment: one
/// ledger entry, one balance change, one answer for all.
void check_concurrent_idempotent_topup(store kind) {
  test_gateway gw(kind);
  auto admin = gw.admin();
  const std::string user_id = create_user(admin, "Grace", "grace@example.com")["id"];
  constexpr int callers = 20;
  constexpr int64_t amount = 750'000;
  const std::string idempotency_key = "topup-grace-invoice-42";

  auto answers = run_concurrently(gw, callers, callers, [&](http_client& client, int) {
    return post_credits(client, user_id, amount, "invoice 42", idempotency_key);
  });

  std::set<int64_t> entry_ids;
  std::set<std::string> bodies;
  int replayed = 0;
  for (std::size_t i = 0; i < answers.size(); ++i) {
    const auto& a = answers[i];
    BOOST_TEST_CONTEXT("caller " << i << ": " << a.failure << a.response.body) {
      BOOST_TEST_REQUIRE(a.failure.empty());
      BOOST_TEST_REQUIRE(a.response.status == 201);
      auto body = a.response.json();
      entry_ids.insert(body["entry"]["id"].get<int64_t>());
      bodies.insert(body.dump());
      BOOST_TEST(body["balance"] == amount);
      BOOST_TEST(body["entry"]["amount"] == amount);
      BOOST_TEST(body["entry"]["balance_after"] == amount);
      BOOST_TEST(body["entry"]["reason"] == "invoice 42");
      if (a.response.header("idempotent-replayed") == "true")
        ++replayed;
      else
        BOOST_TEST(a.response.header("idempotent-replayed").empty());
    }
  }
  BOOST_TEST(entry_ids.size() == 1u);
  BOOST_TEST(bodies.size() == 1u);
  // One call made the change; the other 19 are replays and must say so.
  BOOST_TEST(replayed == callers - 1);

  auto sql = gw.open_db();
  auto entries = ledger_of(*sql, user_id);
  BOOST_TEST_REQUIRE(entries.size() == 1u);
  BOOST_TEST(entries[0].id == *entry_ids.begin());
  BOOST_TEST(entries[0].amount == amount);
  BOOST_TEST(check_ledger_invariants(*sql, user_id) == amount);
  long long audits = 0;
  *sql << "SELECT COUNT(*) FROM audit_log WHERE action = 'credits.add' AND target = :u",
      soci::use(user_id), soci::into(audits);
  BOOST_TEST(audits == 1);
  auto settled = take_snapshot(*sql);

  // A later replay answers the same, says it is a replay, and changes nothing.
  auto again = post_credits(admin, user_id, amount, "invoice 42", idempotency_key);
  BOOST_TEST_REQUIRE(again.status == 201, again.body);
  BOOST_TEST(again.header("idempotent-replayed") == "true");
  BOOST_TEST(again.json().dump() == *bodies.begin());
  // The same key for another amount is refused, and changes nothing either.
  expect_error(post_credits(admin, user_id, amount + 1, "invoice 42", idempotency_key), 409,
               "conflict_error", "idempotency_key_reused", std::nullopt,
               "same Idempotency-Key, other amount");
  BOOST_TEST(take_snapshot(*gw.open_db()) == settled);
  auto user = admin.get("/admin/users/" + user_id);
  BOOST_TEST_REQUIRE(user.status == 200, user.body);
  BOOST_TEST(user.json()["balance"] == amount);
}

/// The signed amount of operation `i`: a third are top-ups, the rest debits big enough that
/// the balance runs dry and some debits must be refused.
int64_t amount_of(int i) {
  if (i % 3 == 0)
    return 50'000 + (i % 7) * 1'000;
  return -(60'000 + (i % 5) * 10'000);
}

/// 200 top-ups and debits from 8 threads on one user: the store stays conserved (I1), never
/// negative (I2), and each accepted call has its own ledger entry.
void check_concurrent_credits_and_debits(store kind) {
  test_gateway gw(kind);
  auto admin = gw.admin();
  const std::string user_id = create_user(admin, "Linus", "linus@example.com")["id"];
  constexpr int64_t start_balance = 1'000'000;
  auto opening = add_credits(admin, user_id, start_balance, "opening balance");
  const int64_t opening_id = opening["entry"]["id"];

  constexpr int threads = 8;
  constexpr int calls = 200;
  auto answers = run_concurrently(gw, threads, calls, [&](http_client& client, int i) {
    return post_credits(client, user_id, amount_of(i), "op " + std::to_string(i));
  });

  int64_t accepted_sum = 0;
  int accepted = 0;
  int refused_debits = 0;
  std::map<int64_t, int64_t> amount_by_entry;
  for (int i = 0; i < calls; ++i) {
    const auto& a = answers[static_cast<std::size_t>(i)];
    BOOST_TEST_CONTEXT("call " << i << " amount " << amount_of(i) << ": " << a.failure
                               << a.response.status << " " << a.response.body) {
      BOOST_TEST_REQUIRE(a.failure.empty());
      if (a.response.status == 201) {
        auto body = a.response.json();
        const auto& entry = body["entry"];
        BOOST_TEST(entry["amount"] == amount_of(i));
        BOOST_TEST(entry["user_id"] == user_id);
        BOOST_TEST(entry["kind"] == "credit");
        BOOST_TEST(entry["reason"] == "op " + std::to_string(i));
        BOOST_TEST(entry["balance_after"].get<int64_t>() >= 0);
        BOOST_TEST(body["balance"] == entry["balance_after"]);
        auto [_, fresh] = amount_by_entry.emplace(entry["id"].get<int64_t>(), amount_of(i));
        BOOST_TEST(fresh, "entry id " << entry["id"] << " answered twice");
        accepted_sum += amount_of(i);
        ++accepted;
      } else {
        // Only a debit may be refused, and only for want of balance.
        BOOST_TEST(amount_of(i) < 0);
        expect_error(a.response, 409, "conflict_error", "insufficient_balance", std::nullopt,
                     "refused debit " + std::to_string(i));
        ++refused_debits;
      }
    }
  }
  // The debits asked for far more than there ever was: some must have been refused.
  BOOST_TEST(refused_debits > 0);
  BOOST_TEST(accepted + refused_debits == calls);

  auto sql = gw.open_db();
  auto balance = check_ledger_invariants(*sql, user_id);
  BOOST_TEST(balance == start_balance + accepted_sum);
  BOOST_TEST(balance >= 0);
  auto entries = ledger_of(*sql, user_id);
  BOOST_TEST_REQUIRE(entries.size() == static_cast<std::size_t>(accepted) + 1);
  BOOST_TEST(entries.front().id == opening_id);
  std::map<int64_t, int64_t> stored;
  for (std::size_t i = 1; i < entries.size(); ++i)
    stored.emplace(entries[i].id, entries[i].amount);
  BOOST_TEST((stored == amount_by_entry));

  auto user = admin.get("/admin/users/" + user_id);
  BOOST_TEST_REQUIRE(user.status == 200, user.body);
  BOOST_TEST(user.json()["balance"] == balance);

  // The ledger endpoint pages through the same entries, newest first, each once.
  std::vector<int64_t> paged;
  std::string cursor;
  for (int page = 0; page < 100; ++page) {
    auto response = admin.get("/admin/users/" + user_id + "/ledger?limit=37" +
                              (cursor.empty() ? std::string() : "&after=" + cursor));
    BOOST_TEST_REQUIRE(response.status == 200, response.body);
    auto body = response.json();
    BOOST_TEST(body["object"] == "list");
    for (const auto& e : body["data"])
      paged.push_back(e["id"].get<int64_t>());
    if (!body["data"].empty()) {
      BOOST_TEST(body["first_id"] == body["data"].front()["id"]);
      BOOST_TEST(body["last_id"] == body["data"].back()["id"]);
    }
    if (!body["has_more"].get<bool>())
      break;
    cursor = std::to_string(body["last_id"].get<int64_t>());
  }
  std::vector<int64_t> expected;
  for (auto it = entries.rbegin(); it != entries.rend(); ++it)
    expected.push_back(it->id);
  BOOST_TEST(paged == expected, boost::test_tools::per_element());
}

} // namespace

BOOST_AUTO_TEST_SUITE(credits_sqlite)

BOOST_AUTO_TEST_CASE(concurrent_idempotent_topup) {
  check_concurrent_idempotent_topup(store::sqlite);
}

BOOST_AUTO_TEST_CASE(concurrent_credits_and_debits) {
  check_concurrent_credits_and_debits(store::sqlite);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(credits_live)

BOOST_AUTO_TEST_CASE(concurrent_idempotent_topup) {
  check_concurrent_idempotent_topup(store::postgresql);
}

BOOST_AUTO_TEST_CASE(concurrent_credits_and_debits) {
  check_concurrent_credits_and_debits(store::postgresql);
}

BOOST_AUTO_TEST_SUITE_END()
