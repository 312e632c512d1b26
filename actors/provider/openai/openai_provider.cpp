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
        auto spec = base_transfer(call, st.ctx.config, call.path, std::move(call.body),
                                  std::move(auth), caf::actor_cast<caf::actor>(self));
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
