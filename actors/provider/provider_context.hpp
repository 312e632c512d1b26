#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <caf/all.hpp>

#include "actors/provider/upstream_loop.hpp"
#include "config/config.hpp"

namespace tollgate {

/// What every provider actor gets: its settings and the node's upstream HTTP loop.
struct provider_context {
  config::provider_config config;
  std::shared_ptr<upstream_loop> loop;
};

struct upstream_call;

/// The provider's API key, read once from the environment variable its config names.
std::string api_key_of(const config::provider_config& config);

/// The parts of an upstream HTTP call every provider kind shares: JSON in, JSON or SSE out,
/// the request id, the call's timeouts, the provider's HTTP version. `path` follows the
/// provider's base URL; `headers` adds the provider's own (auth, version).
/// The upstream loop talks to the requester directly (the stream bypasses the provider):
/// `on_data` passes each piece on as it is, and `on_done` tells `provider` (which counts
/// its transfers in flight) and then the requester. A provider kind that translates wraps
/// or replaces them.
transfer_spec base_transfer(const upstream_call& call, const config::provider_config& config,
                            std::string_view path, std::string body,
                            std::vector<std::string> headers, const caf::actor& provider);

/// Spawns a provider actor of one kind, linked to nothing (its supervisor monitors it).
using provider_spawner = caf::actor (*)(caf::local_actor* parent, provider_context ctx);

/// The spawner for a provider kind ("echo", "openai"), or nullptr if there is none.
provider_spawner provider_kind(const std::string& kind);

} // namespace tollgate
