#pragma once

#include <chrono>
#include <memory>
#include <string>

#include <caf/all.hpp>

#include "actors/messages.hpp"
#include "storage/redis_client.hpp"

namespace tollgate {

struct redis_worker_state {
  static inline constexpr const char* name = "redis_worker";
  std::unique_ptr<storage::redis_client> redis;
  bool failing = false; ///< Logged once per outage.
};

/// Blocking Redis calls on a thread of their own (spawned detached). Redis holds only what
/// can be rebuilt: when it cannot be reached, GET answers "" and SET does nothing, logged.
///   (get_atom, key) -> value ("" if none)
///   (put_atom, key, value, ttl_ms) -> bool (written)
caf::behavior redis_worker(caf::stateful_actor<redis_worker_state>* self, config::redis_url url);

} // namespace tollgate
