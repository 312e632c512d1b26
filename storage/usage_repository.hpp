#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <soci/soci.h>

#include "storage/pg_pipeline.hpp"

namespace tollgate::storage {

/// One metered request: who, which model and deployment, tokens, cost and timing.
struct usage_record {
  std::string request_id; ///< Empty: no record to write.
  std::string user_id;
  std::string key_id;
  std::string model;
  std::string deployment;
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  int64_t cost = 0;
  int64_t latency_ms = 0;
  int64_t ttft_ms = 0;
  std::string status; ///< "ok", "error", "client_gone", "upstream_error", ...
  int64_t created_at = 0;
  int64_t attempts = 0;    ///< Upstream attempts made (retries and fallbacks included).
  std::string attempt_log; ///< "deployment:outcome,..." one per attempt.

  template <class Inspector>
  friend auto inspect(Inspector& f, usage_record& x) {
    return f(x.request_id, x.user_id, x.key_id, x.model, x.deployment, x.prompt_tokens,
             x.completion_tokens, x.cost, x.latency_ms, x.ttft_ms, x.status, x.created_at,
             x.attempts, x.attempt_log);
  }
};

/// The insert of one usage record unless its request id has one, with a parameter per field
/// of usage_record, in the order `usage_fields` visits them.
constexpr const char* insert_usage_sql =
    "INSERT INTO usage_records (request_id, user_id, key_id, model, deployment, prompt_tokens, "
    "completion_tokens, cost, latency_ms, ttft_ms, status, created_at, attempts, attempt_log) "
    "VALUES (:r, :u, :k, :m, :d, :p, :c, :cost, :l, :t, :s, :at, :n, :log) "
    "ON CONFLICT (request_id) DO NOTHING";

/// Calls `f` on each field of `r` that insert_usage_sql writes, in the order of its
/// parameters.
template <class Record, class F>
void usage_fields(Record& r, F&& f) {
  f(r.request_id);
  f(r.user_id);
  f(r.key_id);
  f(r.model);
  f(r.deployment);
  f(r.prompt_tokens);
  f(r.completion_tokens);
  f(r.cost);
  f(r.latency_ms);
  f(r.ttft_ms);
  f(r.status);
  f(r.created_at);
  f(r.attempts);
  f(r.attempt_log);
}

/// The parameters of insert_usage_sql with the values of `r`.
void add_usage(pg_params& params, const usage_record& r);

/// usage_records: one row per metered request, keyed by its request id.
/// The insert of `append` is prepared on first use and kept, like the ledger's.
class usage_repository {
public:
  explicit usage_repository(soci::session& sql);
  ~usage_repository();
  usage_repository(const usage_repository&) = delete;
  usage_repository& operator=(const usage_repository&) = delete;

  /// Writes the record unless one with its request id exists; returns whether it wrote.
  bool append(const usage_record& record);
  /// PostgreSQL: queues what `append` does in `pipe`, its answer unread.
  void send_append(pg_pipeline& pipe, const usage_record& record);
  int64_t count_for_user(const std::string& user_id);

private:
  struct prepared;

  soci::session& sql_;
  std::unique_ptr<prepared> prepared_;
  std::string pipelined_insert_; ///< The name of the insert on PostgreSQL, once prepared.
};

} // namespace tollgate::storage
