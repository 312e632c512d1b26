#pragma once

#include <cstddef>

#include <caf/actor_system_config.hpp>
#include <caf/atom.hpp>
#include <caf/scheduler/coordinator.hpp>

#include "actors/scheduling/gateway_scheduler.hpp"

namespace tollgate::test {

/// An actor system configuration like the gateway's on a 2-core machine: the gateway's
/// scheduler with 2 workers. (Header only: the test support library does not link
/// CAF.)
struct two_workers : caf::actor_system_config {
  two_workers() {
    load<gateway_scheduler>();
    set("scheduler.max-threads", std::size_t{2});
    set("logger.verbosity", caf::atom("quiet"));
  }
};

} // namespace tollgate::test
