#include "tests/integration/harness.hpp"

#include <chrono>

#include <boost/test/unit_test.hpp>

#include "config/config.hpp"
#include "storage/database.hpp"
#include "storage/ledger_repository.hpp"

namespace tollgate::test::integration {

namespace {

gateway_options with_database(store kind, gateway_options options,
                              const std::unique_ptr<scoped_pg_database>& pg) {
  if (kind == store::postgresql)
    options.database_url = pg->url();
  return options;
}

std::unique_ptr<scoped_pg_database> make_database(store kind) {
  if (kind == store::sqlite)
    return nullptr;
  return std::make_unique<scoped_pg_database>(require_pg_url());
}

int64_t count_of(soci::session& sql, const std::string& query) {
  long long value = 0;
  sql << query, soci::into(value);
  return value;
}

/// The single text column of every row of `query`, one line each.
std::string rows_of(soci::session& sql, const std::string& query) {
  std::string out;
  soci::rowset<std::string> rows = (sql.prepare << query);
  for (const auto& row : rows)
    out += row + "\n";
  return out;
}

} // namespace

test_gateway::test_gateway(store kind, gateway_options options)
    : pg_(make_database(kind))
    , gateway_(with_database(kind, std::move(options), pg_)) {
  gateway_.start();
}

http_client test_gateway::admin() const {
  auto client = gateway_.client();
  client.bearer(gateway_.admin_key());
  return client;
}

http_client test_gateway::consumer(const std::string& key) const {
  auto client = gateway_.client();
  client.bearer(key);
  return client;
}

std::unique_ptr<soci::session> test_gateway::open_db() const {
  storage::database db(config::parse_database_url(gateway_.database_url()));
  return db.open();
}

std::ostream& operator<<(std::ostream& out, const db_snapshot& s) {
  return out << "{users " << s.users << ", accounts " << s.accounts << ", api_keys " << s.api_keys
             << ", revoked_keys " << s.revoked_keys << ", ledger_entries " << s.ledger_entries
             << ", audit_rows " << s.audit_rows << ", balance_total " << s.balance_total
             << ", ledger_total " << s.ledger_total << ", suspended_users " << s.suspended_users
             << ", last_user_update " << s.last_user_update << "}\nusers:\n"
             << s.user_rows << "keys:\n"
             << s.key_rows;
}

db_snapshot take_snapshot(soci::session& sql) {
  db_snapshot s;
  s.users = count_of(sql, "SELECT COUNT(*) FROM users");
  s.accounts = count_of(sql, "SELECT COUNT(*) FROM accounts");
  s.api_keys = count_of(sql, "SELECT COUNT(*) FROM api_keys");
  s.revoked_keys = count_of(sql, "SELECT COUNT(*) FROM api_keys WHERE revoked_at <> 0");
  s.ledger_entries = count_of(sql, "SELECT COUNT(*) FROM ledger_entries");
  s.audit_rows = count_of(sql, "SELECT COUNT(*) FROM audit_log");
  s.balance_total = count_of(sql, "SELECT CAST(COALESCE(SUM(balance), 0) AS BIGINT) FROM accounts");
  s.ledger_total =
      count_of(sql, "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM ledger_entries");
  s.suspended_users = count_of(sql, "SELECT COUNT(*) FROM users WHERE suspended <> 0");
  s.last_user_update =
      count_of(sql, "SELECT CAST(COALESCE(MAX(updated_at), 0) AS BIGINT) FROM users");
  s.user_rows = rows_of(sql, "SELECT id || ' ' || name || ' ' || email || ' suspended ' || "
                             "suspended || ' limits ' || rpm || ' ' || tpm || ' ' || rpd || "
                             "' updated ' || updated_at FROM users ORDER BY id");
  s.key_rows = rows_of(sql, "SELECT id || ' ' || user_id || ' ' || name || ' ' || environment || "
                            "' limits ' || rpm || ' ' || tpm || ' ' || rpd || ' models ' || "
                            "models || ' ips ' || allowed_ips || ' expires ' || expires_at || "
                            "' revoked ' || revoked_at FROM api_keys ORDER BY id");
  return s;
}

std::vector<schemas::ledger_entry> ledger_of(soci::session& sql, const std::string& user_id) {
  auto newest_first = storage::ledger_repository(sql).list(user_id, 1'000'000, 0);
  return {newest_first.rbegin(), newest_first.rend()};
}

int64_t stored_balance(soci::session& sql, const std::string& user_id) {
  auto balance = storage::ledger_repository(sql).balance(user_id);
  BOOST_TEST_REQUIRE(balance.has_value(), "user " << user_id << " has no account row");
  return *balance;
}

int64_t check_ledger_invariants(soci::session& sql, const std::string& user_id) {
  auto balance = stored_balance(sql, user_id);
  BOOST_TEST(storage::ledger_repository(sql).sum(user_id) == balance);
  int64_t running = 0;
  for (const auto& entry : ledger_of(sql, user_id)) {
    BOOST_TEST_CONTEXT("ledger entry " << entry.id << " (" << entry.request_id << ")") {
      running += entry.amount;
      BOOST_TEST(entry.balance_after == running);
      BOOST_TEST(entry.balance_after >= 0);
      BOOST_TEST(entry.amount != 0);
    }
  }
  BOOST_TEST(running == balance);
  return balance;
}

std::string dump(const nlohmann::json& body) {
  return body.dump();
}

nlohmann::json create_user(http_client& admin, const std::string& name, const std::string& email) {
  auto response = admin.post("/admin/users", dump({{"name", name}, {"email", email}}));
  BOOST_TEST_REQUIRE(response.status == 201, "POST /admin/users: " << response.body);
  return response.json();
}

http_response post_credits(http_client& admin, const std::string& user_id, int64_t amount,
                           const std::string& reason, const std::string& idempotency_key) {
  nlohmann::json body{{"amount", amount}};
  if (!reason.empty())
    body["reason"] = reason;
  header_list headers;
  if (!idempotency_key.empty())
    headers.emplace_back("Idempotency-Key", idempotency_key);
  return admin.post("/admin/users/" + user_id + "/credits", dump(body), headers);
}

nlohmann::json add_credits(http_client& admin, const std::string& user_id, int64_t amount,
                           const std::string& reason) {
  auto response = post_credits(admin, user_id, amount, reason);
  BOOST_TEST_REQUIRE(response.status == 201,
                     "POST credits " << amount << " to " << user_id << ": " << response.body);
  return response.json();
}

nlohmann::json create_key(http_client& admin, const std::string& user_id,
                          const nlohmann::json& body) {
  auto response = admin.post("/admin/users/" + user_id + "/keys", dump(body));
  BOOST_TEST_REQUIRE(response.status == 201, "POST keys " << body.dump() << ": " << response.body);
  return response.json();
}

void expect_error(const http_response& response, long status, const std::string& type,
                  const std::string& code, const std::optional<std::string>& param,
                  const std::string& what) {
  BOOST_TEST_CONTEXT(what << " -> " << response.status << " " << response.body) {
    BOOST_TEST(response.status == status);
    BOOST_TEST(!response.header("x-request-id").empty());
    BOOST_TEST(response.header("content-type").starts_with("application/json"));
    // Not fatal: the remaining cases of a table still run when one answers wrongly.
    auto body = nlohmann::json::parse(response.body, nullptr, false);
    bool shaped =
        body.is_object() && body.size() == 1 && body.contains("error") && body["error"].is_object();
    BOOST_TEST(shaped, "not an OpenAI-shaped error");
    if (!shaped)
      return;
    const auto& error = body["error"];
    BOOST_TEST(error.size() == 4u);
    BOOST_TEST((error.value("message", "").size() > 0));
    BOOST_TEST(error.value("type", "") == type);
    BOOST_TEST(error.value("code", "") == code);
    BOOST_TEST(error.contains("param"));
    auto got = error.value("param", nlohmann::json());
    BOOST_TEST(got.dump() == (param ? nlohmann::json(*param) : nlohmann::json()).dump());
  }
}

int64_t unix_now() {
  using namespace std::chrono;
  return duration_cast<seconds>(system_clock::now().time_since_epoch()).count();
}

} // namespace tollgate::test::integration
