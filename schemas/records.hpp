#pragma once

#include <cstdint>
#include <string>
#include <vector>

// Stored entities as they travel between storage, actors and the HTTP layer. Times are unix
// seconds; money is integer micro-credits; a limit of 0 means "no limit".

namespace tollgate::schemas {

/// Requests and tokens per minute, requests per day; 0 means not limited.
struct rate_limits {
  int64_t rpm = 0;
  int64_t tpm = 0;
  int64_t rpd = 0;

  friend bool operator==(const rate_limits&, const rate_limits&) = default;

  template <class Inspector>
  friend auto inspect(Inspector& f, rate_limits& x) {
    return f(x.rpm, x.tpm, x.rpd);
  }
};

struct user_record {
  std::string id;
  std::string name;
  std::string email;
  bool suspended = false;
  rate_limits limits;
  int64_t balance = 0; ///< Committed balance in micro-credits.
  int64_t created_at = 0;
  int64_t updated_at = 0;

  template <class Inspector>
  friend auto inspect(Inspector& f, user_record& x) {
    return f(x.id, x.name, x.email, x.suspended, x.limits, x.balance, x.created_at, x.updated_at);
  }
};

struct key_record {
  std::string id;
  std::string user_id;
  std::string name;
  std::string environment; ///< "live" or "test".
  std::string prefix;      ///< Shown to humans; the key itself is never stored.
  std::string key_hash;    ///< Hex SHA-256 of the key.
  rate_limits limits;
  std::vector<std::string> models;      ///< Allowed models; empty allows all.
  std::vector<std::string> allowed_ips; ///< Addresses or CIDR blocks; empty allows all.
  int64_t expires_at = 0;               ///< 0: never.
  int64_t revoked_at = 0;               ///< 0: active.
  int64_t created_at = 0;

  template <class Inspector>
  friend auto inspect(Inspector& f, key_record& x) {
    return f(x.id, x.user_id, x.name, x.environment, x.prefix, x.key_hash, x.limits, x.models,
             x.allowed_ips, x.expires_at, x.revoked_at, x.created_at);
  }
};

/// One append-only balance change.
struct ledger_entry {
  int64_t id = 0;
  std::string user_id;
  std::string request_id; ///< Unique: replays of the same request find this entry.
  std::string kind;       ///< "credit" (admin top-up or removal) or "charge".
  int64_t amount = 0;     ///< Signed change of the balance.
  int64_t balance_after = 0;
  std::string reason;
  std::string actor; ///< Who caused it: "admin", or the key id for charges.
  int64_t created_at = 0;

  template <class Inspector>
  friend auto inspect(Inspector& f, ledger_entry& x) {
    return f(x.id, x.user_id, x.request_id, x.kind, x.amount, x.balance_after, x.reason, x.actor,
             x.created_at);
  }
};

} // namespace tollgate::schemas
