#pragma once

#include <nlohmann/json.hpp>

#include "schemas/records.hpp"

// How stored entities appear in API answers. Secrets (key hashes) never appear.

namespace tollgate::schemas {

/// Limits as an object whose unset limits are null.
nlohmann::json limits_json(const rate_limits& limits);
nlohmann::json user_json(const user_record& user);
nlohmann::json key_json(const key_record& key);
nlohmann::json ledger_json(const ledger_entry& entry);

} // namespace tollgate::schemas
