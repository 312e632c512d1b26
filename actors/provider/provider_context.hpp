#pragma once

#include <memory>

#include <caf/all.hpp>

#include "actors/provider/upstream_loop.hpp"
#include "config/config.hpp"

namespace tollgate {

/// What every provider actor gets: its settings and the node's upstream HTTP loop.
struct provider_context {
  config::provider_config config;
  std::shared_ptr<upstream_loop> loop;
};

/// Spawns a provider actor of one kind, linked to nothing (its supervisor monitors it).
using provider_spawner = caf::actor (*)(caf::local_actor* parent, provider_context ctx);

/// The spawner for a provider kind ("echo", "openai"), or nullptr if there is none.
provider_spawner provider_kind(const std::string& kind);

} // namespace tollgate
