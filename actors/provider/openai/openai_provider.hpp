#pragma once

#include <caf/all.hpp>

#include "actors/messages.hpp"
#include "actors/provider/provider_context.hpp"

namespace tollgate {

struct openai_provider_state {
  static inline constexpr const char* name = "openai_provider";
  provider_context ctx;
  std::string api_key; ///< Read from the environment once, at start.
  int64_t in_flight = 0;
};

/// Any OpenAI-compatible upstream (OpenAI, OpenRouter, vLLM, Ollama, Together, Groq):
/// forwards calls over the node's upstream loop and streams the answer to the requester.
caf::behavior openai_provider(caf::stateful_actor<openai_provider_state>* self,
                              provider_context ctx);

caf::actor spawn_openai_provider(caf::local_actor* parent, provider_context ctx);

} // namespace tollgate
