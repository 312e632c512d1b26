#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
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

// Metered proxy suites: a gateway in front of the mock upstream.

/// Config for a gateway in front of a mock upstream at `mock_base_url`: model `gpt-mock` on
/// provider `mock` (deployment "mock/mock-1", 1 micro-credit per prompt token, 2 per
/// completion token) and the free `echo-1` on the built-in echo provider.
nlohmann::json mock_gateway_config(const std::string& mock_base_url);

/// Options that run the gateway with `config` as its config file.
gateway_options options_with_config(const nlohmann::json& config);

/// A user with `credits` and one key made from `key_body`.
struct metered_user {
  std::string id;
  std::string key;
  std::string key_id;
};

metered_user make_metered_user(http_client& admin, const std::string& email, int64_t credits,
                               const nlohmann::json& key_body = nlohmann::json::object());

/// A chat completion body with one user message; max_tokens 0 leaves it out. `include_usage`
/// adds stream_options.include_usage: true.
nlohmann::json chat_body(const std::string& model, const std::string& prompt,
                         int64_t max_tokens = 0, bool stream = false, bool include_usage = false);

/// GET /v1/me with `key`; must answer 200.
nlohmann::json me_of(const test_gateway& gw, const std::string& key);

/// The `data:` payloads of an SSE body, in order ("[DONE]" included as it is).
std::vector<std::string> sse_data(const std::string& body);

/// One row of usage_records.
struct usage_row {
  std::string request_id;
  std::string user_id;
  std::string key_id;
  std::string model;
  std::string deployment;
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  int64_t cost = 0;
  int64_t latency_ms = 0;
  int64_t ttft_ms = 0;
  std::string status;
};

/// The user's usage rows, oldest first.
std::vector<usage_row> usage_of(soci::session& sql, const std::string& user_id);

/// The usage row of `request_id`, if there is one.
std::optional<usage_row> usage_row_of(soci::session& sql, const std::string& request_id);

/// Calls `done` every 25 ms until it returns true or `timeout` has passed; returns whether it
/// did. Keeps every wait of a test bounded.
bool wait_until(std::chrono::milliseconds timeout, const std::function<bool()>& done);

/// What a client of a stream had received (when it walked away, or at the end).
struct abandoned_stream {
  long status = 0;
  std::string request_id; ///< The response's x-request-id.
  std::string received;   ///< Body bytes read.
  std::size_t events = 0; ///< Complete SSE events among them.
};

/// How a test's client reads a stream.
struct stream_client {
  /// Called after each piece read with all read so far; returning false leaves at once
  /// (closing the connection).
  std::function<bool(const abandoned_stream&)> on_piece;
  /// The socket's receive buffer in bytes (SO_RCVBUF), small for a client that is quick to
  /// stop the gateway's writes when it stops reading; 0: the system's.
  int receive_buffer = 0;
};

/// POSTs `body` to `base_url` + `path` with `key` and reads the streamed answer as `client`
/// says, until it ends, the client leaves, or `timeout` passes.
abandoned_stream read_stream(const std::string& base_url, const std::string& path,
                             const std::string& key, const std::string& body,
                             const stream_client& client, std::chrono::milliseconds timeout);

/// read_stream that leaves once `events` SSE events have arrived.
abandoned_stream read_stream_then_leave(const std::string& base_url, const std::string& path,
                                        const std::string& key, const std::string& body,
                                        std::size_t events, std::chrono::milliseconds timeout);

} // namespace tollgate::test::integration

#include <map>

namespace tollgate::test::integration {

// Resilience suites: several deployments per model, breakers, metrics.

/// Config with providers `mock-a` and `mock-b` (kind openai) at `a_url` and `b_url`, and
/// model `gpt-mock` (1 micro-credit per prompt token, 2 per completion token) under the
/// `priority` strategy on deployments "mock-a/mock-1" (priority 1) and "mock-b/mock-1"
/// (priority 2). `a_extra` and `b_extra` are merged into the deployments' objects (e.g.
/// "breaker", "timeouts"); routing backs off briefly (10 to 50 ms) so tests stay quick.
nlohmann::json failover_config(const std::string& a_url, const std::string& b_url,
                               const nlohmann::json& a_extra = nlohmann::json::object(),
                               const nlohmann::json& b_extra = nlohmann::json::object());

/// A provider base URL on a loopback port nothing listens on.
std::string closed_port_url();

/// The entry of `deployment` in GET /admin/providers; fails the test if it is not listed.
nlohmann::json provider_status(const test_gateway& gw, const std::string& deployment);

/// The `attempts` and `attempt_log` columns of a usage record.
struct attempt_record {
  int64_t attempts = 0;
  std::string log;
};

/// The attempts of `request_id`'s usage record, if there is one.
std::optional<attempt_record> attempts_of(soci::session& sql, const std::string& request_id);

/// What a client read from a streamed chat completion.
struct stream_summary {
  std::string text;                    ///< Concatenated delta contents.
  std::size_t content_events = 0;      ///< Events that carried content.
  std::optional<nlohmann::json> error; ///< The `error` object of an error event.
  bool done = false;                   ///< Ended with `data: [DONE]`.
  std::size_t keepalives = 0;          ///< `: keep-alive` comments.
  std::vector<std::string> bad_events; ///< `data:` payloads that are not JSON.
};

stream_summary summarize_stream(const std::string& body);

/// Whitespace-separated words of `text`: the mock answers one word per token.
std::size_t word_count(const std::string& text);

/// One sample of a Prometheus text exposition.
struct prometheus_sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

/// A parsed Prometheus text exposition (format 0.0.4).
struct prometheus_text {
  std::map<std::string, std::string> types; ///< Family name -> counter, gauge, histogram...
  std::map<std::string, std::string> help;  ///< Family name -> help text.
  std::vector<prometheus_sample> samples;
  /// Every line that breaks the format, and every sample without a TYPE for its family.
  std::vector<std::string> errors;

  /// The sample `name` with exactly `labels`, if present.
  std::optional<double> value(const std::string& name,
                              const std::map<std::string, std::string>& labels = {}) const;
  /// The sum of the samples named `name` whose labels include `match`.
  double sum(const std::string& name, const std::map<std::string, std::string>& match = {}) const;
};

/// Parses `text`, recording format errors instead of failing.
prometheus_text parse_prometheus(const std::string& text);

/// GET /metrics (no credentials); checks the 200 and the text content type, then parses it.
prometheus_text scrape_metrics(const test_gateway& gw);

} // namespace tollgate::test::integration
