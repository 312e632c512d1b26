#include "actors/provider/echo/echo_provider.hpp"

#include <nlohmann/json.hpp>

#include "actors/provider/echo/echo_model.hpp"
#include "storage/database.hpp"

namespace tollgate {

caf::behavior echo_provider(caf::stateful_actor<echo_provider_state>* self, provider_context) {
  return {
      [=](complete_atom, upstream_call& call) -> uint64_t {
        auto id = ++self->state.calls;
        auto request = nlohmann::json::parse(call.body, nullptr, false);
        transfer_result result;
        result.http_status = 200;
        if (call.path == "embeddings") {
          result.body = echo::embeddings_body(request);
        } else {
          auto r = echo::answer(request);
          auto cid = "chatcmpl-" + call.request_id;
          auto created = storage::unix_now();
          if (call.stream) {
            for (auto& event : echo::stream_events(request, r, cid, created))
              self->send(call.requester, upstream_data_atom_v, call.attempt, std::move(event));
          } else {
            result.body = echo::completion_body(request, r, cid, created);
          }
        }
        self->send(call.requester, upstream_done_atom_v, call.attempt, std::move(result));
        return id;
      },
      [=](cancel_atom, uint64_t) {
        // Answers are sent whole at once: nothing is left to cancel.
      },
  };
}

caf::actor spawn_echo_provider(caf::local_actor* parent, provider_context ctx) {
  return parent->spawn(echo_provider, std::move(ctx));
}

} // namespace tollgate
