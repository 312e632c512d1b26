#include "actors/router/deployment_picker.hpp"

#include <algorithm>
#include <limits>

namespace tollgate {

namespace {

constexpr double ewma_weight = 0.2;

} // namespace

void deployment_health::observe_ttft(double ms) {
  ewma_ttft_ms = ewma_ttft_ms == 0 ? ms : ewma_weight * ms + (1 - ewma_weight) * ewma_ttft_ms;
}

std::string deployment_name(const deployment& d) {
  return d.provider + "/" + d.upstream_model;
}

int pick_deployment(const catalog_model& model, std::vector<deployment_health*>& health,
                    const std::vector<std::string>& tried, uint64_t roll,
                    circuit_breaker::clock::time_point now) {
  // Candidates: not yet tried for this call, not full, and not cut off by their breaker.
  std::vector<int> open;
  for (std::size_t i = 0; i < model.deployments.size(); ++i) {
    const auto& h = *health[i];
    auto name = deployment_name(model.deployments[i]);
    if (std::find(tried.begin(), tried.end(), name) != tried.end())
      continue;
    if (h.max_concurrency > 0 && h.in_flight >= h.max_concurrency)
      continue;
    if (h.breaker.current(now) == circuit_breaker::state::open)
      continue;
    open.push_back(static_cast<int>(i));
  }
  if (open.empty())
    return -1;
  // Order the candidates by the strategy; the first whose breaker admits the call wins.
  const auto& strategy = model.strategy;
  auto by = [&](auto key) {
    std::stable_sort(open.begin(), open.end(), [&](int a, int b) { return key(a) < key(b); });
  };
  if (strategy == "priority") {
    by([&](int i) { return model.deployments[i].priority; });
  } else if (strategy == "least-busy") {
    by([&](int i) { return health[i]->in_flight; });
  } else if (strategy == "lowest-latency") {
    // Unmeasured deployments go first, so that each gets measured.
    by([&](int i) { return health[i]->ewma_ttft_ms; });
  } else {
    // Weighted: draw one by weight, then the rest in order as fallbacks.
    uint64_t total = 0;
    for (int i : open)
      total += model.deployments[i].weight;
    uint64_t r = total == 0 ? 0 : roll % total;
    for (std::size_t k = 0; k < open.size(); ++k) {
      auto w = model.deployments[open[k]].weight;
      if (r < w) {
        std::rotate(open.begin(), open.begin() + static_cast<std::ptrdiff_t>(k),
                    open.begin() + static_cast<std::ptrdiff_t>(k) + 1);
        break;
      }
      r -= w;
    }
  }
  for (int i : open)
    if (health[i]->breaker.allow(now))
      return i;
  return -1;
}

} // namespace tollgate
