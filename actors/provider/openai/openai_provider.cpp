#include "actors/provider/openai/openai_provider.hpp"

#include <cstdlib>

namespace tollgate {

caf::behavior openai_provider(caf::stateful_actor<openai_provider_state>* self,
                              provider_context ctx) {
  auto& init = self->state;
  if (!ctx.config.api_key_env.empty())
    if (const char* key = std::getenv(ctx.config.api_key_env.c_str()))
      init.api_key = key;
  init.ctx = std::move(ctx);
  return {
      [=](complete_atom, upstream_call& call) -> uint64_t {
        auto& st = self->state;
        transfer_spec spec;
        spec.url = st.ctx.config.base_url + "/" + call.path;
        spec.headers = {"Content-Type: application/json",
                        call.stream ? "Accept: text/event-stream" : "Accept: application/json",
                        "X-Request-Id: " + call.request_id};
        if (!st.api_key.empty())
          spec.headers.push_back("Authorization: Bearer " + st.api_key);
        spec.body = std::move(call.body);
        spec.stream = call.stream;
        spec.connect_timeout = std::chrono::milliseconds(call.connect_ms);
        spec.total_timeout = std::chrono::milliseconds(call.total_ms);
        // The loop thread talks to the requester directly: the stream bypasses this actor.
        auto requester = call.requester;
        auto attempt = call.attempt;
        auto me = caf::actor_cast<caf::actor>(self);
        spec.on_data = [requester, attempt](uint64_t, std::string_view bytes) {
          caf::anon_send(requester, upstream_data_atom_v, attempt, std::string(bytes));
        };
        spec.on_done = [requester, attempt, me](uint64_t id, transfer_result result) {
          caf::anon_send(me, upstream_done_atom_v, id);
          caf::anon_send(requester, upstream_done_atom_v, attempt, std::move(result));
        };
        ++st.in_flight;
        return st.ctx.loop->start(std::move(spec));
      },
      [=](cancel_atom, uint64_t id) { self->state.ctx.loop->cancel(id); },
      [=](upstream_done_atom, uint64_t) { --self->state.in_flight; },
  };
}

caf::actor spawn_openai_provider(caf::local_actor* parent, provider_context ctx) {
  return parent->spawn(openai_provider, std::move(ctx));
}

} // namespace tollgate
