#pragma once

#include "config/config.hpp"
#include "storage/database.hpp"
#include "tests/support/live_services.hpp"
#include "tests/support/temp_dir.hpp"

// The storage suites run each check on both backends: the repositories must behave alike.

namespace tollgate::test {

/// Runs `check` on a fresh SQLite file.
template <class Check>
void on_sqlite(Check check) {
  temp_dir dir;
  storage::database db(config::parse_database_url("sqlite://" + (dir / "t.db").string()));
  check(db);
}

/// Runs `check` on a fresh PostgreSQL database.
template <class Check>
void on_postgres(Check check) {
  scoped_pg_database pg(require_pg_url());
  storage::database db(config::parse_database_url(pg.url()));
  check(db);
}

} // namespace tollgate::test
