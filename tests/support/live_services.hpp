#pragma once

#include <optional>
#include <string>

namespace tollgate::test {

/// env TOLLGATE_TEST_PG_URL, e.g. postgresql://postgres@127.0.0.1:54329/postgres.
std::optional<std::string> pg_url();

/// env TOLLGATE_TEST_REDIS_URL, e.g. redis://127.0.0.1:63799.
std::optional<std::string> redis_url();

/// pg_url(), or fails the current Boost test saying how to provide one (never skips).
std::string require_pg_url();

/// redis_url(), or fails the current Boost test saying how to provide one (never skips).
std::string require_redis_url();

/// `url` with its database name replaced by `database`; takes URIs
/// (postgres[ql]://user[:password]@host[:port][/db][?params]) and key=value strings.
std::string pg_url_with_database(const std::string& url, const std::string& database);

/// `url` as a libpq keyword string ("host=h port=p user=u dbname=d ..."); keyword strings
/// pass unchanged. SOCI 4.0's postgresql backend mangles URIs, so give it this instead.
std::string pg_connection_string(const std::string& url);

/// Creates database tollgate_test_<random hex> on the server of `server_url`; returns its URL.
std::string make_pg_database(const std::string& server_url);

/// Drops the database named in `database_url`, connecting through `server_url`; best effort
/// (never throws), and forces other sessions off it.
void drop_pg_database(const std::string& server_url, const std::string& database_url) noexcept;

/// A database from make_pg_database, dropped at destruction.
class scoped_pg_database {
public:
  explicit scoped_pg_database(std::string server_url);
  ~scoped_pg_database();

  scoped_pg_database(const scoped_pg_database&) = delete;
  scoped_pg_database& operator=(const scoped_pg_database&) = delete;

  const std::string& url() const { return url_; }

private:
  std::string server_url_;
  std::string url_;
};

} // namespace tollgate::test
