#include <boost/test/unit_test.hpp>

#include "config/config.hpp"
#include "schemas/key_format.hpp"
#include "storage/cluster_repository.hpp"
#include "storage/database.hpp"
#include "storage/ledger_batch.hpp"
#include "storage/ledger_repository.hpp"
#include "storage/users_repository.hpp"
#include "tests/storage/backends.hpp"
#include "tests/support/live_services.hpp"
#include "tests/support/temp_dir.hpp"

// Membership, shard leases and the fencing of ledger batches, on both backends (a cluster
// runs on PostgreSQL; SQLite shares the schema).

using namespace tollgate;

namespace {

storage::node_row node(const std::string& id) {
  return {id, id + ":9000", id + ":8080", "active", 0, 0};
}

void check_membership(const storage::database& db) {
  auto sql = db.open();
  storage::apply_migrations(*sql, db.backend_name());
  storage::cluster_repository repo(*sql);
  repo.ensure_shards(8);
  repo.ensure_shards(8); // idempotent
  BOOST_TEST(repo.leases().size() == 8u);
  repo.register_node(node("a"), 60'000);
  repo.register_node(node("b"), 60'000);
  auto seen = repo.renew("a", 60'000);
  BOOST_TEST(seen.own_state == "active");
  BOOST_TEST(seen.members.size() == 2u);
  BOOST_TEST(seen.leases.size() == 8u);
  BOOST_TEST(seen.now > 0);
  BOOST_TEST(std::abs(seen.now / 1000 - storage::unix_now()) <= 5);

  // A lapsed membership is not renewed: the node must join again.
  repo.register_node(node("c"), 1);
  auto deadline = repo.now() + 200;
  while (repo.now() < deadline) {
  }
  BOOST_TEST(repo.renew("c", 60'000).own_state.empty());
  auto members = repo.renew("a", 60'000).members;
  BOOST_TEST(members.size() == 2u); // c is out

  BOOST_TEST(repo.set_state("b", "draining"));
  BOOST_TEST(repo.renew("b", 60'000).own_state == "draining");
  BOOST_TEST(!repo.set_state("nobody", "draining"));
  BOOST_CHECK_THROW(repo.set_state("a", "sleeping"), soci::soci_error); // CHECK constraint
}

void check_leases(const storage::database& db) {
  auto sql = db.open();
  storage::apply_migrations(*sql, db.backend_name());
  storage::cluster_repository repo(*sql);
  repo.ensure_shards(4);
  auto first = repo.acquire(1, "a", 60'000);
  BOOST_TEST_REQUIRE(first.has_value());
  BOOST_TEST(*first == 1);
  BOOST_TEST(!repo.acquire(1, "b", 60'000)); // a live lease is never taken
  BOOST_TEST(repo.fence_holds(1, 1));
  BOOST_TEST(!repo.fence_holds(1, 2));
  BOOST_TEST(!repo.release(1, "a", 7)); // only at the epoch held
  BOOST_TEST(!repo.release(1, "b", 1));
  BOOST_TEST(repo.release(1, "a", 1));
  BOOST_TEST(!repo.fence_holds(1, 1)); // released: the old epoch is fenced off
  auto second = repo.acquire(1, "b", 60'000);
  BOOST_TEST_REQUIRE(second.has_value());
  BOOST_TEST(*second == 2); // the epoch only grows

  // An expired lease can be taken over; the old holder's epoch no longer commits.
  auto short_lease = repo.acquire(2, "a", 1);
  BOOST_TEST_REQUIRE(short_lease.has_value());
  auto deadline = repo.now() + 100;
  while (repo.now() < deadline) {
  }
  BOOST_TEST(!repo.fence_holds(2, *short_lease));
  auto taken = repo.acquire(2, "b", 60'000);
  BOOST_TEST_REQUIRE(taken.has_value());
  BOOST_TEST(*taken == *short_lease + 1);

  BOOST_CHECK_THROW(*sql << "UPDATE shard_leases SET epoch = 0 WHERE shard = 2", soci::soci_error);
}

void check_fenced_batches(const storage::database& db) {
  auto sql = db.open();
  storage::apply_migrations(*sql, db.backend_name());
  storage::cluster_repository repo(*sql);
  repo.ensure_shards(4);
  auto now = storage::unix_now();
  schemas::user_record user{
      schemas::random_id("usr"), "Ada", "a@example.com", false, {}, 0, now, now};
  storage::users_repository(*sql).create(user);
  auto epoch = repo.acquire(3, "a", 60'000);
  BOOST_TEST_REQUIRE(epoch.has_value());

  auto post = [&](const std::string& request, int64_t amount, int64_t at_epoch) {
    storage::ledger_post p;
    p.change = {0, user.id, request, "credit", amount, 0, "test", "admin", now};
    p.shard = 3;
    p.epoch = at_epoch;
    return p;
  };
  storage::ledger_batch_writer writer(*sql);
  auto results = writer.commit({post("r1", 500, *epoch), post("r2", 100, *epoch + 1)});
  BOOST_TEST_REQUIRE(results.size() == 2u);
  BOOST_TEST((results[0].status == storage::apply_status::committed));
  BOOST_TEST((results[1].status == storage::apply_status::fenced)); // not the current epoch

  // The lease moves: the old owner's next batch writes nothing.
  BOOST_TEST(repo.release(3, "a", *epoch));
  auto moved = repo.acquire(3, "b", 60'000);
  BOOST_TEST_REQUIRE(moved.has_value());
  results = writer.commit({post("r3", 700, *epoch), post("r4", 50, *moved)});
  BOOST_TEST((results[0].status == storage::apply_status::fenced));
  BOOST_TEST((results[1].status == storage::apply_status::committed));

  // Every fence current (on PostgreSQL asserted in the writes' own round trip).
  results = writer.commit({post("r5", 20, *moved), post("r6", 5, *moved), post("r5", 20, *moved)});
  BOOST_TEST((results[0].status == storage::apply_status::committed));
  BOOST_TEST((results[1].status == storage::apply_status::committed));
  BOOST_TEST(results[1].entry.balance_after == 575);
  BOOST_TEST((results[2].status == storage::apply_status::replayed));

  storage::ledger_repository ledger(*sql);
  BOOST_TEST(ledger.balance(user.id).value_or(-1) == 575);
  BOOST_TEST(ledger.sum(user.id) == 575);
  BOOST_TEST(!ledger.find_by_request("r3"));
}

} // namespace

BOOST_AUTO_TEST_SUITE(cluster_storage_sqlite)

BOOST_AUTO_TEST_CASE(membership) {
  test::on_sqlite(check_membership);
}

BOOST_AUTO_TEST_CASE(leases) {
  test::on_sqlite(check_leases);
}

BOOST_AUTO_TEST_CASE(fenced_batches) {
  test::on_sqlite(check_fenced_batches);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(cluster_storage_live)

BOOST_AUTO_TEST_CASE(membership) {
  test::on_postgres(check_membership);
}

BOOST_AUTO_TEST_CASE(leases) {
  test::on_postgres(check_leases);
}

BOOST_AUTO_TEST_CASE(fenced_batches) {
  test::on_postgres(check_fenced_batches);
}

BOOST_AUTO_TEST_SUITE_END()
