#include "actors/provider/anthropic/anthropic_provider.hpp"

#include <chrono>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "actors/provider/anthropic/anthropic_translate.hpp"

namespace tollgate {

namespace {

constexpr const char* api_version = "2023-06-01";

} // namespace

caf::behavior anthropic_provider(caf::stateful_actor<anthropic_provider_state>* self,
                                 provider_context ctx) {
  self->state.api_key = api_key_of(ctx.config);
  self->state.ctx = std::move(ctx);
  return {
      [=](complete_atom, upstream_call& call) -> caf::result<uint64_t> {
        auto& st = self->state;
        if (call.path != "chat/completions")
          return make_api_failure(schemas::invalid_request(
              "anthropic providers serve chat completions only, not " + call.path, "model",
              "unsupported_endpoint"));
        std::string body;
        std::string model;
        try {
          auto request = nlohmann::json::parse(call.body);
          model = request.value("model", "");
          body = anthropic::to_messages_request(request);
        } catch (const std::exception& e) {
          return make_api_failure(schemas::invalid_request(e.what()));
        }
        std::vector<std::string> own{std::string("anthropic-version: ") + api_version};
        if (!st.api_key.empty())
          own.push_back("x-api-key: " + st.api_key);
        auto spec = base_transfer(call, st.ctx.config, "messages", std::move(body), std::move(own),
                                  caf::actor_cast<caf::actor>(self));
        // The upstream loop owns the stream's translator (one thread at a time turns it).
        auto requester = call.requester;
        auto attempt = call.attempt;
        std::shared_ptr<anthropic::anthropic_stream_translator> translator;
        if (call.stream) {
          // The requester reports a failed stream itself: the translator only records it.
          translator = std::make_shared<anthropic::anthropic_stream_translator>(
              model, static_cast<int64_t>(std::time(nullptr)), false);
          // Not owned: the loop lives while its callbacks run (upstream_loop.hpp).
          upstream_loop* loop = st.ctx.loop.get();
          spec.on_data = [requester, attempt, translator, loop](uint64_t id,
                                                                std::string_view bytes) {
            auto translated = translator->feed(bytes);
            if (!translated.empty())
              caf::anon_send(requester, upstream_data_atom_v, attempt, std::move(translated));
            // Nothing after an error counts: stop the transfer instead of reading it out.
            if (translator->failure())
              loop->cancel(id);
          };
        }
        spec.on_done = [report = std::move(spec.on_done), translator,
                        model](uint64_t id, transfer_result result) {
          anthropic::to_openai_result(result, model, translator.get());
          report(id, std::move(result));
        };
        ++st.in_flight;
        return st.ctx.loop->start(std::move(spec));
      },
      [=](cancel_atom, uint64_t id) { self->state.ctx.loop->cancel(id); },
      [=](upstream_done_atom, uint64_t) { --self->state.in_flight; },
  };
}

caf::actor spawn_anthropic_provider(caf::local_actor* parent, provider_context ctx) {
  return parent->spawn(anthropic_provider, std::move(ctx));
}

} // namespace tollgate
