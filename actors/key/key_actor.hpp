#pragma once

#include <chrono>
#include <cstdint>

#include <caf/all.hpp>

#include "actors/idle_timer.hpp"
#include "actors/key/key_policy.hpp"
#include "actors/limits/rate_limiter.hpp"
#include "actors/messages.hpp"
#include "actors/owed_answers.hpp"

namespace tollgate {

struct key_state {
  static inline constexpr const char* name = "key_actor";
  schemas::key_record key;
  key_policy policy{schemas::key_record{}};
  rate_limiter limiter;
  caf::actor user;
  caf::actor directory;
  idle_timer idle; ///< Ends the actor after a quiet spell.
  /// Calls waiting for the user actor to be found: failed if this actor ends first.
  owed_answers waiting;
};

/// One per API key: owns the key's policy and rate windows, and admits or rejects each call
/// made with it. `defaults` fills the limits the key leaves unset. `windows`, if taken
/// (taken_at_ms > 0), is where the key's windows stood when its last actor ended, here or
/// on another node. An ending key actor leaves its windows with the directory (passivated)
/// or answers them (release_atom, when its shard moves to another node). The key outlives
/// its user actor (`user`, possibly on another node): when that one ends, the next call
/// looks the user up again through the directory.
caf::behavior key_actor(caf::stateful_actor<key_state>* self, schemas::key_record key,
                        caf::actor user, caf::actor directory, schemas::rate_limits defaults,
                        std::chrono::seconds idle, rate_snapshot windows);

/// Unix milliseconds now (snapshots of rate windows are on the wall clock).
int64_t wall_ms();

/// Where `limiter`'s windows stand now, as text for the directory or Redis: what a key or
/// user actor leaves behind when it ends, for its next activation.
std::string windows_now(const rate_limiter& limiter);

/// Puts `limiter`'s windows where a snapshot left them (if one was taken: taken_at_ms > 0).
void restore_windows(rate_limiter& limiter, const rate_snapshot& windows);

/// The 429 for a refused rate window, with Retry-After and the window headers.
schemas::api_error rate_limit_error(const rate_limiter& limiter,
                                    const rate_limiter::decision& decision,
                                    rate_clock::time_point now);

} // namespace tollgate
