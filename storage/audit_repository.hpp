#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <soci/soci.h>

namespace tollgate::storage {

/// One admin action: who did what to which entity, with the state before and after.
struct audit_record {
  int64_t id = 0;
  std::string actor;
  std::string action;
  std::string target;
  std::string before_json; ///< Empty when the entity did not exist before.
  std::string after_json;
  std::string request_id;
  int64_t created_at = 0;

  template <class Inspector>
  friend auto inspect(Inspector& f, audit_record& x) {
    return f(x.id, x.actor, x.action, x.target, x.before_json, x.after_json, x.request_id,
             x.created_at);
  }
};

/// The audit log; written in the same transaction as the change it records.
class audit_repository {
public:
  explicit audit_repository(soci::session& sql)
      : sql_(sql) {}

  void append(const audit_record& record);
  /// Newest first; `before_id` 0 starts at the newest; `target` empty means any.
  std::vector<audit_record> list(int64_t limit, int64_t before_id, const std::string& target);

private:
  soci::session& sql_;
};

/// Small named values the gateway keeps about itself (such as the admin key's hash).
class settings_repository {
public:
  explicit settings_repository(soci::session& sql)
      : sql_(sql) {}

  std::string get(const std::string& name);
  void put(const std::string& name, const std::string& value);

private:
  soci::session& sql_;
};

} // namespace tollgate::storage
