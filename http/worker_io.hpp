#pragma once

#include <chrono>
#include <cstddef>

#include <restinio/asio_include.hpp>

#include "actors/scheduling/local_first_policy.hpp"

namespace tollgate::http {

/// An asio io_context run by the actor workers (local_first_policy's event loop), so that
/// the front end's sockets are served on the threads that run the actors.
///
/// A request read on a worker spawns its request actor on that worker's own queue, and the
/// actor's first hops run there next, with no hand-off to another thread. (With the front
/// end on threads of its own, each call crossed from an HTTP thread to a worker and back, and
/// at light load each crossing woke a sleeping thread.) An idle worker waits in the
/// io_context: one of them in `epoll_wait`, the others on asio's condition variable.
class worker_io final : public worker_event_loop {
public:
  /// Handlers a busy worker runs at a time between its jobs.
  static constexpr std::size_t handlers_per_poll = 16;

  /// Attaches `io` to the workers of `sys` (which runs on local_first_policy).
  worker_io(caf::actor_system& sys, restinio::asio_ns::io_context& io)
      : scheduler_(local_first_data(sys))
      , io_(io) {
    local_first_policy::attach_event_loop(scheduler_, *this);
  }
  /// Detaches it: the workers no longer run it, and it may be destroyed.
  ~worker_io() override { local_first_policy::detach_event_loop(scheduler_); }

  worker_io(const worker_io&) = delete;
  worker_io& operator=(const worker_io&) = delete;

  bool poll() override {
    std::size_t n = 0;
    while (n < handlers_per_poll && io_.poll_one() > 0)
      ++n;
    return n > 0;
  }
  void run_one_for(std::chrono::milliseconds limit) override { io_.run_one_for(limit); }
  void wake() override {
    restinio::asio_ns::post(io_, [] {});
  }
  void stop() override { io_.stop(); }

private:
  local_first_policy::coordinator_data& scheduler_;
  restinio::asio_ns::io_context& io_;
  // Keeps run_one_for waiting while the io_context has no handlers.
  restinio::asio_ns::executor_work_guard<restinio::asio_ns::io_context::executor_type> work_{
      io_.get_executor()};
};

/// An io_context that the actor workers run for as long as this lives: the upstream's sockets
/// (upstream_loop) and, with `http.threads` 0, the front end's wait in it.
struct workers_io_context {
  explicit workers_io_context(caf::actor_system& sys)
      : attached(sys, io) {}

  restinio::asio_ns::io_context io;
  worker_io attached; // ends first: the workers leave io before it ends
};

} // namespace tollgate::http
