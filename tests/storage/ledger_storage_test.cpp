#include <boost/test/unit_test.hpp>

#include "config/config.hpp"
#include "schemas/key_format.hpp"
#include "storage/audit_repository.hpp"
#include "storage/database.hpp"
#include "storage/keys_repository.hpp"
#include "storage/ledger_batch.hpp"
#include "storage/ledger_repository.hpp"
#include "storage/usage_repository.hpp"
#include "storage/users_repository.hpp"
#include "tests/storage/backends.hpp"
#include "tests/support/live_services.hpp"
#include "tests/support/temp_dir.hpp"

// The same checks against SQLite (a file per test) and the live PostgreSQL (a database per
// test): the repositories must behave alike on both.

using namespace tollgate;

namespace {

schemas::user_record make_user(soci::session& sql, const std::string& email) {
  auto now = storage::unix_now();
  schemas::user_record user{schemas::random_id("usr"), "Ada", email, false, {}, 0, now, now};
  storage::users_repository(sql).create(user);
  return user;
}

schemas::ledger_entry change(const std::string& user, const std::string& request, int64_t amount) {
  return {0, user, request, "credit", amount, 0, "test", "admin", storage::unix_now()};
}

void check_migrations_are_idempotent(const storage::database& db) {
  auto sql = db.open();
  auto first = storage::apply_migrations(*sql, db.backend_name());
  BOOST_TEST(first.size() >= 1u);
  BOOST_TEST(storage::apply_migrations(*sql, db.backend_name()).empty());
  long long count = 0;
  *sql << "SELECT COUNT(*) FROM schema_migrations", soci::into(count);
  BOOST_TEST(count == static_cast<long long>(first.size()));
}

void check_ledger_apply(const storage::database& db) {
  auto sql = db.open();
  storage::apply_migrations(*sql, db.backend_name());
  auto user = make_user(*sql, "a@example.com");
  storage::ledger_repository ledger(*sql);

  auto first = ledger.apply(change(user.id, "r1", 1000), 0);
  BOOST_TEST((first.status == storage::apply_status::committed));
  BOOST_TEST(first.entry.balance_after == 1000);
  BOOST_TEST(first.entry.id > 0);

  auto replay = ledger.apply(change(user.id, "r1", 1000), 0);
  BOOST_TEST((replay.status == storage::apply_status::replayed));
  BOOST_TEST(replay.entry.id == first.entry.id);

  // The floor guards what open holds keep aside.
  auto too_much = ledger.apply(change(user.id, "r2", -700), 400);
  BOOST_TEST((too_much.status == storage::apply_status::insufficient));
  auto fits = ledger.apply(change(user.id, "r3", -600), 400);
  BOOST_TEST((fits.status == storage::apply_status::committed));
  BOOST_TEST(fits.entry.balance_after == 400);

  auto nobody = ledger.apply(change("usr_missing", "r4", 10), 0);
  BOOST_TEST((nobody.status == storage::apply_status::no_account));

  BOOST_TEST(*ledger.balance(user.id) == 400);
  BOOST_TEST(ledger.sum(user.id) == 400);
  BOOST_TEST(!ledger.balance("usr_missing"));
  auto entries = ledger.list(user.id, 10, 0);
  BOOST_REQUIRE_EQUAL(entries.size(), 2u);
  BOOST_TEST(entries[0].request_id == "r3"); // newest first
  BOOST_TEST(ledger.list(user.id, 10, entries[0].id).size() == 1u);
}

void check_batches_commit_together(const storage::database& db) {
  auto sql = db.open();
  storage::apply_migrations(*sql, db.backend_name());
  auto a = make_user(*sql, "a@example.com");
  auto b = make_user(*sql, "b@example.com");
  std::vector<storage::ledger_post> posts;
  posts.push_back({change(a.id, "a1", 500), 0, {}, {}});
  posts.push_back(
      {change(b.id, "b1", 300), 0, {0, "admin", "credits.add", b.id, "", "", "rq", 1}, {}});
  posts.push_back({change(a.id, "a2", -800), 0, {}, {}}); // more than a has
  posts.push_back({change(a.id, "a1", 500), 0, {}, {}});  // replay inside the batch
  posts.push_back({change(a.id, "a3", -200), 0, {}, {}});
  auto results = storage::commit_batch(*sql, posts);
  BOOST_REQUIRE_EQUAL(results.size(), posts.size());
  BOOST_TEST_INFO("store error: " << results[0].error);
  BOOST_TEST((results[0].status == storage::apply_status::committed));
  BOOST_TEST((results[1].status == storage::apply_status::committed));
  BOOST_TEST((results[2].status == storage::apply_status::insufficient));
  BOOST_TEST((results[3].status == storage::apply_status::replayed));
  BOOST_TEST((results[4].status == storage::apply_status::committed));
  BOOST_TEST(results[4].entry.balance_after == 300);
  storage::ledger_repository ledger(*sql);
  for (const auto& id : {a.id, b.id})
    BOOST_TEST(*ledger.balance(id) == ledger.sum(id));
  // What each commit answered is the entry stored (ids and balances of distinct rows, an
  // audit row written between two of them).
  for (std::size_t i : {0u, 1u, 4u}) {
    auto stored = ledger.find_by_request(posts[i].change.request_id);
    BOOST_REQUIRE(stored);
    BOOST_TEST(stored->id == results[i].entry.id);
    BOOST_TEST(stored->balance_after == results[i].entry.balance_after);
  }
  BOOST_TEST(results[4].entry.id > results[1].entry.id);
  auto audit = storage::audit_repository(*sql).list(10, 0, b.id);
  BOOST_REQUIRE_EQUAL(audit.size(), 1u);
  BOOST_TEST(audit[0].after_json.find("\"balance_after\":300") != std::string::npos);
}

storage::usage_record usage_of_call(const std::string& user, const std::string& request,
                                    int64_t cost) {
  storage::usage_record u;
  u.request_id = request;
  u.user_id = user;
  u.key_id = "key_test";
  u.model = "gpt-test";
  u.deployment = "mock/mock-1";
  u.prompt_tokens = 3;
  u.completion_tokens = 10;
  u.cost = cost;
  u.status = "ok";
  u.created_at = storage::unix_now();
  u.attempts = 1;
  u.attempt_log = "mock/mock-1:ok";
  return u;
}

/// A call's usage row is written once per request id, with its charge or without one (a free
/// call, a refused or replayed charge). On PostgreSQL it travels in the charge's statement.
void check_batches_write_usage_rows(const storage::database& db) {
  auto sql = db.open();
  storage::apply_migrations(*sql, db.backend_name());
  auto a = make_user(*sql, "a@example.com");
  storage::ledger_repository(*sql).apply(change(a.id, "opening", 1000), 0);
  auto charge = [&](const std::string& request, int64_t amount) {
    auto c = change(a.id, request, amount);
    c.kind = "charge";
    return storage::ledger_post{c, 0, {}, usage_of_call(a.id, request, -amount)};
  };
  std::vector<storage::ledger_post> posts{charge("c1", -100), charge("c2", -5000),
                                          charge("c1", -100), charge("c3", 0)};
  posts.push_back({change(a.id, "c4", -50), 0, {}, {}}); // a charge without a usage row
  auto results = storage::commit_batch(*sql, posts);
  BOOST_REQUIRE_EQUAL(results.size(), posts.size());
  BOOST_TEST_INFO("store error: " << results[0].error);
  BOOST_TEST((results[0].status == storage::apply_status::committed));
  BOOST_TEST(results[0].entry.balance_after == 900);
  BOOST_TEST((results[1].status == storage::apply_status::insufficient));
  BOOST_TEST((results[2].status == storage::apply_status::replayed));
  BOOST_TEST((results[3].status == storage::apply_status::committed));
  BOOST_TEST((results[4].status == storage::apply_status::committed));
  BOOST_TEST(results[4].entry.balance_after == 850);

  std::vector<std::string> requests;
  std::vector<int64_t> costs;
  soci::rowset<soci::row> rows =
      (sql->prepare << "SELECT request_id, cost, key_id, attempt_log FROM usage_records "
                       "WHERE user_id = :u ORDER BY request_id",
       soci::use(a.id));
  for (const auto& row : rows) {
    requests.push_back(row.get<std::string>(0));
    costs.push_back(row.get<long long>(1));
    BOOST_TEST(row.get<std::string>(2) == "key_test");
    BOOST_TEST(row.get<std::string>(3) == "mock/mock-1:ok");
  }
  BOOST_TEST(requests == (std::vector<std::string>{"c1", "c2", "c3"}),
             boost::test_tools::per_element());
  BOOST_TEST(costs == (std::vector<int64_t>{100, 5000, 0}), boost::test_tools::per_element());
  storage::ledger_repository ledger(*sql);
  BOOST_TEST(*ledger.balance(a.id) == 850);
  BOOST_TEST(ledger.sum(a.id) == 850);
}

/// A batch that the store refuses part of the way through writes nothing, and the same
/// writer's next batch commits (on PostgreSQL its statements travel in one pipeline, so the
/// failure comes back after the changes before it were sent).
void check_a_failing_batch_writes_nothing(const storage::database& db) {
  auto sql = db.open();
  storage::apply_migrations(*sql, db.backend_name());
  auto a = make_user(*sql, "a@example.com");
  storage::ledger_repository(*sql).apply(change(a.id, "opening", 1000), 0);
  // The store refuses the usage row of request "boom".
  if (db.is_sqlite()) {
    storage::execute_script(*sql, "CREATE TRIGGER refuse_boom BEFORE INSERT ON usage_records "
                                  "WHEN NEW.request_id = 'boom' BEGIN "
                                  "SELECT RAISE(ABORT, 'boom refused'); END;");
  } else {
    storage::execute_script(
        *sql, "CREATE FUNCTION refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
              "IF NEW.request_id = 'boom' THEN RAISE EXCEPTION 'boom refused'; END IF; "
              "RETURN NEW; END $$; CREATE TRIGGER refuse_boom BEFORE INSERT ON usage_records "
              "FOR EACH ROW EXECUTE FUNCTION refuse_boom();");
  }
  auto charge = [&](const std::string& request, int64_t amount) {
    auto c = change(a.id, request, amount);
    c.kind = "charge";
    return storage::ledger_post{c, 0, {}, usage_of_call(a.id, request, -amount)};
  };
  storage::ledger_batch_writer writer(*sql);
  auto failed = writer.commit({charge("c1", -100), charge("boom", -10), charge("c3", -30)});
  BOOST_REQUIRE_EQUAL(failed.size(), 3u);
  for (const auto& r : failed) {
    BOOST_TEST((r.status == storage::apply_status::failed));
    BOOST_TEST(r.error.find("boom refused") != std::string::npos, r.error);
  }
  storage::ledger_repository ledger(*sql);
  BOOST_TEST(*ledger.balance(a.id) == 1000);
  BOOST_TEST(ledger.sum(a.id) == 1000);
  BOOST_TEST(!ledger.find_by_request("c1"));
  BOOST_TEST(storage::usage_repository(*sql).count_for_user(a.id) == 0);

  auto next = writer.commit({charge("c1", -100), charge("c3", -30)});
  BOOST_TEST_INFO("store error: " << next[0].error);
  BOOST_TEST((next[0].status == storage::apply_status::committed));
  BOOST_TEST((next[1].status == storage::apply_status::committed));
  BOOST_TEST(next[1].entry.balance_after == 870);
  BOOST_TEST(ledger.sum(a.id) == 870);
  BOOST_TEST(*ledger.balance(a.id) == 870);
  BOOST_TEST(storage::usage_repository(*sql).count_for_user(a.id) == 2);
}

/// The ledger writer's largest batch (1,024 posts, as ledger_writer_state::max_batch) over
/// several users: every result answers its own post, and each balance is the sum of its
/// entries. On PostgreSQL the batch is one pipeline of about 2,000 statements and rows.
void check_a_full_batch(const storage::database& db) {
  auto sql = db.open();
  storage::apply_migrations(*sql, db.backend_name());
  std::vector<schemas::user_record> users;
  for (int i = 0; i < 8; ++i)
    users.push_back(make_user(*sql, "u" + std::to_string(i) + "@example.com"));
  std::vector<storage::ledger_post> posts;
  for (int i = 0; i < 1024; ++i) {
    const auto& user = users[static_cast<std::size_t>(i) % users.size()];
    auto request = "big" + std::to_string(i);
    // Each user's first post credits 1,000; then charges of 7, and every fifth a charge
    // that the floor of 900 refuses once the balance is below it.
    bool first = i < static_cast<int>(users.size());
    auto c = change(user.id, request, first ? 1000 : (i % 5 == 0 ? -200 : -7));
    storage::usage_record usage;
    if (!first)
      usage = usage_of_call(user.id, request, -c.amount);
    posts.push_back({c, first ? 0 : 900, {}, usage});
  }
  auto results = storage::commit_batch(*sql, posts);
  BOOST_REQUIRE_EQUAL(results.size(), posts.size());
  BOOST_TEST_INFO("store error: " << results[0].error);
  int committed = 0;
  for (std::size_t i = 0; i < posts.size(); ++i) {
    BOOST_TEST((results[i].status == storage::apply_status::committed ||
                results[i].status == storage::apply_status::insufficient));
    if (results[i].status == storage::apply_status::committed) {
      ++committed;
      BOOST_TEST(results[i].entry.request_id == posts[i].change.request_id);
      BOOST_TEST(results[i].entry.balance_after >= posts[i].floor);
    }
  }
  BOOST_TEST(committed > static_cast<int>(users.size()));
  storage::ledger_repository ledger(*sql);
  for (const auto& user : users)
    BOOST_TEST(*ledger.balance(user.id) == ledger.sum(user.id));
  long long rows = 0;
  *sql << "SELECT COUNT(*) FROM usage_records", soci::into(rows);
  BOOST_TEST(rows == static_cast<long long>(posts.size() - users.size()));
}

void check_ledger_is_append_only(const storage::database& db) {
  auto sql = db.open();
  storage::apply_migrations(*sql, db.backend_name());
  auto user = make_user(*sql, "a@example.com");
  storage::ledger_repository(*sql).apply(change(user.id, "r1", 100), 0);
  BOOST_CHECK_THROW(*sql << "UPDATE ledger_entries SET amount = 1000000", soci::soci_error);
  BOOST_CHECK_THROW(*sql << "DELETE FROM ledger_entries", soci::soci_error);
  BOOST_CHECK_THROW(*sql << "UPDATE accounts SET balance = -5", soci::soci_error);
  BOOST_TEST(storage::ledger_repository(*sql).sum(user.id) == 100);
}

void check_keys_and_users(const storage::database& db) {
  auto sql = db.open();
  storage::apply_migrations(*sql, db.backend_name());
  auto user = make_user(*sql, "a@example.com");
  storage::users_repository users(*sql);
  BOOST_TEST(users.email_taken("a@example.com"));
  BOOST_TEST(!users.email_taken("a@example.com", user.id));
  user.suspended = true;
  user.limits.rpm = 7;
  users.update(user);
  auto found = users.find(user.id);
  BOOST_REQUIRE(found);
  BOOST_TEST(found->suspended);
  BOOST_TEST(found->limits.rpm == 7);

  auto secret = schemas::generate_api_key("live");
  schemas::key_record key{schemas::random_id("key"),
                          user.id,
                          "k",
                          "live",
                          schemas::key_prefix(secret),
                          schemas::sha256_hex(secret),
                          {1, 2, 3},
                          {"echo-1"},
                          {"10.0.0.0/8"},
                          0,
                          0,
                          storage::unix_now()};
  storage::keys_repository keys(*sql);
  keys.create(key);
  auto by_hash = keys.find_by_hash(schemas::sha256_hex(secret));
  BOOST_REQUIRE(by_hash);
  BOOST_TEST(by_hash->models == key.models);
  BOOST_TEST(by_hash->allowed_ips == key.allowed_ips);
  BOOST_TEST((by_hash->limits == key.limits));
  BOOST_TEST(keys.revoke(key.id, 42));
  BOOST_TEST(!keys.revoke(key.id, 43)); // once
  BOOST_TEST(keys.find(key.id)->revoked_at == 42);
  BOOST_TEST(keys.list_for_user(user.id).size() == 1u);
}

} // namespace

