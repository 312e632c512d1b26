#include "actors/provider/circuit_breaker.hpp"

#include <algorithm>

namespace tollgate {

namespace {

int64_t second_of(circuit_breaker::clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

} // namespace

circuit_breaker::circuit_breaker(settings s)
    : s_(s)
    , cooldown_(s.cooldown) {
  s_.window = std::clamp(s_.window, std::chrono::seconds(1),
                         std::chrono::seconds(static_cast<int64_t>(max_buckets)));
}

circuit_breaker::state circuit_breaker::current(clock::time_point now) const {
  if (state_ == state::open && now >= open_until_)
    return state::half_open;
  return state_;
}

bool circuit_breaker::allow(clock::time_point now) {
  if (state_ == state::open) {
    if (now < open_until_)
      return false;
    state_ = state::half_open;
    probes_in_flight_ = 0;
    probe_successes_ = 0;
  }
  if (state_ == state::half_open) {
    if (probes_in_flight_ + probe_successes_ >= s_.half_open_probes)
      return false;
    ++probes_in_flight_;
  }
  return true;
}

void circuit_breaker::release(clock::time_point) {
  if (state_ == state::half_open && probes_in_flight_ > 0)
    --probes_in_flight_;
}

void circuit_breaker::record_success(clock::time_point now) {
  auto& b = bucket_at(now);
  ++b.calls;
  consecutive_ = 0;
  if (state_ == state::half_open) {
    probes_in_flight_ = std::max(probes_in_flight_ - 1, 0);
    if (++probe_successes_ >= s_.half_open_probes)
      close(now);
    return;
  }
  // A long healthy stretch earns back the shorter cooldown.
  if (cooldown_ > s_.cooldown && now - healthy_since_ >= s_.decay_after) {
    cooldown_ = std::max(s_.cooldown, cooldown_ / 2);
    healthy_since_ = now;
  }
}

void circuit_breaker::record_failure(clock::time_point now, std::chrono::milliseconds retry_after) {
  auto& b = bucket_at(now);
  ++b.calls;
  ++b.failures;
  ++consecutive_;
  if (state_ == state::half_open) {
    open(now, retry_after); // a failed probe: back to open, for longer
    return;
  }
  if (state_ == state::open)
    return;
  int calls = 0;
  int failures = 0;
  window_totals(now, calls, failures);
  bool too_many_in_a_row = consecutive_ >= s_.consecutive_failures;
  bool too_high_a_rate =
      calls >= s_.min_calls && static_cast<double>(failures) >= s_.failure_rate * calls;
  if (too_many_in_a_row || too_high_a_rate)
    open(now, retry_after);
}

void circuit_breaker::trip(clock::time_point now) {
  open(now, {});
}

void circuit_breaker::reset() {
  auto cooldown = s_.cooldown;
  *this = circuit_breaker(s_);
  cooldown_ = cooldown;
}

circuit_breaker::bucket& circuit_breaker::bucket_at(clock::time_point now) {
  auto second = second_of(now);
  auto& b = buckets_[static_cast<std::size_t>(second) % max_buckets];
  if (b.second != second)
    b = bucket{second, 0, 0};
  return b;
}

void circuit_breaker::window_totals(clock::time_point now, int& calls, int& failures) const {
  auto newest = second_of(now);
  auto oldest = newest - s_.window.count() + 1;
  for (const auto& b : buckets_) {
    if (b.second >= oldest && b.second <= newest) {
      calls += b.calls;
      failures += b.failures;
    }
  }
}

void circuit_breaker::open(clock::time_point now, std::chrono::milliseconds at_least) {
  state_ = state::open;
  open_until_ = now + std::max(cooldown_, at_least);
  cooldown_ = std::min(cooldown_ * 2, s_.max_cooldown);
  probes_in_flight_ = 0;
  probe_successes_ = 0;
  ++trips_;
}

void circuit_breaker::close(clock::time_point now) {
  state_ = state::closed;
  consecutive_ = 0;
  probes_in_flight_ = 0;
  probe_successes_ = 0;
  healthy_since_ = now;
  // The failures that tripped it no longer count against the deployment.
  buckets_ = {};
}

std::string_view to_string(circuit_breaker::state s) {
  switch (s) {
  case circuit_breaker::state::closed:
    return "closed";
  case circuit_breaker::state::open:
    return "open";
  case circuit_breaker::state::half_open:
    return "half_open";
  }
  return "unknown";
}

} // namespace tollgate
