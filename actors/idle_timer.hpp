#pragma once

#include <chrono>
#include <optional>

namespace tollgate {

/// When an actor has been idle long enough to passivate, with one timer message per idle
/// period however many messages the actor handles. (CAF's `after` re-arms the actor clock on
/// every message, and each re-arming wakes the clock thread: a cost on every call.)
///
/// The actor calls `touch` when it handles work, arms one tick of `limit()` when it starts,
/// and on each tick asks `next_tick`: nothing means idle for the whole limit (passivate),
/// otherwise the tick is armed again for the time left.
class idle_timer {
public:
  using clock = std::chrono::steady_clock;

  idle_timer() = default;
  explicit idle_timer(clock::duration limit, clock::time_point now = clock::now())
      : limit_(limit)
      , last_(now) {}

  clock::duration limit() const { return limit_; }

  void touch(clock::time_point now = clock::now()) { last_ = now; }

  /// On a tick: how long until the next one, or nothing if the actor has been idle for the
  /// whole limit.
  std::optional<clock::duration> next_tick(clock::time_point now = clock::now()) const {
    auto quiet = now - last_;
    if (quiet >= limit_)
      return std::nullopt;
    return limit_ - quiet;
  }

private:
  clock::duration limit_{};
  clock::time_point last_{};
};

} // namespace tollgate
