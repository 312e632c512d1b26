#include "storage/usage_repository.hpp"

namespace tollgate::storage {

struct usage_repository::prepared {
  explicit prepared(soci::session& sql)
      : insert((sql.prepare << "INSERT INTO usage_records (request_id, user_id, key_id, model, "
                               "deployment, prompt_tokens, completion_tokens, cost, latency_ms, "
                               "ttft_ms, status, created_at, attempts, attempt_log) VALUES (:r, "
                               ":u, :k, :m, :d, :p, :c, :cost, :l, :t, :s, :at, :n, :log) "
                               "ON CONFLICT (request_id) DO NOTHING",
                soci::use(r.request_id), soci::use(r.user_id), soci::use(r.key_id),
                soci::use(r.model), soci::use(r.deployment), soci::use(r.prompt_tokens),
                soci::use(r.completion_tokens), soci::use(r.cost), soci::use(r.latency_ms),
                soci::use(r.ttft_ms), soci::use(r.status), soci::use(r.created_at),
                soci::use(r.attempts), soci::use(r.attempt_log))) {}

  usage_record r; ///< The record being written (bound by `use`).
  soci::statement insert;
};

usage_repository::usage_repository(soci::session& sql)
    : sql_(sql) {}

usage_repository::~usage_repository() = default;

bool usage_repository::append(const usage_record& record) {
  if (!prepared_)
    prepared_ = std::make_unique<prepared>(sql_);
  prepared_->r = record;
  prepared_->insert.execute(true);
  return prepared_->insert.get_affected_rows() > 0;
}

int64_t usage_repository::count_for_user(const std::string& user_id) {
  long long n = 0;
  sql_ << "SELECT COUNT(*) FROM usage_records WHERE user_id = :u", soci::use(user_id),
      soci::into(n);
  return n;
}

} // namespace tollgate::storage
