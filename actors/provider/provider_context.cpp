#include "actors/provider/provider_context.hpp"

#include "actors/provider/anthropic/anthropic_provider.hpp"
#include "actors/provider/echo/echo_provider.hpp"
#include "actors/provider/openai/openai_provider.hpp"

namespace tollgate {

provider_spawner provider_kind(const std::string& kind) {
  // One line per provider kind.
  if (kind == "echo")
    return spawn_echo_provider;
  if (kind == "openai")
    return spawn_openai_provider;
  if (kind == "anthropic")
    return spawn_anthropic_provider;
  return nullptr;
}

} // namespace tollgate
