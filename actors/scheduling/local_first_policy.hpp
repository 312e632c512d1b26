#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>
#include <thread>

#include <caf/actor_system.hpp>
#include <caf/policy/unprofiled.hpp>
#include <caf/resumable.hpp>
#include <caf/scheduler/abstract_coordinator.hpp>
#include <caf/scheduler/coordinator.hpp>

#include "actors/scheduling/job_deque.hpp"
#include "actors/thread_name.hpp"

namespace tollgate {

/// An event loop that idle actor workers run between their jobs (the HTTP front end's sockets,
/// see `http/worker_io.hpp`). Like actors, what it runs must never block.
class worker_event_loop {
public:
  virtual ~worker_event_loop() = default;
  /// Runs a few ready handlers without waiting; whether any ran.
  virtual bool poll() = 0;
  /// Runs one handler, waiting for it at most `limit`.
  virtual void run_one_for(std::chrono::milliseconds limit) = 0;
  /// Makes one waiting `run_one_for` return.
  virtual void wake() = 0;
  /// Makes every `run_one_for`, now and later, return at once.
  virtual void stop() = 0;
};

/// The CAF scheduling policy of the gateway, made for calls that are a chain of short actor
/// hops.
///
/// - A message that an actor on a worker thread sends to another actor is run by the same
///   worker, next: no hand-off between threads and no wake-up. (CAF's work-sharing policy
///   puts every such message on one locked queue and wakes another worker for it, so each
///   hop of a call paid a thread wake-up.)
/// - So is work that code on a worker thread queues outside an actor (a spawn or an
///   `anon_send` from an event loop handler), behind the worker's other jobs.
/// - Work from other threads (detached actors such as the ledger committer, the clock) goes
///   to one shared queue and wakes a sleeping worker at once. (CAF's work-stealing policy
///   hands it to a worker round robin, and an idle worker polls in 50 µs sleeps that an
///   arriving job cannot cut short.)
/// - A worker whose own queue is empty runs the ready handlers of the event loop attached
///   with `attach_event_loop` (if any), then takes from the shared queue, then steals the
///   oldest job of another worker, then sleeps until woken: in the event loop if one is
///   attached (so that one idle worker waits in `epoll_wait` for the sockets), else on a
///   condition variable. The loop comes before the shared queue so that the sockets' reads
///   and writes do not wait behind a steady flow of work from other threads (stream chunks,
///   when the upstream had a thread of its own): they piled up, and 10,000 streams took
///   20-25 MB more.
/// - A worker that queues a second job of its own while others sleep wakes one of them to
///   steal it, so a burst spreads over the cores.
/// - Every `shared_first_every`-th pick looks at the event loop and the shared queue first, so
///   workers busy with their own chains still take new work.
///
/// It relies on actors never blocking (DESIGN): a single job queued behind a long one on the
/// same worker waits until that one ends, or until an idle worker's `idle_sleep` runs out and
/// it steals the job.
///
/// Plugged in by `gateway_scheduler`.
class local_first_policy : public caf::policy::unprofiled {
public:
  using job = caf::resumable*;
  using local_queue = job_deque<caf::resumable>;

  static constexpr std::size_t shared_first_every = 32;
  static constexpr std::chrono::milliseconds idle_sleep{10};

  struct coordinator_data {
    explicit coordinator_data(caf::scheduler::abstract_coordinator*) {}

    std::mutex lock;
    std::condition_variable cv;
    std::atomic<worker_event_loop*> loop{nullptr};
    std::atomic<std::size_t> in_loop{0}; // workers that may be using loop
    std::deque<job> shared;              // guarded by lock
    std::size_t steal_calls = 0;         // guarded by lock: wake-ups asked for to steal
    std::size_t sleepers = 0;            // guarded by lock
    std::atomic<std::size_t> queued{0};  // shared.size(), read without the lock
    std::atomic<std::size_t> asleep{0};  // sleepers, read without the lock
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
    using worker = typename Coordinator::worker_type;
    if (auto* w = static_cast<worker*>(this_worker); w != nullptr && w->parent() == self) {
      enqueue_local(w, x, false);
      return;
    }
    auto& c = d(self);
    bool wake = false;
    {
      std::lock_guard<std::mutex> guard(c.lock);
      c.shared.push_back(x);
      c.queued.store(c.shared.size(), std::memory_order_relaxed);
      wake = c.sleepers > 0;
    }
    if (wake)
      wake_one(c);
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
    this_worker = self;
    auto& c = d(self->parent());
    auto& w = d(self);
    for (;;) {
      if (++w.picks % shared_first_every == 0) {
        poll_loop(c);
        if (auto x = take_shared(c))
          return x;
      }
      if (auto x = w.local.take_front())
        return x;
      if (poll_loop(c))
        continue; // its handlers may have queued jobs here
      if (auto x = take_shared(c))
        return x;
      if (auto x = steal(self))
        return x;
      std::unique_lock<std::mutex> guard(c.lock);
      if (c.shared.empty() && c.steal_calls == 0) {
        ++c.sleepers;
        c.asleep.store(c.sleepers, std::memory_order_relaxed);
        sleep(c, guard);
        --c.sleepers;
        c.asleep.store(c.sleepers, std::memory_order_relaxed);
      }
      if (!c.shared.empty())
        return pop_shared(c);
      if (c.steal_calls > 0)
        --c.steal_calls;
      // Woken to steal, by the event loop, or the idle sleep ran out: look around again.
    }
  }

