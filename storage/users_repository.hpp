#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <soci/soci.h>

#include "schemas/records.hpp"

namespace tollgate::storage {

/// Users and their accounts. Only the ledger repository changes a balance.
class users_repository {
public:
  explicit users_repository(soci::session& sql)
      : sql_(sql) {}

  /// Inserts the user and an account at balance 0.
  void create(const schemas::user_record& user);
  std::optional<schemas::user_record> find(const std::string& id);
  bool email_taken(const std::string& email, const std::string& except_id = {});
  /// Oldest first.
  std::vector<schemas::user_record> list(int64_t limit, int64_t offset);
  int64_t count();
  /// Stores name, email, suspension and limits.
  void update(const schemas::user_record& user);

private:
  soci::session& sql_;
};

} // namespace tollgate::storage
