#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <string_view>

namespace tollgate {

/// A deployment's circuit breaker as a pure state machine. Closed lets calls through and
/// watches them; too many failures open it for a cooldown that grows on repeated trips and
/// decays while healthy; then half-open lets a few probes through, whose success closes it.
class circuit_breaker {
public:
  using clock = std::chrono::steady_clock;

  enum class state { closed, open, half_open };

  struct settings {
    int consecutive_failures = 5;              ///< Trips after this many failures in a row...
    double failure_rate = 0.5;                 ///< ...or this share of failures in the window...
    int min_calls = 10;                        ///< ...once the window holds this many calls.
    std::chrono::seconds window{30};           ///< Rolling window (one-second buckets, at most 60).
    std::chrono::milliseconds cooldown{5'000}; ///< First open period.
    std::chrono::milliseconds max_cooldown{300'000};
    std::chrono::seconds decay_after{60}; ///< Healthy this long halves the next cooldown.
    int half_open_probes = 2;             ///< Calls let through, and successes needed, to close.
  };

  circuit_breaker()
      : circuit_breaker(settings{}) {}
  explicit circuit_breaker(settings s);

  /// Whether a call may go to the deployment now; in half-open this takes a probe slot.
  bool allow(clock::time_point now);
  /// Reports a call let through by allow().
  void record_success(clock::time_point now);
  /// Reports a failed call; `retry_after` (an upstream 429's) keeps the breaker open at least
  /// that long if this failure trips it.
  void record_failure(clock::time_point now, std::chrono::milliseconds retry_after = {});
  /// Returns a probe slot taken by allow() for a call that was never made.
  void release(clock::time_point now);

  /// Opens by hand (an admin's trip), for the current cooldown.
  void trip(clock::time_point now);
  /// Closes by hand and forgets the history.
  void reset();

  state current(clock::time_point now) const;
  /// When an open breaker half-opens.
  clock::time_point open_until() const noexcept { return open_until_; }
  std::chrono::milliseconds next_cooldown() const noexcept { return cooldown_; }
  int64_t trips() const noexcept { return trips_; }

private:
  struct bucket {
    int64_t second = -1;
    int calls = 0;
    int failures = 0;
  };
  static constexpr std::size_t max_buckets = 60;

  bucket& bucket_at(clock::time_point now);
  void window_totals(clock::time_point now, int& calls, int& failures) const;
  void open(clock::time_point now, std::chrono::milliseconds at_least);
  void close(clock::time_point now);

  settings s_;
  state state_ = state::closed;
  int consecutive_ = 0;
  int probes_in_flight_ = 0;
  int probe_successes_ = 0;
  std::chrono::milliseconds cooldown_;
  clock::time_point open_until_{};
  clock::time_point healthy_since_{};
  int64_t trips_ = 0;
  std::array<bucket, max_buckets> buckets_{};
};

std::string_view to_string(circuit_breaker::state s);

} // namespace tollgate
