#pragma once

#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <thread>
#include <vector>

#include <caf/detail/thread_safe_actor_clock.hpp>

namespace tollgate {

/// The actor system's clock (timeouts, `delayed_send`), with a thread that wakes only when a
/// deadline comes due or moves earlier than the one it sleeps for.
///
/// CAF's own clock hands every change to its thread and wakes it: one wake-up per actor that
/// ends, since CAF cancels an actor's timeouts when it ends, whether it had any or not. A call
/// ends at least one actor, so that thread woke once per call. Here the caller makes the
/// change itself under a mutex; a cancellation never wakes the thread (a deadline that was
/// cancelled wakes it at most once, for nothing). An actor's end also drops the messages it
/// sent itself for later (`delayed_send(self, ...)`), which would otherwise keep the ended
/// actor in memory until they come due.
///
/// Derived from CAF's thread-safe clock only because `coordinator::clock()` returns that type;
/// none of that class's own state is used.
class quiet_clock final : public caf::detail::thread_safe_actor_clock {
public:
  quiet_clock() = default;
  quiet_clock(const quiet_clock&) = delete;
  quiet_clock& operator=(const quiet_clock&) = delete;
  ~quiet_clock() override;

  /// Starts the thread that ships what comes due (named `tg-clock`).
  void start();
  /// Ends that thread and drops whatever is still scheduled. Idempotent.
  void stop();

  /// How often the thread has woken to look at the schedule (tests).
  std::size_t wake_ups() const;
  /// Timeouts and delayed messages not yet due (tests).
  std::size_t pending() const;

  void set_ordinary_timeout(time_point t, caf::abstract_actor* self, caf::atom_value type,
                            uint64_t id) override;
  void set_request_timeout(time_point t, caf::abstract_actor* self, caf::message_id id) override;
  void set_multi_timeout(time_point t, caf::abstract_actor* self, caf::atom_value type,
                         uint64_t id) override;
  void cancel_ordinary_timeout(caf::abstract_actor* self, caf::atom_value type) override;
  void cancel_request_timeout(caf::abstract_actor* self, caf::message_id id) override;
  void cancel_timeouts(caf::abstract_actor* self) override;
  void schedule_message(time_point t, caf::strong_actor_ptr receiver,
                        caf::mailbox_element_ptr content) override;
  void schedule_message(time_point t, caf::group target, caf::strong_actor_ptr sender,
                        caf::message content) override;
  void cancel_all() override;

private:
  /// Events taken out of the schedule. They are destroyed only after the mutex is released:
  /// an event may hold the last reference to an actor, whose end cancels its timeouts here.
  using removed_events = std::vector<unique_delayed_event_ptr>;

  /// Adds `x` to the schedule, filed under actor `owner` (if valid) so that the owner's
  /// cancellations find it; wakes the thread if `x` comes due before it would wake.
  template <class Event>
  void add(time_point t, std::unique_ptr<Event> x, caf::actor_id owner);
  /// Removes the entries of actor `aid` that `match`.
  template <class Match>
  void remove(caf::actor_id aid, Match match);
  /// Moves the entry that `i` points at into `out` and erases it.
  void take(actor_lookup_map::iterator i, removed_events& out);
  void run();

  mutable std::mutex lock_;
  std::condition_variable wake_;
  /// When the thread will wake by itself; `time_point::min()` while it is awake.
  time_point sleeps_until_ = time_point::min();
  std::size_t wake_ups_ = 0;
  bool stopping_ = false;
  std::thread thread_;
};

} // namespace tollgate
