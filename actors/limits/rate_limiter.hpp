#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
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

  /// How far ahead of `now` the window is used (what it must refill before it is full).
  std::chrono::nanoseconds used_ahead(rate_clock::time_point now) const { return reset_in(now); }
  /// Takes over a window used `ahead` beyond `now` (from another node's snapshot); never
  /// more than a full window.
  void restore(std::chrono::nanoseconds ahead, rate_clock::time_point now);

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

/// A limiter's windows as another node can take them over: how far ahead each was used,
/// on the wall clock (steady clocks differ between machines). Text: "rpm tpm rpd at_ms".
struct rate_snapshot {
  int64_t rpm_ahead_ms = 0;
  int64_t tpm_ahead_ms = 0;
  int64_t rpd_ahead_ms = 0;
  int64_t taken_at_ms = 0; ///< Unix milliseconds when it was taken.

  std::string to_text() const;
  /// Nothing if `text` is not a snapshot.
  static std::optional<rate_snapshot> from_text(std::string_view text);
  friend bool operator==(const rate_snapshot&, const rate_snapshot&) = default;
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

  /// The windows' use at `now` (steady) = `wall_ms` (Unix milliseconds).
  rate_snapshot snapshot(rate_clock::time_point now, int64_t wall_ms) const;
  /// Continues from a snapshot: what the windows refilled since it was taken is not owed.
  void restore(const rate_snapshot& s, rate_clock::time_point now, int64_t wall_ms);

private:
  rate_window rpm_;
  rate_window tpm_;
  rate_window rpd_;
};

/// A duration as OpenAI writes reset times: "20ms", "1s", "6m0s", "1h2m3s".
std::string format_reset(std::chrono::nanoseconds d);

} // namespace tollgate