  template <class Worker, class UnaryFunction>
  void foreach_resumable(Worker* self, UnaryFunction f) {
    while (auto x = d(self).local.take_front())
      f(x);
  }

  template <class Coordinator, class UnaryFunction>
  void foreach_central_resumable(Coordinator* self, UnaryFunction f) {
    auto& c = d(self);
    std::unique_lock<std::mutex> guard(c.lock);
    while (!c.shared.empty())
      f(pop_shared(c));
  }

  /// From now on idle workers run `loop` (see the class comment). `loop` must stay alive
  /// until `detach_event_loop`.
  static void attach_event_loop(coordinator_data& c, worker_event_loop& loop) {
    c.loop.store(&loop);
    std::lock_guard<std::mutex> guard(c.lock);
    c.cv.notify_all(); // sleepers move into the loop
  }

  /// Idle workers stop running the attached loop; returns once none is in it any more, so
  /// that the caller may destroy it. Handlers it has not run yet stay in it.
  static void detach_event_loop(coordinator_data& c) {
    auto* loop = c.loop.exchange(nullptr);
    if (loop == nullptr)
      return;
    loop->stop();
    while (c.in_loop.load() != 0)
      std::this_thread::yield();
  }

private:
  /// The worker whose loop runs on this thread, if any.
  static inline thread_local void* this_worker = nullptr;

  /// Runs `f` on the attached event loop, if there is one; whether there was. Sequentially
  /// consistent with `detach_event_loop`: a worker counted in `in_loop` before the loop is
  /// taken away finishes with it before `detach_event_loop` returns, and one counted after
  /// sees no loop.
  template <class F>
  static bool with_loop(coordinator_data& c, F f) {
    if (c.loop.load(std::memory_order_relaxed) == nullptr)
      return false;
    c.in_loop.fetch_add(1);
    auto* loop = c.loop.load();
    if (loop != nullptr)
      f(*loop);
    c.in_loop.fetch_sub(1);
    return loop != nullptr;
  }

  static bool poll_loop(coordinator_data& c) {
    bool ran = false;
    with_loop(c, [&](worker_event_loop& loop) { ran = loop.poll(); });
    return ran;
  }

  /// Waits for work; called with `guard` held, returns with it held.
  static void sleep(coordinator_data& c, std::unique_lock<std::mutex>& guard) {
    auto ready = [&] { return !c.shared.empty() || c.steal_calls > 0; };
    if (c.loop.load(std::memory_order_relaxed) == nullptr) {
      c.cv.wait_for(guard, idle_sleep, ready);
      return;
    }
    // A wake-up posted after the unlock stays queued in the loop: run_one_for returns at once.
    guard.unlock();
    with_loop(c, [](worker_event_loop& loop) { loop.run_one_for(idle_sleep); });
    guard.lock();
  }

  static void wake_one(coordinator_data& c) {
    if (!with_loop(c, [](worker_event_loop& loop) { loop.wake(); }))
      c.cv.notify_one();
  }

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
      local.push_front(x);
    else
      local.push_back(x);
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
    wake_one(c);
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
      if (auto x = victim.take_back())
        return x;
    }
    return nullptr;
  }
};

/// The scheduler data of `sys`, which must run on `local_first_policy`.
inline local_first_policy::coordinator_data& local_first_data(caf::actor_system& sys) {
  return dynamic_cast<caf::scheduler::coordinator<local_first_policy>&>(sys.scheduler()).data();
}

} // namespace tollgate
