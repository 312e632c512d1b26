#pragma once

#include <caf/actor_system_config.hpp>
#include <caf/atom.hpp>

#include "actors/messages.hpp"

namespace tollgate::test {

/// An actor system configuration for tests whose actors exchange the gateway's messages:
/// their types registered, CAF's log quiet. (Header only: the test support library does not
/// link CAF.)
struct gateway_messages : caf::actor_system_config {
  gateway_messages() {
    add_message_types<caf::id_block::tollgate>();
    set("logger.verbosity", caf::atom("quiet"));
  }
};

} // namespace tollgate::test
