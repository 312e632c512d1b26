#include "storage/audit_repository.hpp"

#include <cstdint>

namespace tollgate::storage {

void audit_repository::append(const audit_record& r) {
  soci::indicator before_ind = r.before_json.empty() ? soci::i_null : soci::i_ok;
  soci::indicator after_ind = r.after_json.empty() ? soci::i_null : soci::i_ok;
  sql_ << "INSERT INTO audit_log (actor, action, target, before_json, after_json, request_id, "
          "created_at) VALUES (:actor, :action, :target, :before, :after, :r, :t)",
      soci::use(r.actor), soci::use(r.action), soci::use(r.target),
      soci::use(r.before_json, before_ind), soci::use(r.after_json, after_ind),
      soci::use(r.request_id), soci::use(r.created_at);
}

std::vector<audit_record> audit_repository::list(int64_t limit, int64_t before_id,
                                                 const std::string& target) {
  std::vector<audit_record> out;
  audit_record r;
  soci::indicator before_ind = soci::i_ok;
  soci::indicator after_ind = soci::i_ok;
  int64_t before = before_id > 0 ? before_id : INT64_MAX;
  soci::statement st =
      (sql_.prepare << "SELECT id, actor, action, target, before_json, "
                       "after_json, request_id, created_at FROM audit_log "
                       "WHERE id < :b AND (:t1 = '' OR target = :t2) "
                       "ORDER BY id DESC LIMIT :l",
       soci::into(r.id), soci::into(r.actor), soci::into(r.action), soci::into(r.target),
       soci::into(r.before_json, before_ind), soci::into(r.after_json, after_ind),
       soci::into(r.request_id), soci::into(r.created_at), soci::use(before), soci::use(target),
       soci::use(target), soci::use(limit));
  st.execute(false);
  while (st.fetch()) {
    auto row = r;
    if (before_ind == soci::i_null)
      row.before_json.clear();
    if (after_ind == soci::i_null)
      row.after_json.clear();
    out.push_back(std::move(row));
  }
  return out;
}

std::string settings_repository::get(const std::string& name) {
  std::string value;
  sql_ << "SELECT value FROM settings WHERE name = :n", soci::use(name), soci::into(value);
  return sql_.got_data() ? value : std::string();
}

void settings_repository::put(const std::string& name, const std::string& value) {
  sql_ << "INSERT INTO settings (name, value) VALUES (:n, :v) "
          "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
      soci::use(name), soci::use(value);
}

} // namespace tollgate::storage
