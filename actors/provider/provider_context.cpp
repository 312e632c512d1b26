#include "actors/provider/provider_context.hpp"

#include <chrono>
#include <cstdlib>
#include <iterator>

#include "actors/messages.hpp"

#include "actors/provider/anthropic/anthropic_provider.hpp"
#include "actors/provider/echo/echo_provider.hpp"
#include "actors/provider/openai/openai_provider.hpp"

namespace tollgate {

std::string api_key_of(const config::provider_config& config) {
  if (config.api_key_env.empty())
    return {};
  const char* key = std::getenv(config.api_key_env.c_str());
  return key ? key : "";
}

transfer_spec base_transfer(const upstream_call& call, const config::provider_config& config,
                            std::string_view path, std::string body,
                            std::vector<std::string> headers, const caf::actor& provider) {
  transfer_spec spec;
  spec.url.reserve(config.base_url.size() + 1 + path.size());
  spec.url.append(config.base_url).append("/").append(path);
  spec.http = config.http;
  spec.tls_ca = config.tls_ca;
  spec.headers = {"Content-Type: application/json",
                  call.stream ? "Accept: text/event-stream" : "Accept: application/json",
                  "X-Request-Id: " + call.request_id};
  spec.headers.insert(spec.headers.end(), std::make_move_iterator(headers.begin()),
                      std::make_move_iterator(headers.end()));
  spec.body = std::move(body);
  spec.stream = call.stream;
  spec.connect_timeout = std::chrono::milliseconds(call.connect_ms);
  spec.total_timeout = std::chrono::milliseconds(call.total_ms);
  spec.first_byte_timeout = std::chrono::milliseconds(call.first_byte_ms);
  spec.idle_timeout = std::chrono::milliseconds(call.idle_ms);
  auto requester = call.requester;
  auto attempt = call.attempt;
  spec.on_data = [requester, attempt](uint64_t, std::string_view bytes) {
    caf::anon_send(requester, upstream_data_atom_v, attempt, std::string(bytes));
  };
  spec.on_done = [requester, attempt, provider](uint64_t id, transfer_result result) {
    caf::anon_send(provider, upstream_done_atom_v, id);
    caf::anon_send(requester, upstream_done_atom_v, attempt, std::move(result));
  };
  return spec;
}

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
