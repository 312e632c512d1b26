#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <soci/soci.h>

#include "schemas/records.hpp"
#include "tests/support/gateway_process.hpp"
#include "tests/support/http_client.hpp"
#include "tests/support/live_services.hpp"

// Shared by the end-to-end suites: each test case runs the real binary on a store of its own
// and checks the store itself, not only what the gateway says about it.

namespace tollgate::test::integration {

/// Which store the gateway under test runs on.
enum class store { sqlite, postgresql };

/// A started gateway on a fresh database: a SQLite file in its work dir, or a new PostgreSQL
/// database on the server of TOLLGATE_TEST_PG_URL, dropped after the gateway has stopped.
class test_gateway {
public:
  explicit test_gateway(store kind, gateway_options options = {});

  gateway_process& process() { return gateway_; }
  std::string base_url() const { return gateway_.base_url(); }

  /// A client that sends the admin key.
  http_client admin() const;
  /// A client that sends `key`.
  http_client consumer(const std::string& key) const;
  /// A client that sends no credentials.
  http_client anonymous() const { return gateway_.client(); }

  /// A session on the gateway's store, opened beside the running gateway.
  std::unique_ptr<soci::session> open_db() const;

private:
  std::unique_ptr<scoped_pg_database> pg_; // outlives gateway_: dropped once it has stopped
  gateway_process gateway_;
};

/// Row counts and money totals of the tables the admin API writes.
struct db_snapshot {
  int64_t users = 0;
  int64_t accounts = 0;
  int64_t api_keys = 0;
  int64_t revoked_keys = 0;
  int64_t ledger_entries = 0;
  int64_t audit_rows = 0;
  int64_t balance_total = 0;
  int64_t ledger_total = 0;
  int64_t suspended_users = 0;
  int64_t last_user_update = 0;
  /// Every user's and key's stored fields, one line per row, ordered by id.
  std::string user_rows;
  std::string key_rows;

  friend bool operator==(const db_snapshot&, const db_snapshot&) = default;
  friend std::ostream& operator<<(std::ostream& out, const db_snapshot& s);
};

db_snapshot take_snapshot(soci::session& sql);

/// The user's ledger entries, oldest first, read from the store.
std::vector<schemas::ledger_entry> ledger_of(soci::session& sql, const std::string& user_id);

/// The user's stored balance; fails the test if the user has no account row.
int64_t stored_balance(soci::session& sql, const std::string& user_id);

/// Checks I1 for one user in the store: balance == sum of entries, every balance_after is the
/// running sum up to it and never negative. Returns the stored balance.
int64_t check_ledger_invariants(soci::session& sql, const std::string& user_id);

/// `body` as JSON text.
std::string dump(const nlohmann::json& body);

/// POST /admin/users; checks the 201 and returns the user.
nlohmann::json create_user(http_client& admin, const std::string& name, const std::string& email);

/// POST /admin/users/{id}/credits (with an Idempotency-Key if `idempotency_key` is set).
http_response post_credits(http_client& admin, const std::string& user_id, int64_t amount,
                           const std::string& reason = {}, const std::string& idempotency_key = {});

/// post_credits that must answer 201; returns its body.
nlohmann::json add_credits(http_client& admin, const std::string& user_id, int64_t amount,
                           const std::string& reason = {});

/// POST /admin/users/{id}/keys with `body`; checks the 201 and returns it (with "key").
nlohmann::json create_key(http_client& admin, const std::string& user_id,
                          const nlohmann::json& body = nlohmann::json::object());

/// Checks that `response` is an OpenAI-shaped error with exactly these values and carries an
/// x-request-id. `param` nullopt: param must be null. `what` names the case in failures.
void expect_error(const http_response& response, long status, const std::string& type,
                  const std::string& code, const std::optional<std::string>& param,
                  const std::string& what);

/// Unix seconds now.
int64_t unix_now();

} // namespace tollgate::test::integration
