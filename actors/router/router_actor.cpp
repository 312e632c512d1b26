#include "actors/router/router_actor.hpp"

#include <algorithm>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "actors/metrics/metrics.hpp"

namespace tollgate {

namespace {

using self_ptr = caf::stateful_actor<router_state>*;
using clock = circuit_breaker::clock;

circuit_breaker::settings breaker_settings(const config::breaker_config& b) {
  circuit_breaker::settings s;
  s.consecutive_failures = static_cast<int>(b.failures);
  s.failure_rate = static_cast<double>(b.failure_rate_percent) / 100.0;
  s.min_calls = static_cast<int>(b.min_calls);
  s.window = std::chrono::seconds(b.window_seconds);
  s.cooldown = std::chrono::milliseconds(b.cooldown_ms);
  s.max_cooldown = std::chrono::milliseconds(b.max_cooldown_ms);
  s.half_open_probes = static_cast<int>(b.half_open_probes);
  return s;
}

deployment_health& health_of(router_state& st, const deployment& d) {
  auto& slot = st.health[deployment_name(d)];
  if (!slot) {
    slot = std::make_unique<deployment_health>();
    slot->breaker = circuit_breaker(breaker_settings(d.breaker));
    slot->max_concurrency = d.max_concurrency;
  }
  return *slot;
}

void publish_breaker(const std::string& name, const deployment_health& h) {
  static const int64_t codes[] = {0, 2, 1}; // closed, open, half-open
  gateway_metrics::global().breaker_state.at({name}).set(
      codes[static_cast<int>(h.breaker.current(clock::now()))]);
}

schemas::api_error no_deployment(const std::string& model) {
  return schemas::unavailable("no deployment of '" + model +
                                  "' can take the call now (breakers open or all busy); retry "
                                  "shortly",
                              "no_deployment_available");
}

route_plan plan_for(router_state& st, const catalog_model& m, const deployment& d) {
  route_plan plan{m.name,
                  deployment_name(d),
                  d.provider,
                  d.upstream_model,
                  m.price,
                  m.max_output_tokens,
                  {},
                  d.timeouts.connect_ms,
                  d.timeouts.first_token_ms,
                  d.timeouts.idle_ms,
                  d.timeouts.total_ms};
  if (auto it = st.providers.find(d.provider); it != st.providers.end())
    plan.provider_actor = it->second;
  return plan;
}

caf::result<route_plan> route(self_ptr self, const route_request& req) {
  auto& st = self->state;
  const auto* first = st.catalog.find(req.model);
  if (!first)
    return make_api_failure(schemas::not_found(
        "the model '" + req.model + "' does not exist; GET /v1/models lists the models",
        "model_not_found"));
  if (req.environment == "test") {
    // Test keys never reach a paid upstream, and cost nothing.
    route_plan plan{req.model,
                    std::string(test_provider_name) + "/" + req.model,
                    test_provider_name,
                    req.model,
                    {},
                    first->max_output_tokens,
                    {}};
    auto it = st.providers.find(test_provider_name);
    if (it == st.providers.end())
      return make_api_failure(
          schemas::unavailable("the test provider is restarting", "provider_unavailable"));
    plan.provider_actor = it->second;
    return plan;
  }
  // Retries may not multiply load: they may use only a share of the calls in flight.
  if (req.retry &&
      st.retries_in_flight * 100 >=
          std::max<int64_t>(st.in_flight, 1) * st.routing.retry_budget_percent &&
      st.retries_in_flight > 0)
    return make_api_failure(schemas::unavailable(
        "the upstream is failing and the retry budget is spent; retry later", "retry_budget"));
  std::vector<const catalog_model*> models{first};
  for (const auto& name : req.also)
    if (const auto* m = st.catalog.find(name); m && name != req.model)
      models.push_back(m);
  auto now = clock::now();
  for (const auto* m : models) {
    std::vector<deployment_health*> health;
    for (const auto& d : m->deployments)
      health.push_back(&health_of(st, d));
    int i = pick_deployment(*m, health, req.tried, st.random(), now);
    if (i < 0)
      continue;
    const auto& d = m->deployments[static_cast<std::size_t>(i)];
    auto plan = plan_for(st, *m, d);
    if (!plan.provider_actor) {
      health[static_cast<std::size_t>(i)]->breaker.release(now);
      continue;
    }
    ++health[static_cast<std::size_t>(i)]->in_flight;
    ++st.in_flight;
    if (req.retry) {
      ++st.retries_in_flight;
      gateway_metrics::global().retries.at({plan.deployment}).add();
    }
    return plan;
  }
  return make_api_failure(no_deployment(req.model));
}

nlohmann::json providers_json(router_state& st) {
  nlohmann::json out = nlohmann::json::array();
  auto now = clock::now();
  for (const auto& m : st.catalog.models()) {
    for (const auto& d : m.deployments) {
      auto& h = health_of(st, d);
      auto name = deployment_name(d);
      out.push_back({{"deployment", name},
                     {"model", m.name},
                     {"provider", d.provider},
                     {"upstream_model", d.upstream_model},
                     {"up", st.providers.count(d.provider) > 0},
                     {"breaker", std::string(to_string(h.breaker.current(now)))},
                     {"trips", h.breaker.trips()},
                     {"in_flight", h.in_flight},
                     {"max_concurrency", h.max_concurrency},
                     {"calls", h.calls},
                     {"failures", h.failures},
                     {"ttft_ms_avg", h.ewma_ttft_ms}});
    }
  }
  return out;
}

/// Trips or resets every deployment of a provider; answers the providers list.
http_reply set_breakers(self_ptr self, const std::string& provider, bool open) {
  auto& st = self->state;
  bool found = false;
  auto now = clock::now();
  for (const auto& m : st.catalog.models()) {
    for (const auto& d : m.deployments) {
      if (d.provider != provider)
        continue;
      found = true;
      auto& h = health_of(st, d);
      if (open)
        h.breaker.trip(now);
      else
        h.breaker.reset();
      publish_breaker(deployment_name(d), h);
    }
  }
  if (!found) {
    auto err = schemas::not_found("no deployment uses the provider '" + provider + "'");
    return {err.status, err.body(), false};
  }
  spdlog::info("breakers of provider {} {} by an admin", provider, open ? "tripped" : "reset");
  return {200, nlohmann::json{{"object", "list"}, {"data", providers_json(st)}}.dump(), false};
}

} // namespace

caf::behavior router_actor(caf::stateful_actor<router_state>* self, model_catalog catalog,
                           config::routing_config routing) {
  self->state.catalog = std::move(catalog);
  self->state.routing = routing;
  return {
      [=](provider_up_atom, const std::string& name, caf::actor provider) {
        self->state.providers[name] = std::move(provider);
      },
      [=](route_atom, const route_request& req) { return route(self, req); },
      // Cancellations go to the provider's current actor: one restarted meanwhile shares the
      // node's upstream loop, where the transfer still runs.
      [=](cancel_atom, const std::string& provider, uint64_t transfer_id) {
        if (auto it = self->state.providers.find(provider); it != self->state.providers.end())
          self->send(it->second, cancel_atom_v, transfer_id);
      },
      // New models and prices; calls in flight keep the plan they were given, and deployments
      // that stay keep their breakers and load.
      [=](reload_atom, model_catalog& reloaded) {
        self->state.catalog = std::move(reloaded);
        return static_cast<int64_t>(self->state.catalog.models().size());
      },
      [=](outcome_atom, const call_outcome& o) {
        auto& st = self->state;
        st.in_flight = std::max<int64_t>(st.in_flight - 1, 0);
        if (o.retry)
          st.retries_in_flight = std::max<int64_t>(st.retries_in_flight - 1, 0);
        auto it = st.health.find(o.deployment);
        if (it == st.health.end())
          return;
        auto& h = *it->second;
        auto now = clock::now();
        h.in_flight = std::max<int64_t>(h.in_flight - 1, 0);
        ++h.calls;
        if (o.success) {
          h.breaker.record_success(now);
          if (o.ttft_ms > 0)
            h.observe_ttft(static_cast<double>(o.ttft_ms));
        } else if (o.counts) {
          ++h.failures;
          h.breaker.record_failure(now, std::chrono::milliseconds(o.retry_after_ms));
        } else {
          h.breaker.release(now);
        }
        publish_breaker(o.deployment, h);
      },
      [=](providers_atom) {
        return http_reply{
            200, nlohmann::json{{"object", "list"}, {"data", providers_json(self->state)}}.dump(),
            false};
      },
      [=](trip_atom, const std::string& provider) { return set_breakers(self, provider, true); },
      [=](caf::reset_atom, const std::string& provider) {
        return set_breakers(self, provider, false);
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
