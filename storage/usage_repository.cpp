#include "storage/usage_repository.hpp"

#include "storage/database.hpp"

namespace tollgate::storage {

namespace {

/// Binds the parameters of insert_usage_sql to the fields of `r`.
void bind_usage(soci::statement& st, usage_record& r) {
  usage_fields(r, [&](auto& field) { st.exchange(soci::use(field)); });
}

} // namespace

void add_usage(pg_params& params, const usage_record& r) {
  usage_fields(r, [&](const auto& field) { params.add(field); });
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

void usage_repository::send_append(pg_pipeline& pipe, const usage_record& record) {
  if (pipelined_insert_.empty())
    pipe.prepare(pipelined_insert_, insert_usage_sql);
  pg_params params;
  add_usage(params, record);
  pipe.send(pipelined_insert_, params);
}

int64_t usage_repository::count_for_user(const std::string& user_id) {
  long long n = 0;
  sql_ << "SELECT COUNT(*) FROM usage_records WHERE user_id = :u", soci::use(user_id),
      soci::into(n);
  return n;
}

} // namespace tollgate::storage
