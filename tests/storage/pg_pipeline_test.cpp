#include <string>
#include <vector>

#include <boost/test/unit_test.hpp>

#include "config/config.hpp"
#include "storage/database.hpp"
#include "storage/pg_pipeline.hpp"
#include "tests/support/live_services.hpp"

using namespace tollgate;

BOOST_AUTO_TEST_SUITE(pg_pipeline)

BOOST_AUTO_TEST_CASE(placeholders_become_positional_in_order) {
  using storage::positional_placeholders;
  BOOST_TEST(positional_placeholders("SELECT :a + :b2, :a_3") == "SELECT $1 + $2, $3");
  // Each occurrence is a parameter of its own, as SOCI binds them.
  BOOST_TEST(positional_placeholders("WHERE x = :v OR y = :v") == "WHERE x = $1 OR y = $2");
  // Casts, quoted text and a colon before a digit or a blank are SQL, not placeholders.
  BOOST_TEST(positional_placeholders("SELECT :n::bigint, ':not', 'it''s :x', 1 : 2, :9") ==
             "SELECT $1::bigint, ':not', 'it''s :x', 1 : 2, :9");
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(pg_pipeline_live)

namespace {

int64_t count_rows(soci::session& sql) {
  long long n = 0;
  sql << "SELECT COUNT(*) FROM pipeline_rows", soci::into(n);
  return n;
}

} // namespace

BOOST_AUTO_TEST_CASE(answers_come_in_order_and_an_error_undoes_the_sync) {
  test::scoped_pg_database pg(test::require_pg_url());
  storage::database db(config::parse_database_url(pg.url()));
  auto sql = db.open();
  *sql << "CREATE TABLE pipeline_rows (n BIGINT PRIMARY KEY, label TEXT NOT NULL)";

  std::string insert;
  {
    storage::pg_pipeline pipe(*sql);
    pipe.prepare(insert, "INSERT INTO pipeline_rows (n, label) VALUES (:n, :label) "
                         "RETURNING n * 10");
    for (int64_t n : {1, 2, 3}) {
      storage::pg_params params;
      params.add(n);
      params.add(std::string("row ") + std::to_string(n));
      pipe.send(insert, params);
    }
    auto answers = pipe.sync();
    BOOST_REQUIRE_EQUAL(answers.size(), 3u); // the preparation has no answer
    for (int i = 0; i < 3; ++i) {
      BOOST_TEST(answers[static_cast<std::size_t>(i)].rows() == 1);
      BOOST_TEST(answers[static_cast<std::size_t>(i)].integer(0, 0) == (i + 1) * 10);
    }
  }
  BOOST_TEST(count_rows(*sql) == 3); // committed at the sync, and SOCI has the session back

  // A duplicate key in the middle: the whole sync is undone, the error says why, and a
  // preparation queued after it did not happen, so its name is forgotten.
  std::string late;
  {
    storage::pg_pipeline pipe(*sql);
    for (int64_t n : {4, 2, 5}) {
      storage::pg_params params;
      params.add(n);
      params.add(std::string("again"));
      pipe.send(insert, params); // prepared by an earlier pipeline on this session
    }
    pipe.prepare(late, "SELECT COUNT(*) + :k FROM pipeline_rows");
    BOOST_TEST(!late.empty());
    try {
      pipe.sync();
      BOOST_FAIL("the pipeline should have failed");
    } catch (const storage::pg_error& e) {
      BOOST_TEST(std::string(e.what()).find("duplicate key") != std::string::npos, e.what());
      BOOST_TEST(e.sqlstate() == "23505"); // unique_violation
    }
  }
  BOOST_TEST(late.empty());
  BOOST_TEST(count_rows(*sql) == 3);
  {
    storage::pg_pipeline pipe(*sql);
    pipe.prepare(late, "SELECT COUNT(*) + :k FROM pipeline_rows");
    storage::pg_params params;
    params.add(int64_t{100});
    pipe.send(late, params);
    auto answers = pipe.sync();
    BOOST_TEST(answers.at(0).integer(0, 0) == 103);
  }

  // Inside an explicit transaction a sync commits nothing; the answers still come.
  {
    storage::pg_pipeline pipe(*sql);
    pipe.send("BEGIN");
    storage::pg_params params;
    params.add(int64_t{6});
    params.add(std::string("six"));
    pipe.send(insert, params);
    auto answers = pipe.sync();
    BOOST_REQUIRE_EQUAL(answers.size(), 2u);
    BOOST_TEST(answers[1].integer(0, 0) == 60);
  }
  storage::execute_script(*sql, "ROLLBACK");
  BOOST_TEST(count_rows(*sql) == 3);
}

BOOST_AUTO_TEST_SUITE_END()
