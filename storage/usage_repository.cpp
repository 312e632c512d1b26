#include "storage/usage_repository.hpp"

#include "storage/database.hpp"

namespace tollgate::storage {

void bind_usage(soci::statement& st, usage_record& r) {
  st.exchange(soci::use(r.request_id));
  st.exchange(soci::use(r.user_id));
  st.exchange(soci::use(r.key_id));
  st.exchange(soci::use(r.model));
  st.exchange(soci::use(r.deployment));
  st.exchange(soci::use(r.prompt_tokens));
  st.exchange(soci::use(r.completion_tokens));
  st.exchange(soci::use(r.cost));
  st.exchange(soci::use(r.latency_ms));
  st.exchange(soci::use(r.ttft_ms));
  st.exchange(soci::use(r.status));
  st.exchange(soci::use(r.created_at));
  st.exchange(soci::use(r.attempts));
  st.exchange(soci::use(r.attempt_log));
}

struct usage_repository::prepared {
  explicit prepared(soci::session& sql)
      : insert(sql) {
    bind_usage(insert, r);
    prepare_bound(insert, insert_usage_sql);
  }

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
