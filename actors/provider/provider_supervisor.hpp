#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <caf/all.hpp>

#include "actors/messages.hpp"
#include "actors/provider/provider_context.hpp"

namespace tollgate {

struct provider_supervisor_state {
  static inline constexpr const char* name = "provider_supervisor";

  struct child {
    child() = default;
    explicit child(provider_context c)
        : ctx(std::move(c)) {}

    provider_context ctx;
    caf::actor handle;
    std::chrono::milliseconds backoff{100};
    std::chrono::steady_clock::time_point started;
  };

  std::unordered_map<std::string, child> children; ///< By provider name.
  caf::actor router;
};

/// Spawns one actor per configured provider (and the built-in test echo provider), tells the
/// router about each, and restarts a crashed one with a growing backoff.
caf::behavior provider_supervisor(caf::stateful_actor<provider_supervisor_state>* self,
                                  std::vector<config::provider_config> providers,
                                  std::shared_ptr<upstream_loop> loop, caf::actor router);

} // namespace tollgate
