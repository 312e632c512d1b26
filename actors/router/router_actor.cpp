#include "actors/router/router_actor.hpp"

#include <nlohmann/json.hpp>

namespace tollgate {

caf::behavior router_actor(caf::stateful_actor<router_state>* self, model_catalog catalog) {
  self->state.catalog = std::move(catalog);
  return {
      [=](provider_up_atom, const std::string& name, caf::actor provider) {
        self->state.providers[name] = std::move(provider);
      },
      [=](route_atom, const std::string& model,
          const std::string& environment) -> caf::result<route_plan> {
        auto& st = self->state;
        const auto* m = st.catalog.find(model);
        if (!m)
          return make_api_failure(schemas::not_found(
              "the model '" + model + "' does not exist; GET /v1/models lists the models",
              "model_not_found"));
        route_plan plan{model, {}, {}, {}, m->price, m->max_output_tokens, {}};
        if (environment == "test") {
          // Test keys never reach a paid upstream, and cost nothing.
          plan.provider = test_provider_name;
          plan.upstream_model = model;
          plan.price = {};
        } else {
          const auto& d = model_catalog::pick(*m, st.random());
          plan.provider = d.provider;
          plan.upstream_model = d.upstream_model;
        }
        plan.deployment = plan.provider + "/" + plan.upstream_model;
        auto it = st.providers.find(plan.provider);
        if (it == st.providers.end())
          return make_api_failure(schemas::unavailable("the provider '" + plan.provider +
                                                           "' is restarting; retry the request",
                                                       "provider_unavailable"));
        plan.provider_actor = it->second;
        return plan;
      },
      [=](models_atom) {
        nlohmann::json data = nlohmann::json::array();
        for (const auto& m : self->state.catalog.models())
          data.push_back({{"id", m.name},
                          {"object", "model"},
                          {"created", 0},
                          {"owned_by", "tollgate"},
                          {"pricing",
                           {{"input", m.price.input},
                            {"output", m.price.output},
                            {"unit", "micro-credits per million tokens"}}},
                          {"max_output_tokens", m.max_output_tokens}});
        return nlohmann::json{{"object", "list"}, {"data", std::move(data)}}.dump();
      },
  };
}

} // namespace tollgate
