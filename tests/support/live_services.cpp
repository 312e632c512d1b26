#include "tests/support/live_services.hpp"

#include "tests/support/random.hpp"

#include "config/postgres_url.hpp"

#include <boost/test/unit_test.hpp>
#include <soci/postgresql/soci-postgresql.h>
#include <soci/soci.h>

#include <cctype>
#include <cstdlib>
#include <iostream>
#include <regex>
#include <stdexcept>
#include <string_view>
#include <utility>
#include <vector>

namespace tollgate::test {

namespace {

std::optional<std::string> env_value(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0')
    return std::nullopt;
  return std::string{value};
}

bool is_uri(const std::string& url) {
  return url.starts_with("postgresql://") || url.starts_with("postgres://");
}

/// The database named in `url` ("" if it names none).
std::string database_of(const std::string& url) {
  if (is_uri(url)) {
    auto authority = url.find("://") + 3;
    auto slash = url.find('/', authority);
    if (slash == std::string::npos)
      return {};
    auto query = url.find('?', slash);
    return url.substr(slash + 1, query == std::string::npos ? query : query - slash - 1);
  }
  std::smatch match;
  static const std::regex dbname{R"((?:^|\s)dbname\s*=\s*(\S+))"};
  return std::regex_search(url, match, dbname) ? match[1].str() : std::string{};
}

/// Only names make_pg_database creates may be interpolated into SQL.
bool safe_identifier(const std::string& name) {
  static const std::regex pattern{"[a-z_][a-z0-9_]*"};
  return std::regex_match(name, pattern);
}

} // namespace

std::optional<std::string> pg_url() {
  return env_value("TOLLGATE_TEST_PG_URL");
}

std::optional<std::string> redis_url() {
  return env_value("TOLLGATE_TEST_REDIS_URL");
}

std::string require_pg_url() {
  if (auto url = pg_url())
    return *url;
  BOOST_FAIL("needs PostgreSQL: run scripts/test.sh, or set TOLLGATE_TEST_PG_URL "
             "(e.g. postgresql://postgres@127.0.0.1:5432/postgres)");
  return {};
}

std::string require_redis_url() {
  if (auto url = redis_url())
    return *url;
  BOOST_FAIL("needs Redis: run scripts/test.sh, or set TOLLGATE_TEST_REDIS_URL "
             "(e.g. redis://127.0.0.1:6379)");
  return {};
}

std::string pg_url_with_database(const std::string& url, const std::string& database) {
  if (is_uri(url)) {
    auto authority = url.find("://") + 3;
    auto end = url.find_first_of("/?", authority);
    auto base = url.substr(0, end);
    std::string query;
    if (end != std::string::npos) {
      auto question = url.find('?', end);
      if (question != std::string::npos)
        query = url.substr(question);
    }
    return base + "/" + database + query;
  }
  static const std::regex dbname{R"(\s*\bdbname\s*=\s*\S+)"};
  auto without = std::regex_replace(url, dbname, "");
  without.erase(0, without.find_first_not_of(' '));
  return without + (without.empty() ? "" : " ") + "dbname=" + database;
}

std::string pg_connection_string(const std::string& url) {
  return config::postgres_keywords(url);
}

std::string make_pg_database(const std::string& server_url) {
  auto name = "tollgate_test_" + random_hex(8);
  try {
    soci::session sql{soci::postgresql, pg_connection_string(server_url)};
    sql << "CREATE DATABASE " + name;
  } catch (const std::exception& error) {
    throw std::runtime_error("cannot create database " + name + " via " + server_url + ": " +
                             error.what());
  }
  return pg_url_with_database(server_url, name);
}

void drop_pg_database(const std::string& server_url, const std::string& database_url) noexcept {
  try {
    auto name = database_of(database_url);
    if (!safe_identifier(name)) {
      std::cerr << "[tollgate-test] not dropping database '" << name << "': unexpected name\n";
      return;
    }
    soci::session sql{soci::postgresql, pg_connection_string(server_url)};
    sql << "DROP DATABASE IF EXISTS " + name + " WITH (FORCE)";
  } catch (const std::exception& error) {
    std::cerr << "[tollgate-test] cannot drop " << database_url << ": " << error.what() << '\n';
  }
}

scoped_pg_database::scoped_pg_database(std::string server_url)
    : server_url_(std::move(server_url))
    , url_(make_pg_database(server_url_)) {}

scoped_pg_database::~scoped_pg_database() {
  drop_pg_database(server_url_, url_);
}

} // namespace tollgate::test
