#pragma once

#include <caf/all.hpp>

#include "actors/messages.hpp"
#include "actors/storage/db_worker.hpp"

namespace tollgate {

struct admin_state {
  static inline constexpr const char* name = "admin";
  db_pool db;
  caf::actor directory;
};

/// Per node: turns admin endpoint calls into storage work and control messages to the
/// actors that own the state; every change is audited in the transaction that makes it.
/// Each handler answers a finished http_reply.
caf::behavior admin_actor(caf::stateful_actor<admin_state>* self, db_pool db, caf::actor directory);

} // namespace tollgate
