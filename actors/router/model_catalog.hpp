#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "schemas/pricing.hpp"

namespace tollgate {

/// One place a model's calls can go.
struct deployment {
  std::string provider;
  std::string upstream_model;
  uint32_t weight = 1;
  uint32_t priority = 1;
  int64_t max_concurrency = 0;
  config::timeouts_config timeouts;
  config::breaker_config breaker;
};

/// A public model: its price and where it is served.
struct catalog_model {
  std::string name;
  schemas::model_price price;
  int64_t max_output_tokens = 4096;
  std::string strategy;
  std::vector<deployment> deployments;
};

/// The configured models, immutable once built.
class model_catalog {
public:
  model_catalog() = default;
  explicit model_catalog(const config::gateway_config& cfg);

  const catalog_model* find(const std::string& name) const;
  const std::vector<catalog_model>& models() const noexcept { return models_; }

  /// Picks a deployment of `model` by weight; `roll` is uniform in [0, total weight).
  static const deployment& pick(const catalog_model& model, uint64_t roll);

private:
  std::vector<catalog_model> models_;
};

} // namespace tollgate
