#pragma once

#include <functional>

#include <caf/all.hpp>

#include "actors/messages.hpp"
#include "actors/storage/db_worker.hpp"

namespace tollgate {

/// Re-reads the configuration (file, environment, flags) for a reload; throws config_error.
using config_reader = std::function<config::gateway_config()>;

struct admin_state {
  static inline constexpr const char* name = "admin";
  db_pool db;
  caf::actor directory;
  caf::actor router;
  caf::actor providers; ///< The provider supervisor.
  config_reader read_config;
  std::string node_id; ///< This node's cluster id; empty on a single node.
  int32_t shards = 0;
};

/// Per node: turns admin endpoint calls into storage work and control messages to the
/// actors that own the state; every change is audited in the transaction that makes it.
/// Each handler answers a finished http_reply.
caf::behavior admin_actor(caf::stateful_actor<admin_state>* self, db_pool db, caf::actor directory,
                          caf::actor router, caf::actor providers, config_reader read_config,
                          std::string node_id = {}, int32_t shards = 0);

} // namespace tollgate
