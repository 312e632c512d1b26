#include "storage/database.hpp"

#include <chrono>
#include <filesystem>
#include <mutex>
#include <stdexcept>
#include <string>

#include <poll.h>

#include <libpq-fe.h>
#include <soci/postgresql/soci-postgresql.h>
#include <soci/sqlite3/soci-sqlite3.h>

#include "schemas/migrations.hpp"

namespace tollgate::storage {

namespace {

// Any fixed number: every node takes this PostgreSQL advisory lock while it migrates.
constexpr long long migration_lock_id = 7'261'004'318;

/// Every SQLite connection here belongs to one actor, which uses it from one thread at a
/// time, so SQLite's default serialized mode (a mutex around each call on a connection) and
/// its memory statistics (a global mutex around each allocation) only cost time: about a
/// tenth of the ledger committer's CPU under load. Both must be set before SQLite's first
/// use in the process; if something opened SQLite earlier, the defaults stay (still safe).
void configure_sqlite_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    sqlite_api::sqlite3_config(SQLITE_CONFIG_MULTITHREAD);
    sqlite_api::sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
  });
}

} // namespace

database::database(config::database_url url, std::string application_name)
    : url_(std::move(url))
    , application_name_(std::move(application_name)) {
  if (application_name_.empty() || is_sqlite())
    return;
  // A libpq keyword value in single quotes, with ' and \ escaped.
  std::string quoted = "'";
  for (char c : application_name_) {
    if (c == '\'' || c == '\\')
      quoted += '\\';
    quoted += c;
  }
  url_.connect += " application_name=" + quoted + "'";
}

std::string_view database::backend_name() const noexcept {
  return is_sqlite() ? "sqlite" : "postgresql";
}

std::unique_ptr<soci::session> database::open() const {
  if (!is_sqlite())
    return std::make_unique<soci::session>(soci::postgresql, url_.connect);
  auto parent = std::filesystem::path(url_.sqlite_path).parent_path();
  if (!parent.empty())
    std::filesystem::create_directories(parent);
  configure_sqlite_once();
  auto sql = std::make_unique<soci::session>(soci::sqlite3, "db=\"" + url_.sqlite_path + "\"");
  // WAL lets readers run beside the single writer; FULL sync makes every commit durable.
  execute_script(*sql, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; "
                       "PRAGMA busy_timeout=10000; PRAGMA foreign_keys=ON;");
  return sql;
}

bool database::idle_session_ended(soci::session& sql) const {
  if (is_sqlite() || sql.get_backend() == nullptr)
    return false;
  auto* pg = static_cast<soci::postgresql_session_backend*>(sql.get_backend());
  if (pg->conn_ == nullptr || PQstatus(pg->conn_) != CONNECTION_OK)
    return true;
  // Between jobs the server has nothing to say: readable means its goodbye (a FATAL error,
  // then the end of the stream), hang-up and error mean the socket is gone.
  pollfd fd{PQsocket(pg->conn_), POLLIN, 0};
  return fd.fd < 0 || ::poll(&fd, 1, 0) != 0;
}

void prepare_bound(soci::statement& st, const std::string& sql) {
  st.alloc();
  st.prepare(sql);
  st.define_and_bind();
}

void execute_script(soci::session& sql, std::string_view script) {
  std::string text(script);
  // SOCI's backend classes export no type info: dispatch on the backend's name.
  if (sql.get_backend_name() == "sqlite3") {
    auto* lite = static_cast<soci::sqlite3_session_backend*>(sql.get_backend());
    char* message = nullptr;
    if (sqlite_api::sqlite3_exec(lite->conn_, text.c_str(), nullptr, nullptr, &message) !=
        SQLITE_OK) {
      std::string what = message ? message : "unknown error";
      sqlite_api::sqlite3_free(message);
      throw soci::soci_error("sqlite: " + what);
    }
    return;
  }
  if (sql.get_backend_name() != "postgresql")
    throw std::logic_error("execute_script: unsupported database backend");
  auto* pg = static_cast<soci::postgresql_session_backend*>(sql.get_backend());
  PGresult* res = PQexec(pg->conn_, text.c_str());
  auto status = PQresultStatus(res);
  std::string what = PQresultErrorMessage(res);
  PQclear(res);
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK)
    throw soci::soci_error("postgresql: " + what);
}

std::vector<int> apply_migrations(soci::session& sql, std::string_view backend) {
  bool postgres = backend == "postgresql";
  if (postgres)
    execute_script(sql, "SELECT pg_advisory_lock(" + std::to_string(migration_lock_id) + ")");
  std::vector<int> applied;
  try {
    sql << "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, "
           "name TEXT NOT NULL, applied_at BIGINT NOT NULL)";
    for (const auto& m : schemas::migrations_for(backend)) {
      long long seen = 0;
      sql << "SELECT COUNT(*) FROM schema_migrations WHERE version = :v", soci::use(m.version),
          soci::into(seen);
      if (seen > 0)
        continue;
      soci::transaction tx(sql);
      execute_script(sql, m.sql);
      std::string name(m.name);
      auto now = unix_now();
      sql << "INSERT INTO schema_migrations (version, name, applied_at) VALUES (:v, :n, :t)",
          soci::use(m.version), soci::use(name), soci::use(now);
      tx.commit();
      applied.push_back(m.version);
    }
  } catch (...) {
    if (postgres)
      execute_script(sql, "SELECT pg_advisory_unlock(" + std::to_string(migration_lock_id) + ")");
    throw;
  }
  if (postgres)
    execute_script(sql, "SELECT pg_advisory_unlock(" + std::to_string(migration_lock_id) + ")");
  return applied;
}

int64_t unix_now() {
  using namespace std::chrono;
  return duration_cast<seconds>(system_clock::now().time_since_epoch()).count();
}

} // namespace tollgate::storage
