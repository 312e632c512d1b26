#include "actors/provider/openai/openai_provider.hpp"

namespace tollgate {

caf::behavior openai_provider(caf::stateful_actor<openai_provider_state>* self,
                              provider_context ctx) {
  self->state.api_key = api_key_of(ctx.config);
  self->state.ctx = std::move(ctx);
  return {
      [=](complete_atom, upstream_call& call) -> uint64_t {
        auto& st = self->state;
        std::vector<std::string> auth;
        if (!st.api_key.empty())
          auth.push_back("Authorization: Bearer " + st.api_key);
        auto spec = base_transfer(call, st.ctx.config.base_url + "/" + call.path,
                                  std::move(call.body), std::move(auth));
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
