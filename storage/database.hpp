#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <soci/soci.h>

#include "config/config.hpp"

namespace tollgate::storage {

/// Opens sessions to the configured store: SQLite (WAL, full sync) or PostgreSQL.
class database {
public:
  /// `application_name`: how PostgreSQL lists this process's sessions (pg_stat_activity);
  /// a cluster node names them after itself, so that its sessions can be ended if it
  /// stalls while holding locks (see cluster_repository::acquire).
  explicit database(config::database_url url, std::string application_name = {});

  /// A new session, ready for use; throws soci::soci_error when the store is unreachable.
  std::unique_ptr<soci::session> open() const;

  bool is_sqlite() const noexcept { return url_.backend == config::database_backend::sqlite; }
  /// "sqlite" or "postgresql": the folder name of the backend's migrations.
  std::string_view backend_name() const noexcept;
  const config::database_url& url() const noexcept { return url_; }

  /// Whether the server has ended `sql`, a session of this store, while it sat idle between
  /// jobs. On PostgreSQL an idle session has nothing to read unless the server has hung up
  /// (an administrator's pg_terminate_backend, a restart) or is about to; nothing of the
  /// next job has been sent, so its owner can open a new session and run the job there.
  /// Costs one poll(2), no round trip. Always false on SQLite, without a look at `sql`.
  bool idle_session_ended(soci::session& sql) const;

private:
  config::database_url url_;
  std::string application_name_;
};

/// Prepares `sql` on a statement whose parameters and results were already given to it
/// (`exchange`, in their order in `sql`); the statement can then be executed, and kept to run
/// again with new values in the bound variables.
void prepare_bound(soci::statement& st, const std::string& sql);

/// Runs a script of several statements (triggers and functions included) on `sql`.
void execute_script(soci::session& sql, std::string_view script);

/// Applies the migrations the store has not seen yet, each in its own transaction, and
/// returns their versions. Safe to call from several nodes at once on PostgreSQL.
std::vector<int> apply_migrations(soci::session& sql, std::string_view backend);

/// Unix time in seconds.
int64_t unix_now();

} // namespace tollgate::storage
