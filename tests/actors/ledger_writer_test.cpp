#include <boost/test/unit_test.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>

#include <caf/all.hpp>

#include "actors/ledger/ledger_writer.hpp"
#include "actors/messages.hpp"
#include "config/config.hpp"
#include "schemas/key_format.hpp"
#include "storage/database.hpp"
#include "storage/ledger_repository.hpp"
#include "storage/users_repository.hpp"
#include "tests/support/gateway_messages.hpp"
#include "tests/support/live_services.hpp"
#include "tests/support/temp_dir.hpp"

// The ledger writer, a detached actor on its own session, against a real store: posts that
// come while a batch commits are committed together after it, every post is answered once
// with its own outcome, and a store it cannot open fails the posts without ending it.

using namespace tollgate;
using namespace std::chrono_literals;

namespace {

storage::ledger_post credit(const std::string& user, const std::string& request, int64_t amount) {
  storage::ledger_post post;
  post.change = {0, user, request, "credit", amount, 0, "test", "admin", storage::unix_now()};
  return post;
}

std::tuple<int64_t, int64_t> stats_of(caf::scoped_actor& self, const caf::actor& writer) {
  std::tuple<int64_t, int64_t> out{-1, -1};
  self->request(writer, 10s, stats_atom_v)
      .receive(
          [&](int64_t batches, int64_t posts) {
            out = {batches, posts};
          },
          [&](caf::error& err) { BOOST_FAIL("stats: " << to_string(err)); });
  return out;
}

/// Sends `count` posts back to back (each a credit of 1 with its own request id, and one
/// again), then checks every answer and the stored ledger.
void check_batches(std::shared_ptr<const storage::database> db) {
  auto sql = db->open();
  storage::apply_migrations(*sql, db->backend_name());
  auto now = storage::unix_now();
  schemas::user_record user{
      schemas::random_id("usr"), "Ada", "ada@example.com", false, {}, 0, now, now};
  storage::users_repository(*sql).create(user);

  test::gateway_messages config;
  caf::actor_system system{config};
  caf::scoped_actor self{system};
  auto writer = system.spawn<caf::detached>(ledger_writer, db);

  const int count = 2'000;
  for (int i = 0; i < count; ++i)
    self->send(writer, post_atom_v, credit(user.id, std::to_string(i), 1));
  self->send(writer, post_atom_v, credit(user.id, "7", 1)); // a replay of "7"

  std::map<std::string, storage::ledger_result> answers;
  int replays = 0;
  int received = 0;
  self->receive_for(received, count + 1)(
      [&](storage::ledger_result& result) {
        if (result.status == storage::apply_status::replayed)
          ++replays;
        else
          answers.emplace(result.entry.request_id, std::move(result));
      },
      caf::after(30s) >> [&] { BOOST_FAIL("only " << received << " answers came"); });

  BOOST_TEST(replays == 1);
  BOOST_TEST(answers.size() == static_cast<std::size_t>(count));
  for (const auto& [request, result] : answers) {
    BOOST_TEST_CONTEXT(request) {
      BOOST_TEST((result.status == storage::apply_status::committed));
      BOOST_TEST(result.entry.id > 0);
      BOOST_TEST(result.entry.amount == 1);
    }
  }
  storage::ledger_repository ledger(*sql);
  BOOST_TEST(*ledger.balance(user.id) == count);
  BOOST_TEST(ledger.sum(user.id) == count);

  // The posts were queued faster than one commit a post: most came while a batch was being
  // committed, and went in the next batch together.
  auto [batches, posts] = stats_of(self, writer);
  BOOST_TEST(posts == count + 1);
  BOOST_TEST(batches >= 2);
  BOOST_TEST(batches <= count / 10);
  self->send_exit(writer, caf::exit_reason::user_shutdown);
}

} // namespace

BOOST_AUTO_TEST_SUITE(ledger_writer_batches)

BOOST_AUTO_TEST_CASE(posts_during_a_commit_go_in_the_next_batch_sqlite) {
  test::temp_dir dir;
  check_batches(std::make_shared<const storage::database>(
      config::parse_database_url("sqlite://" + (dir / "t.db").string())));
}

BOOST_AUTO_TEST_CASE(a_store_it_cannot_open_fails_the_posts_and_the_writer_goes_on) {
  // The database's folder cannot be made: opening the session throws.
  auto db = std::make_shared<const storage::database>(
      config::parse_database_url("sqlite:///proc/tollgate-none/t.db"));
  test::gateway_messages config;
  caf::actor_system system{config};
  caf::scoped_actor self{system};
  auto writer = system.spawn<caf::detached>(ledger_writer, db);
  for (const char* request : {"r1", "r2"}) {
    self->request(writer, 10s, post_atom_v, credit("usr_x", request, 5))
        .receive(
            [&](storage::ledger_result& result) {
              BOOST_TEST((result.status == storage::apply_status::failed));
              BOOST_TEST(result.entry.request_id == request);
              BOOST_TEST(result.error.find("database error") != std::string::npos, result.error);
            },
            [&](caf::error& err) { BOOST_FAIL("post: " << to_string(err)); });
  }
  auto [batches, posts] = stats_of(self, writer);
  BOOST_TEST(batches == 2);
  BOOST_TEST(posts == 2);
  self->send_exit(writer, caf::exit_reason::user_shutdown);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(ledger_writer_batches_live)

BOOST_AUTO_TEST_CASE(posts_during_a_commit_go_in_the_next_batch_postgres) {
  test::scoped_pg_database pg(test::require_pg_url());
  check_batches(std::make_shared<const storage::database>(config::parse_database_url(pg.url())));
}

BOOST_AUTO_TEST_SUITE_END()
