#pragma once

#include <caf/actor_system.hpp>
#include <caf/detail/type_list.hpp>
#include <caf/scheduler/coordinator.hpp>

#include "actors/scheduling/local_first_policy.hpp"
#include "actors/scheduling/quiet_clock.hpp"

namespace tollgate {

/// The gateway's CAF scheduler: `local_first_policy` for the workers and `quiet_clock` for
/// timeouts. Plugged in with `actor_system_config::load<gateway_scheduler>()`.
///
/// CAF's coordinator still starts its own clock thread (`caf.clock`); nothing reaches that
/// clock, so the thread sleeps until the system stops.
class gateway_scheduler final : public caf::scheduler::coordinator<local_first_policy> {
public:
  using super = caf::scheduler::coordinator<local_first_policy>;

  explicit gateway_scheduler(caf::actor_system& sys)
      : super(sys) {}

  static caf::actor_system::module* make(caf::actor_system& sys, caf::detail::type_list<>) {
    return new gateway_scheduler(sys);
  }

  quiet_clock& clock() noexcept override { return clock_; }

protected:
  void start() override {
    clock_.start();
    super::start();
  }

  void stop() override {
    // Actors may set timeouts until the workers have stopped.
    super::stop();
    clock_.stop();
  }

private:
  quiet_clock clock_;
};

} // namespace tollgate
