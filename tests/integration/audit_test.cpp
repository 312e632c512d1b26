#include <latch>
#include <string>
#include <thread>
#include <vector>

#include <boost/test/unit_test.hpp>

#include "schemas/key_format.hpp"
#include "storage/audit_repository.hpp"
#include "tests/integration/harness.hpp"

using namespace tollgate::test;
using namespace tollgate::test::integration;
using nlohmann::json;

namespace {

/// One admin call that must leave exactly one audit row.
struct audited_call {
  std::string action;
  std::string target;
  std::string request_id; ///< x-request-id of the response.
};

std::string request_id_of(const http_response& response) {
  auto id = response.header("x-request-id");
  BOOST_TEST(!id.empty());
  return id;
}

/// Each admin action leaves one audit row, with who, what, which entity, the state before and
/// after, and the request id; refused calls, replays and reads leave none.
void check_every_admin_action_is_audited(store kind) {
  test_gateway gw(kind);
  auto admin = gw.admin();
  auto t0 = unix_now();
  std::vector<audited_call> expected;

  auto created = admin.post("/admin/users", dump({{"name", "Ada"}, {"email", "ada@example.com"}}));
  BOOST_TEST_REQUIRE(created.status == 201, created.body);
  const std::string user_id = created.json()["id"];
  expected.push_back({"user.create", user_id, request_id_of(created)});

  auto patched = admin.patch("/admin/users/" + user_id, dump({{"name", "Ada L."}, {"rpm", 30}}));
  BOOST_TEST_REQUIRE(patched.status == 200, patched.body);
  expected.push_back({"user.update", user_id, request_id_of(patched)});

  auto added = post_credits(admin, user_id, 5'000, "top up", "audit-topup");
  BOOST_TEST_REQUIRE(added.status == 201, added.body);
  const int64_t added_entry = added.json()["entry"]["id"];
  expected.push_back({"credits.add", user_id, request_id_of(added)});

  auto removed = post_credits(admin, user_id, -1'200, "refund");
  BOOST_TEST_REQUIRE(removed.status == 201, removed.body);
  const int64_t removed_entry = removed.json()["entry"]["id"];
  expected.push_back({"credits.remove", user_id, request_id_of(removed)});

  auto key = admin.post("/admin/users/" + user_id + "/keys", dump({{"name", "laptop"}}));
  BOOST_TEST_REQUIRE(key.status == 201, key.body);
  const std::string key_id = key.json()["id"];
  const std::string secret = key.json()["key"];
  expected.push_back({"key.create", key_id, request_id_of(key)});

  auto revoked = admin.del("/admin/keys/" + key_id);
  BOOST_TEST_REQUIRE(revoked.status == 200, revoked.body);
  expected.push_back({"key.revoke", key_id, request_id_of(revoked)});

  // None of these may leave a row: refusals, a replay, a repeated revoke, reads.
  BOOST_TEST(post_credits(admin, user_id, 5'000, "top up", "audit-topup").status == 201);
  BOOST_TEST(post_credits(admin, user_id, -1'000'000).status == 409);
  BOOST_TEST(post_credits(admin, user_id, 0).status == 400);
  BOOST_TEST(
      admin.post("/admin/users", dump({{"name", "Ada"}, {"email", "ada@example.com"}})).status ==
      409);
  BOOST_TEST(admin.patch("/admin/users/" + user_id, "{}").status == 400);
  BOOST_TEST(
      admin.patch("/admin/users/usr_000000000000000000000000", dump({{"name", "X"}})).status ==
      404);
  BOOST_TEST(
      admin.post("/admin/users/" + user_id + "/keys", dump({{"environment", "prod"}})).status ==
      400);
  BOOST_TEST(admin.del("/admin/keys/" + key_id).status == 200);
  BOOST_TEST(
      gw.anonymous().post("/admin/users", dump({{"name", "Eve"}, {"email", "e@x.io"}})).status ==
      401);
  BOOST_TEST(admin.get("/admin/users/" + user_id).status == 200);
  BOOST_TEST(admin.get("/admin/users/" + user_id + "/ledger").status == 200);

  auto listed = admin.get("/admin/audit?limit=100");
  BOOST_TEST_REQUIRE(listed.status == 200, listed.body);
  auto audit = listed.json();
  BOOST_TEST(audit["object"] == "list");
  BOOST_TEST(audit["has_more"] == false);
  const auto& rows = audit["data"];
  BOOST_TEST_REQUIRE(rows.size() == expected.size(), listed.body);
  // Newest first.
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const auto& want = expected[expected.size() - 1 - i];
    const auto& row = rows[i];
    BOOST_TEST_CONTEXT("audit row " << i << ": " << row.dump()) {
      BOOST_TEST(row["action"] == want.action);
      BOOST_TEST(row["target"] == want.target);
      BOOST_TEST(row["actor"] == "admin");
      BOOST_TEST(row["request_id"] == want.request_id);
      BOOST_TEST(row["created_at"].get<int64_t>() >= t0);
      BOOST_TEST(row["created_at"].get<int64_t>() <= unix_now());
      BOOST_TEST(row.contains("before"));
      BOOST_TEST(row["after"].is_object());
    }
  }
  BOOST_TEST(listed.body.find(secret.substr(8)) == std::string::npos);
  BOOST_TEST(listed.body.find(tollgate::schemas::sha256_hex(secret)) == std::string::npos);

  const auto& revoke_row = rows[0];
  BOOST_TEST(revoke_row["before"]["revoked_at"].is_null());
  BOOST_TEST(revoke_row["after"]["revoked_at"].is_number_integer());
  const auto& key_row = rows[1];
  BOOST_TEST(key_row["before"].is_null());
  BOOST_TEST(key_row["after"]["id"] == key_id);
  BOOST_TEST(key_row["after"]["name"] == "laptop");
  const auto& remove_row = rows[2];
  BOOST_TEST(remove_row["before"]["balance"] == 5'000);
  BOOST_TEST(remove_row["after"]["ledger_entry_id"] == removed_entry);
  BOOST_TEST(remove_row["after"]["amount"] == -1'200);
  BOOST_TEST(remove_row["after"]["balance_after"] == 3'800);
  const auto& add_row = rows[3];
  BOOST_TEST(add_row["before"]["balance"] == 0);
  BOOST_TEST(add_row["after"]["ledger_entry_id"] == added_entry);
  BOOST_TEST(add_row["after"]["amount"] == 5'000);
  BOOST_TEST(add_row["after"]["balance_after"] == 5'000);
  const auto& update_row = rows[4];
  BOOST_TEST(update_row["before"]["name"] == "Ada");
  BOOST_TEST(update_row["before"]["limits"]["rpm"].is_null());
  BOOST_TEST(update_row["after"]["name"] == "Ada L.");
  BOOST_TEST(update_row["after"]["limits"]["rpm"] == 30);
  const auto& create_row = rows[5];
  BOOST_TEST(create_row["before"].is_null());
  BOOST_TEST(create_row["after"]["id"] == user_id);
  BOOST_TEST(create_row["after"]["email"] == "ada@example.com");

  // Paging: the newest two, and more to come.
  auto page = admin.get("/admin/audit?limit=2");
  BOOST_TEST_REQUIRE(page.status == 200, page.body);
  BOOST_TEST(page.json()["data"].size() == 2u);
  BOOST_TEST(page.json()["has_more"] == true);
  BOOST_TEST(page.json()["data"][0] == rows[0]);

  // The store holds the same rows.
  auto sql = gw.open_db();
  tollgate::storage::audit_repository repo(*sql);
  auto stored = repo.list(1000, 0, {});
  BOOST_TEST_REQUIRE(stored.size() == expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const auto& want = expected[expected.size() - 1 - i];
    BOOST_TEST(stored[i].action == want.action);
    BOOST_TEST(stored[i].target == want.target);
    BOOST_TEST(stored[i].request_id == want.request_id);
    BOOST_TEST(stored[i].actor == "admin");
  }
  BOOST_TEST(repo.list(1000, 0, user_id).size() == 4u);
  BOOST_TEST(repo.list(1000, 0, key_id).size() == 2u);
}

/// Credits posted at the same time each get a row whose before and after agree with the
/// ledger: balance before + amount == balance after.
void check_concurrent_credit_audit(store kind) {
  test_gateway gw(kind);
  const std::string user_id = [&] {
    auto admin = gw.admin();
    return create_user(admin, "Ada", "ada@example.com")["id"].get<std::string>();
  }();
  constexpr int threads = 5;
  constexpr int per_thread = 8;
  std::vector<http_client> clients;
  for (int t = 0; t < threads; ++t)
    clients.push_back(gw.admin());
  std::vector<long> statuses(threads * per_thread);
  std::latch start(threads);
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t)
    workers.emplace_back([&, t] {
      start.arrive_and_wait();
      for (int i = 0; i < per_thread; ++i) {
        try {
          statuses[t * per_thread + i] =
              post_credits(clients[t], user_id, 1'000 * (t + 1) + i).status;
        } catch (const std::exception&) {
          statuses[t * per_thread + i] = -1;
        }
      }
    });
  for (auto& w : workers)
    w.join();
  for (auto status : statuses)
    BOOST_TEST(status == 201);

  auto sql = gw.open_db();
  check_ledger_invariants(*sql, user_id);
  auto rows = tollgate::storage::audit_repository(*sql).list(1000, 0, user_id);
  int credit_rows = 0;
  int inconsistent = 0;
  std::string first_inconsistent;
  for (const auto& row : rows) {
    if (row.action != "credits.add")
      continue;
    ++credit_rows;
    auto before = json::parse(row.before_json);
    auto after = json::parse(row.after_json);
    if (before["balance"].get<int64_t>() + after["amount"].get<int64_t>() !=
        after["balance_after"].get<int64_t>()) {
      if (inconsistent++ == 0)
        first_inconsistent = "row " + std::to_string(row.id) + ": before " + row.before_json +
                             ", after " + row.after_json;
    }
  }
  BOOST_TEST(inconsistent == 0, inconsistent << " of " << credit_rows
                                             << " rows have before.balance + amount != "
                                                "balance_after; first: "
                                             << first_inconsistent);
  BOOST_TEST(credit_rows == threads * per_thread);
}

} // namespace

BOOST_AUTO_TEST_SUITE(audit_sqlite)

BOOST_AUTO_TEST_CASE(every_admin_action_is_audited) {
  check_every_admin_action_is_audited(store::sqlite);
}

BOOST_AUTO_TEST_CASE(concurrent_credit_audit) {
  check_concurrent_credit_audit(store::sqlite);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(audit_live)

BOOST_AUTO_TEST_CASE(every_admin_action_is_audited) {
  check_every_admin_action_is_audited(store::postgresql);
}

BOOST_AUTO_TEST_CASE(concurrent_credit_audit) {
  check_concurrent_credit_audit(store::postgresql);
}

BOOST_AUTO_TEST_SUITE_END()
