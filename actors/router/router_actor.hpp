#pragma once

#include <random>
#include <string>
#include <unordered_map>

#include <caf/all.hpp>

#include "actors/messages.hpp"
#include "actors/router/model_catalog.hpp"

namespace tollgate {

/// The provider that answers calls made with `test` keys: offline, and free.
inline constexpr const char* test_provider_name = "tollgate-test-echo";

struct router_state {
  static inline constexpr const char* name = "router";
  model_catalog catalog;
  std::unordered_map<std::string, caf::actor> providers; ///< By name; set by the supervisor.
  std::mt19937_64 random{std::random_device{}()};
};

/// Per node: maps a public model name to a deployment and its provider actor.
caf::behavior router_actor(caf::stateful_actor<router_state>* self, model_catalog catalog);

} // namespace tollgate
