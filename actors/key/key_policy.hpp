#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "schemas/api_error.hpp"
#include "schemas/ip_allowlist.hpp"
#include "schemas/records.hpp"

namespace tollgate {

/// A key's standing rules, checked on every call before anything is spent.
class key_policy {
public:
  explicit key_policy(const schemas::key_record& key);

  /// Why the key may not be used now from `client_ip`, or nothing if it may.
  std::optional<schemas::api_error> admit(const schemas::key_record& key, int64_t now,
                                          std::string_view client_ip) const;
  /// Why the key may not use `model`, or nothing if it may.
  std::optional<schemas::api_error> allows_model(const schemas::key_record& key,
                                                 std::string_view model) const;

private:
  schemas::ip_allowlist ips_;
};

} // namespace tollgate
