#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>

#include <caf/detail/double_ended_queue.hpp>
#include <caf/policy/unprofiled.hpp>
#include <caf/resumable.hpp>
#include <caf/scheduler/abstract_coordinator.hpp>

#include "actors/thread_name.hpp"

namespace tollgate {

/// The CAF scheduling policy of the gateway, made for calls that are a chain of short actor
/// hops.
///
/// - A message that an actor on a worker thread sends to another actor is run by the same
///   worker, next: no hand-off between threads and no wake-up. (CAF's work-sharing policy
///   puts every such message on one locked queue and wakes another worker for it, so each
///   hop of a call paid a thread wake-up.)
/// - Work from other threads (the HTTP threads, the upstream thread, detached actors) goes to
///   one shared queue and wakes a sleeping worker at once. (CAF's work-stealing policy hands
///   it to a worker round robin, and an idle worker polls in 50 µs sleeps that an arriving
///   job cannot cut short.)
/// - An idle worker takes from the shared queue, then steals the oldest job of another
///   worker, then sleeps until woken. A worker that queues a second job of its own while
///   others sleep wakes one of them to steal it, so a burst spreads over the cores.
/// - Every `shared_first_every`-th pick looks at the shared queue first, so workers busy with
///   their own chains still take new work.
///
/// It relies on actors never blocking (DESIGN): a single job queued behind a long one on the
/// same worker waits until that one ends, or until an idle worker's `idle_sleep` runs out and
/// it steals the job.
///
/// Plugged in with `actor_system_config::load<caf::scheduler::coordinator<local_first_policy>>`.
class local_first_policy : public caf::policy::unprofiled {
public:
  using job = caf::resumable*;
  using local_queue = caf::detail::double_ended_queue<caf::resumable>;

  static constexpr std::size_t shared_first_every = 32;
  static constexpr std::chrono::milliseconds idle_sleep{10};

  struct coordinator_data {
    explicit coordinator_data(caf::scheduler::abstract_coordinator*) {}

    std::mutex lock;
    std::condition_variable cv;
    std::deque<job> shared;             // guarded by lock
    std::size_t steal_calls = 0;        // guarded by lock: wake-ups asked for to steal
    std::size_t sleepers = 0;           // guarded by lock
    std::atomic<std::size_t> queued{0}; // shared.size(), read without the lock
    std::atomic<std::size_t> asleep{0}; // sleepers, read without the lock
  };

  struct worker_data {
    explicit worker_data(caf::scheduler::abstract_coordinator*) {}
    // Workers are made by copying one initial value; each gets a fresh queue.
    worker_data(const worker_data&) {}

    local_queue local;
    std::size_t picks = 0;
  };

  template <class Coordinator>
  void central_enqueue(Coordinator* self, job x) {
    auto& c = d(self);
    {
      std::lock_guard<std::mutex> guard(c.lock);
      c.shared.push_back(x);
      c.queued.store(c.shared.size(), std::memory_order_relaxed);
    }
    c.cv.notify_one();
  }

  template <class Worker>
  void external_enqueue(Worker* self, job x) {
    central_enqueue(self->parent(), x);
  }

  template <class Worker>
  void internal_enqueue(Worker* self, job x) {
    enqueue_local(self, x, true);
  }

  template <class Worker>
  void resume_job_later(Worker* self, job x) {
    // The job gave up the thread to let others run: behind the worker's other jobs.
    enqueue_local(self, x, false);
  }

  template <class Worker>
  job dequeue(Worker* self) {
    name_this_thread_once("tg-worker");
    auto& c = d(self->parent());
    auto& w = d(self);
    for (;;) {
      if (++w.picks % shared_first_every == 0)
        if (auto x = take_shared(c))
          return x;
      if (auto x = w.local.take_head())
        return x;
      if (auto x = take_shared(c))
        return x;
      if (auto x = steal(self))
        return x;
      std::unique_lock<std::mutex> guard(c.lock);
      if (c.shared.empty() && c.steal_calls == 0) {
        ++c.sleepers;
        c.asleep.store(c.sleepers, std::memory_order_relaxed);
        c.cv.wait_for(guard, idle_sleep, [&] { return !c.shared.empty() || c.steal_calls > 0; });
        --c.sleepers;
        c.asleep.store(c.sleepers, std::memory_order_relaxed);
      }
      if (!c.shared.empty())
        return pop_shared(c);
      if (c.steal_calls > 0)
        --c.steal_calls;
      // Woken to steal, or the idle sleep ran out: look around again.
    }
  }

  template <class Worker, class UnaryFunction>
  void foreach_resumable(Worker* self, UnaryFunction f) {
    while (auto x = d(self).local.take_head())
      f(x);
  }

  template <class Coordinator, class UnaryFunction>
  void foreach_central_resumable(Coordinator* self, UnaryFunction f) {
    auto& c = d(self);
    std::unique_lock<std::mutex> guard(c.lock);
    while (!c.shared.empty())
      f(pop_shared(c));
  }

private:
  static job pop_shared(coordinator_data& c) {
    auto x = c.shared.front();
    c.shared.pop_front();
    c.queued.store(c.shared.size(), std::memory_order_relaxed);
    return x;
  }

  static job take_shared(coordinator_data& c) {
    if (c.queued.load(std::memory_order_relaxed) == 0)
      return nullptr;
    std::lock_guard<std::mutex> guard(c.lock);
    return c.shared.empty() ? nullptr : pop_shared(c);
  }

  template <class Worker>
  void enqueue_local(Worker* self, job x, bool next) {
    auto& local = d(self).local;
    bool busy = !local.empty();
    if (next)
      local.prepend(x);
    else
      local.append(x);
    if (busy)
      call_a_thief(self->parent());
  }

  /// Wakes a sleeping worker to steal, unless enough are already on their way.
  template <class Coordinator>
  void call_a_thief(Coordinator* self) {
    auto& c = d(self);
    if (c.asleep.load(std::memory_order_relaxed) == 0)
      return;
    {
      std::lock_guard<std::mutex> guard(c.lock);
      if (c.steal_calls >= c.sleepers)
        return;
      ++c.steal_calls;
    }
    c.cv.notify_one();
  }

  /// The oldest job of the first other worker that has one.
  template <class Worker>
  job steal(Worker* self) {
    auto* p = self->parent();
    auto n = p->num_workers();
    for (std::size_t i = 1; i < n; ++i) {
      auto& victim = d(p->worker_by_id((self->id() + i) % n)).local;
      if (victim.empty())
        continue;
      if (auto x = victim.take_tail())
        return x;
    }
    return nullptr;
  }
};

} // namespace tollgate
