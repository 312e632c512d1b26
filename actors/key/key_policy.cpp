#include "actors/key/key_policy.hpp"

#include <algorithm>
#include <string>

namespace tollgate {

key_policy::key_policy(const schemas::key_record& key)
    : ips_(key.allowed_ips) {}

std::optional<schemas::api_error> key_policy::admit(const schemas::key_record& key, int64_t now,
                                                    std::string_view client_ip) const {
  if (key.revoked_at != 0)
    return schemas::unauthenticated("this API key has been revoked", "key_revoked");
  if (key.expires_at != 0 && key.expires_at <= now)
    return schemas::unauthenticated("this API key has expired", "key_expired");
  if (!ips_.allows(client_ip))
    return schemas::forbidden("this API key may not be used from " + std::string(client_ip),
                              "ip_not_allowed");
  return std::nullopt;
}

std::optional<schemas::api_error> key_policy::allows_model(const schemas::key_record& key,
                                                           std::string_view model) const {
  if (key.models.empty() ||
      std::find(key.models.begin(), key.models.end(), model) != key.models.end())
    return std::nullopt;
  return schemas::forbidden("this API key may not use the model '" + std::string(model) + "'",
                            "model_not_allowed");
}

} // namespace tollgate
