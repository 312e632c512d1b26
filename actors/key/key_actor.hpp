#pragma once

#include <chrono>

#include <caf/all.hpp>

#include "actors/key/key_policy.hpp"
#include "actors/messages.hpp"

namespace tollgate {

struct key_state {
  static inline constexpr const char* name = "key_actor";
  schemas::key_record key;
  key_policy policy{schemas::key_record{}};
  caf::actor user;
  caf::actor directory;
};

/// One per API key: owns the key's policy and admits or rejects each call made with it.
caf::behavior key_actor(caf::stateful_actor<key_state>* self, schemas::key_record key,
                        caf::actor user, caf::actor directory, std::chrono::seconds idle);

} // namespace tollgate
