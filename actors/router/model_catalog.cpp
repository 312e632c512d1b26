#include "actors/router/model_catalog.hpp"

namespace tollgate {

model_catalog::model_catalog(const config::gateway_config& cfg) {
  for (const auto& m : cfg.models) {
    catalog_model model{
        m.name, {m.input_price, m.output_price}, m.max_output_tokens, m.strategy, {}};
    for (const auto& d : m.deployments)
      model.deployments.push_back({d.provider, d.model.empty() ? m.name : d.model, d.weight,
                                   d.priority, d.max_concurrency, d.timeouts, d.breaker});
    models_.push_back(std::move(model));
  }
}

const catalog_model* model_catalog::find(const std::string& name) const {
  for (const auto& m : models_)
    if (m.name == name)
      return &m;
  return nullptr;
}

const deployment& model_catalog::pick(const catalog_model& model, uint64_t roll) {
  uint64_t total = 0;
  for (const auto& d : model.deployments)
    total += d.weight;
  roll %= total == 0 ? 1 : total;
  for (const auto& d : model.deployments) {
    if (roll < d.weight)
      return d;
    roll -= d.weight;
  }
  return model.deployments.front();
}

} // namespace tollgate
