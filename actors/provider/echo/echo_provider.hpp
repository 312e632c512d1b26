#pragma once

#include <caf/all.hpp>

#include "actors/messages.hpp"
#include "actors/provider/provider_context.hpp"

namespace tollgate {

struct echo_provider_state {
  static inline constexpr const char* name = "echo_provider";
  uint64_t calls = 0;
};

/// The built-in offline provider: answers chat completions and embeddings in-process with
/// deterministic text and real token counts, in the OpenAI wire format.
caf::behavior echo_provider(caf::stateful_actor<echo_provider_state>* self, provider_context ctx);

caf::actor spawn_echo_provider(caf::local_actor* parent, provider_context ctx);

} // namespace tollgate
