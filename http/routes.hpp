#pragma once

#include <atomic>
#include <memory>
#include <string>

#include <caf/all.hpp>
#include <restinio/all.hpp>

#include "actors/directory/key_handles.hpp"
#include "config/config.hpp"

namespace tollgate::http {

using router = restinio::router::express_router_t<>;

/// What the route handlers need: the actors they hand requests to and the admin key's hash.
struct route_context {
  caf::actor_system* system = nullptr;
  caf::actor directory;
  key_handles_ptr keys; ///< Key actors alive on this node (see key_handles).
  caf::actor admin;
  caf::actor router;
  std::string admin_key_hash;
  std::size_t max_body_bytes = 4 << 20;
  config::routing_config routing;
  /// Set once a drain begins: new calls are refused, calls in flight finish.
  std::shared_ptr<std::atomic<bool>> draining = std::make_shared<std::atomic<bool>>(false);
  /// Metered calls in flight (each one's hold is still open).
  std::shared_ptr<std::atomic<int64_t>> active_calls = std::make_shared<std::atomic<int64_t>>(0);
};

/// The gateway's endpoints, with JSON 404/405 answers for everything else.
std::unique_ptr<router> make_router(std::shared_ptr<const route_context> ctx);

} // namespace tollgate::http
