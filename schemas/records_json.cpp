#include "schemas/records_json.hpp"

namespace tollgate::schemas {

namespace {

nlohmann::json optional_time(int64_t seconds) {
  return seconds == 0 ? nlohmann::json() : nlohmann::json(seconds);
}

nlohmann::json optional_limit(int64_t limit) {
  return limit == 0 ? nlohmann::json() : nlohmann::json(limit);
}

} // namespace

nlohmann::json limits_json(const rate_limits& limits) {
  return {{"rpm", optional_limit(limits.rpm)},
          {"tpm", optional_limit(limits.tpm)},
          {"rpd", optional_limit(limits.rpd)}};
}

nlohmann::json user_json(const user_record& user) {
  return {{"id", user.id},
          {"object", "user"},
          {"name", user.name},
          {"email", user.email},
          {"balance", user.balance},
          {"suspended", user.suspended},
          {"limits", limits_json(user.limits)},
          {"created_at", user.created_at},
          {"updated_at", user.updated_at}};
}

nlohmann::json key_json(const key_record& key) {
  return {{"id", key.id},
          {"object", "api_key"},
          {"user_id", key.user_id},
          {"name", key.name},
          {"environment", key.environment},
          {"prefix", key.prefix},
          {"limits", limits_json(key.limits)},
          {"models", key.models},
          {"allowed_ips", key.allowed_ips},
          {"expires_at", optional_time(key.expires_at)},
          {"revoked_at", optional_time(key.revoked_at)},
          {"created_at", key.created_at}};
}

nlohmann::json ledger_json(const ledger_entry& entry) {
  return {{"id", entry.id},
          {"object", "ledger_entry"},
          {"user_id", entry.user_id},
          {"request_id", entry.request_id},
          {"kind", entry.kind},
          {"amount", entry.amount},
          {"balance_after", entry.balance_after},
          {"reason", entry.reason},
          {"actor", entry.actor},
          {"created_at", entry.created_at}};
}

} // namespace tollgate::schemas
