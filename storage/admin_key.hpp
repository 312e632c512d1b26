#pragma once

#include <string>

#include <soci/soci.h>

namespace tollgate::storage {

/// How the admin key was settled at start.
struct admin_key_setup {
  std::string key_hash; ///< Hex SHA-256; the only form the gateway keeps.
  std::string notice;   ///< One line for the operator: where the key is.
};

/// Takes `env_key` (TOLLGATE_ADMIN_KEY) if given. Otherwise uses the stored hash, or on first
/// start generates a key, stores its hash, and writes the key to `<data_dir>/admin.key` with
/// mode 0600.
admin_key_setup ensure_admin_key(soci::session& sql, const std::string& data_dir,
                                 const std::string& env_key);

} // namespace tollgate::storage
