#include "storage/usage_repository.hpp"

namespace tollgate::storage {

bool usage_repository::append(const usage_record& r) {
  soci::statement st =
      (sql_.prepare << "INSERT INTO usage_records (request_id, user_id, key_id, model, deployment, "
                       "prompt_tokens, completion_tokens, cost, latency_ms, ttft_ms, status, "
                       "created_at, attempts, attempt_log) VALUES (:r, :u, :k, :m, :d, :p, :c, "
                       ":cost, :l, :t, :s, :at, :n, :log) ON CONFLICT (request_id) DO NOTHING",
       soci::use(r.request_id), soci::use(r.user_id), soci::use(r.key_id), soci::use(r.model),
       soci::use(r.deployment), soci::use(r.prompt_tokens), soci::use(r.completion_tokens),
       soci::use(r.cost), soci::use(r.latency_ms), soci::use(r.ttft_ms), soci::use(r.status),
       soci::use(r.created_at), soci::use(r.attempts), soci::use(r.attempt_log));
  st.execute(true);
  return st.get_affected_rows() > 0;
}

int64_t usage_repository::count_for_user(const std::string& user_id) {
  long long n = 0;
  sql_ << "SELECT COUNT(*) FROM usage_records WHERE user_id = :u", soci::use(user_id),
      soci::into(n);
  return n;
}

} // namespace tollgate::storage
