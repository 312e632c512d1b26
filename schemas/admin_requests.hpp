#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "schemas/records.hpp"
#include "schemas/result.hpp"

// Bodies of the admin API, parsed and validated before anything is touched: every function
// either returns a complete value or the 400 that names the offending field.

namespace tollgate::schemas {

struct new_user {
  std::string name;
  std::string email;
  rate_limits limits;

  template <class Inspector>
  friend auto inspect(Inspector& f, new_user& x) {
    return f(x.name, x.email, x.limits);
  }
};

/// A partial update: empty strings and -1 mean "leave as it is"; a limit of 0 clears it.
struct user_patch {
  std::string name;
  std::string email;
  int suspended = -1; ///< -1 unchanged, 0 active, 1 suspended.
  rate_limits limits{-1, -1, -1};

  /// Applies the patch to a copy of `user`.
  user_record apply(user_record user) const;

  template <class Inspector>
  friend auto inspect(Inspector& f, user_patch& x) {
    return f(x.name, x.email, x.suspended, x.limits);
  }
};

/// Adds (positive) or removes (negative) credits; micro-credits.
struct credit_request {
  int64_t amount = 0;
  std::string reason;

  template <class Inspector>
  friend auto inspect(Inspector& f, credit_request& x) {
    return f(x.amount, x.reason);
  }
};

struct new_key {
  std::string name;
  std::string environment = "live";
  rate_limits limits;
  std::vector<std::string> models;
  std::vector<std::string> allowed_ips;
  int64_t expires_at = 0;

  template <class Inspector>
  friend auto inspect(Inspector& f, new_key& x) {
    return f(x.name, x.environment, x.limits, x.models, x.allowed_ips, x.expires_at);
  }
};

/// Largest single credit change: 10^9 credits, far from int64 overflow when summed.
constexpr int64_t max_credit_amount = 1'000'000'000'000'000;

result<new_user> parse_new_user(std::string_view body);
result<user_patch> parse_user_patch(std::string_view body);
result<credit_request> parse_credit_request(std::string_view body);
/// `now` is unix seconds; an expiry must lie in the future.
result<new_key> parse_new_key(std::string_view body, int64_t now);

/// Validates an Idempotency-Key header value (printable ASCII, 1..255 characters).
std::optional<api_error> check_idempotency_key(std::string_view key);

} // namespace tollgate::schemas
