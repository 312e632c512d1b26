#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "actors/provider/circuit_breaker.hpp"
#include "actors/router/model_catalog.hpp"

namespace tollgate {

/// What the router knows about one deployment's health and load.
struct deployment_health {
  circuit_breaker breaker;
  int64_t in_flight = 0;
  int64_t max_concurrency = 0; ///< 0: no limit.
  double ewma_ttft_ms = 0;     ///< 0 until the first call reports.
  int64_t calls = 0;
  int64_t failures = 0;

  /// Folds one time to first token into the moving average.
  void observe_ttft(double ms);
};

/// Chooses among a model's deployments by its strategy, skipping deployments already tried
/// for this call, full ones (max_concurrency) and ones whose breaker is open. Returns the
/// index into `model.deployments`, or -1 if none may take the call. On success the chosen
/// deployment's breaker has admitted the call (a half-open probe slot is taken).
int pick_deployment(const catalog_model& model, std::vector<deployment_health*>& health,
                    const std::vector<std::string>& tried, uint64_t roll,
                    circuit_breaker::clock::time_point now);

/// The router's name for a deployment: "provider/upstream model".
std::string deployment_name(const deployment& d);

} // namespace tollgate