BOOST_AUTO_TEST_SUITE(ledger_storage_sqlite)

BOOST_AUTO_TEST_CASE(migrations) {
  test::on_sqlite(check_migrations_are_idempotent);
}
BOOST_AUTO_TEST_CASE(apply) {
  test::on_sqlite(check_ledger_apply);
}
BOOST_AUTO_TEST_CASE(batches) {
  test::on_sqlite(check_batches_commit_together);
}
BOOST_AUTO_TEST_CASE(usage_rows) {
  test::on_sqlite(check_batches_write_usage_rows);
}
BOOST_AUTO_TEST_CASE(failing_batch) {
  test::on_sqlite(check_a_failing_batch_writes_nothing);
}
BOOST_AUTO_TEST_CASE(full_batch) {
  test::on_sqlite(check_a_full_batch);
}
BOOST_AUTO_TEST_CASE(append_only) {
  test::on_sqlite(check_ledger_is_append_only);
}
BOOST_AUTO_TEST_CASE(keys_and_users) {
  test::on_sqlite(check_keys_and_users);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(ledger_storage_live)

BOOST_AUTO_TEST_CASE(migrations) {
  test::on_postgres(check_migrations_are_idempotent);
}
BOOST_AUTO_TEST_CASE(apply) {
  test::on_postgres(check_ledger_apply);
}
BOOST_AUTO_TEST_CASE(batches) {
  test::on_postgres(check_batches_commit_together);
}
BOOST_AUTO_TEST_CASE(usage_rows) {
  test::on_postgres(check_batches_write_usage_rows);
}
BOOST_AUTO_TEST_CASE(failing_batch) {
  test::on_postgres(check_a_failing_batch_writes_nothing);
}
BOOST_AUTO_TEST_CASE(full_batch) {
  test::on_postgres(check_a_full_batch);
}
BOOST_AUTO_TEST_CASE(append_only) {
  test::on_postgres(check_ledger_is_append_only);
}
BOOST_AUTO_TEST_CASE(keys_and_users) {
  test::on_postgres(check_keys_and_users);
}

BOOST_AUTO_TEST_SUITE_END()
