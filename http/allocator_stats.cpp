#include "http/allocator_stats.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <utility>

#include <jemalloc/jemalloc.h>

#include "actors/metrics/metrics.hpp"

namespace tollgate::http {

namespace {

/// jemalloc's totals and the label each is published under.
constexpr std::array<std::pair<const char*, const char*>, 6> totals{{
    {"stats.allocated", "allocated"},
    {"stats.active", "active"},
    {"stats.resident", "resident"},
    {"stats.mapped", "mapped"},
    {"stats.metadata", "metadata"},
    {"stats.retained", "retained"},
}};

/// Refreshes jemalloc's statistics (they are cached until the epoch advances).
bool advance_epoch() {
  std::uint64_t epoch = 1;
  std::size_t length = sizeof epoch;
  return mallctl("epoch", &epoch, &length, &epoch, length) == 0;
}

} // namespace

bool publish_allocator_stats() {
  std::size_t probe = 0;
  std::size_t length = sizeof probe;
  if (!advance_epoch() || mallctl("stats.allocated", &probe, &length, nullptr, 0) != 0)
    return false;
  auto& family = gateway_metrics::global().allocator;
  gateway_metrics::global().on_scrape([&family] {
    advance_epoch();
    for (const auto& [name, state] : totals) {
      std::size_t value = 0;
      std::size_t size = sizeof value;
      if (mallctl(name, &value, &size, nullptr, 0) == 0)
        family.at({state}).set(static_cast<std::int64_t>(value));
    }
  });
  return true;
}

} // namespace tollgate::http
