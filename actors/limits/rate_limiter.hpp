#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "schemas/records.hpp"

namespace tollgate {

using rate_clock = std::chrono::steady_clock;

/// "limit per period" as a generic cell rate (GCRA): a burst of up to `limit`, refilled
/// evenly over the period. Two numbers of state, exact for any cost per call.
class rate_window {
public:
  rate_window() = default;
  rate_window(int64_t limit, std::chrono::nanoseconds period);

  bool limited() const noexcept { return limit_ > 0; }
  int64_t limit() const noexcept { return limit_; }
  /// Whether `cost` fits now.
  bool fits(int64_t cost, rate_clock::time_point now) const;
  /// Takes `cost` unconditionally (a later correction may take more than is left).
  void take(int64_t cost, rate_clock::time_point now);
  /// What is left now, 0..limit.
  int64_t remaining(rate_clock::time_point now) const;
  /// Time until the window is full again.
  std::chrono::nanoseconds reset_in(rate_clock::time_point now) const;
  /// Time until `cost` would fit.
  std::chrono::nanoseconds wait_for(int64_t cost, rate_clock::time_point now) const;

private:
  int64_t limit_ = 0;
  int64_t period_ns_ = 0;
  int64_t tat_ns_ = 0; ///< Theoretical arrival time: when the window is full again.
};

/// Header values of one call's rate windows, in OpenAI's names.
struct rate_headers {
  std::vector<std::string> fields; ///< name, value, name, value, ...

  template <class Inspector>
  friend auto inspect(Inspector& f, rate_headers& x) {
    return f(x.fields);
  }
};

/// A key's (or user's) windows: requests per minute, tokens per minute, requests per day.
class rate_limiter {
public:
  rate_limiter() = default;
  explicit rate_limiter(const schemas::rate_limits& limits);

  struct decision {
    bool admitted = true;
    std::string reason; ///< Which window refused, for the error message.
    std::chrono::nanoseconds retry_after{0};
  };

  /// Admits one request of `tokens` estimated tokens if every window has room, taking from
  /// all of them; otherwise takes nothing.
  decision admit(int64_t tokens, rate_clock::time_point now);
  /// Corrects the token window once the real count is known (positive: more were used).
  void correct_tokens(int64_t delta, rate_clock::time_point now);
  /// OpenAI's x-ratelimit-* headers for the minute windows that are limited.
  rate_headers headers(rate_clock::time_point now) const;

private:
  rate_window rpm_;
  rate_window tpm_;
  rate_window rpd_;
};

/// A duration as OpenAI writes reset times: "20ms", "1s", "6m0s", "1h2m3s".
std::string format_reset(std::chrono::nanoseconds d);

} // namespace tollgate
