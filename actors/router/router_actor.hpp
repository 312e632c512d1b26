#pragma once

#include <memory>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include <caf/all.hpp>

#include "actors/messages.hpp"
#include "actors/router/deployment_picker.hpp"
#include "actors/router/model_catalog.hpp"

namespace tollgate {

/// The provider that answers calls made with `test` keys: offline, and free.
inline constexpr const char* test_provider_name = "tollgate-test-echo";

struct router_state {
  static inline constexpr const char* name = "router";
  model_catalog catalog;
  config::routing_config routing;
  std::unordered_map<std::string, caf::actor> providers; ///< By name; set by the supervisor.
  /// Health per deployment ("provider/upstream model"); shared by models that use it.
  std::unordered_map<std::string, std::unique_ptr<deployment_health>> health;
  int64_t in_flight = 0;
  int64_t retries_in_flight = 0;
  std::mt19937_64 random{std::random_device{}()};
};

/// Per node: maps a public model name to a deployment by the model's strategy and its
/// deployments' breakers and load, and learns from every attempt's outcome.
caf::behavior router_actor(caf::stateful_actor<router_state>* self, model_catalog catalog,
                           config::routing_config routing);

} // namespace tollgate
