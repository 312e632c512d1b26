#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <soci/soci.h>

#include "schemas/records.hpp"

namespace tollgate::storage {

/// API keys, stored by hash; the key itself is never stored.
class keys_repository {
public:
  explicit keys_repository(soci::session& sql)
      : sql_(sql) {}

  void create(const schemas::key_record& key);
  std::optional<schemas::key_record> find(const std::string& id);
  std::optional<schemas::key_record> find_by_hash(const std::string& key_hash);
  /// Newest first.
  std::vector<schemas::key_record> list_for_user(const std::string& user_id);
  /// Marks the key revoked at `now` unless it already is; returns whether it changed.
  bool revoke(const std::string& id, int64_t now);

private:
  std::optional<schemas::key_record> find_where(const std::string& clause,
                                                const std::string& value);
  soci::session& sql_;
};

} // namespace tollgate::storage
