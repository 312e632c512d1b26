#pragma once

#include <caf/all.hpp>

#include "actors/messages.hpp"
#include "actors/provider/provider_context.hpp"

namespace tollgate {

struct anthropic_provider_state {
  static inline constexpr const char* name = "anthropic_provider";
  provider_context ctx;
  std::string api_key; ///< Read from the environment once, at start.
  int64_t in_flight = 0;
};

/// Anthropic's Messages API behind the chat completions contract: translates each call to
/// POST {base_url}/messages and its answer (buffered or streamed) back to OpenAI's shape.
caf::behavior anthropic_provider(caf::stateful_actor<anthropic_provider_state>* self,
                                 provider_context ctx);

caf::actor spawn_anthropic_provider(caf::local_actor* parent, provider_context ctx);

} // namespace tollgate
