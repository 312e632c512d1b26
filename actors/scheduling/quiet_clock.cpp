#include "actors/scheduling/quiet_clock.hpp"

#include <type_traits>
#include <utility>

#include "actors/thread_name.hpp"

namespace tollgate {

namespace {

using clock_types = caf::detail::simple_actor_clock;

/// Matches an actor's ordinary timeout of `type` (it has at most one of each type).
auto ordinary_of_type(caf::atom_value type) {
  return [type](const clock_types::delayed_event& y) {
    return y.subtype == clock_types::ordinary_timeout_type &&
           static_cast<const clock_types::ordinary_timeout&>(y).type == type;
  };
}

} // namespace

quiet_clock::~quiet_clock() {
  stop();
}

void quiet_clock::start() {
  std::lock_guard<std::mutex> guard(lock_);
  if (thread_.joinable() || stopping_)
    return;
  thread_ = std::thread([this] {
    name_this_thread("tg-clock");
    run();
  });
}

void quiet_clock::stop() {
  {
    std::lock_guard<std::mutex> guard(lock_);
    stopping_ = true;
  }
  wake_.notify_one();
  if (thread_.joinable())
    thread_.join();
  cancel_all();
}

std::size_t quiet_clock::wake_ups() const {
  std::lock_guard<std::mutex> guard(lock_);
  return wake_ups_;
}

std::size_t quiet_clock::pending() const {
  std::lock_guard<std::mutex> guard(lock_);
  return schedule_.size();
}

void quiet_clock::take(actor_lookup_map::iterator i, removed_events& out) {
  out.emplace_back(std::move(i->second->second));
  schedule_.erase(i->second);
  actor_lookup_.erase(i);
}

template <class Event>
void quiet_clock::add(time_point t, std::unique_ptr<Event> x, caf::actor_id owner) {
  removed_events replaced;
  bool wake = false;
  {
    std::lock_guard<std::mutex> guard(lock_);
    if (stopping_)
      return; // `x` is destroyed after the guard
    if constexpr (std::is_same_v<Event, ordinary_timeout>) {
      // An actor has one ordinary timeout of each type: a new one replaces the old.
      auto old = lookup(owner, [match = ordinary_of_type(x->type)](const auto& kv) {
        return match(*kv.second->second);
      });
      if (old != actor_lookup_.end())
        take(old, replaced);
    }
    auto i = schedule_.emplace(t, std::move(x));
    i->second->backlink =
        owner != caf::invalid_actor_id ? actor_lookup_.emplace(owner, i) : actor_lookup_.end();
    wake = t < sleeps_until_;
  }
  if (wake)
    wake_.notify_one();
}

template <class Match>
void quiet_clock::remove(caf::actor_id aid, Match match) {
  removed_events removed; // declared before the guard, so destroyed after it
  std::lock_guard<std::mutex> guard(lock_);
  auto [first, last] = actor_lookup_.equal_range(aid);
  while (first != last) {
    auto i = first++;
    if (match(*i->second->second))
      take(i, removed);
  }
}

void quiet_clock::set_ordinary_timeout(time_point t, caf::abstract_actor* self,
                                       caf::atom_value type, uint64_t id) {
  add(t, std::make_unique<ordinary_timeout>(t, self->ctrl(), type, id), self->id());
}

void quiet_clock::set_request_timeout(time_point t, caf::abstract_actor* self, caf::message_id id) {
  add(t, std::make_unique<request_timeout>(t, self->ctrl(), id), self->id());
}

void quiet_clock::set_multi_timeout(time_point t, caf::abstract_actor* self, caf::atom_value type,
                                    uint64_t id) {
  add(t, std::make_unique<multi_timeout>(t, self->ctrl(), type, id), self->id());
}

void quiet_clock::cancel_ordinary_timeout(caf::abstract_actor* self, caf::atom_value type) {
  remove(self->id(), ordinary_of_type(type));
}

void quiet_clock::cancel_request_timeout(caf::abstract_actor* self, caf::message_id id) {
  remove(self->id(), [&](const delayed_event& y) {
    return y.subtype == request_timeout_type && static_cast<const request_timeout&>(y).id == id;
  });
}

void quiet_clock::cancel_timeouts(caf::abstract_actor* self) {
  // Called as the actor ends: its timeouts, and the messages it sent itself for later.
  remove(self->id(), [](const delayed_event&) { return true; });
}

void quiet_clock::schedule_message(time_point t, caf::strong_actor_ptr receiver,
                                   caf::mailbox_element_ptr content) {
  // A message an actor sends itself for later (a timer) is filed under the actor, so that its
  // end drops it: it would only be dropped on arrival, and until then it keeps the ended actor
  // in memory. A request is left to arrive, to be answered with an error.
  auto owner = content->mid.is_async() && content->sender == receiver ? receiver->id()
                                                                      : caf::invalid_actor_id;
  add(t, std::make_unique<actor_msg>(t, std::move(receiver), std::move(content)), owner);
}

void quiet_clock::schedule_message(time_point t, caf::group target, caf::strong_actor_ptr sender,
                                   caf::message content) {
  add(t, std::make_unique<group_msg>(t, std::move(target), std::move(sender), std::move(content)),
      caf::invalid_actor_id);
}

void quiet_clock::cancel_all() {
  removed_events removed;
  std::lock_guard<std::mutex> guard(lock_);
  for (auto& [due, x] : schedule_)
    removed.emplace_back(std::move(x));
  schedule_.clear();
  actor_lookup_.clear();
}

void quiet_clock::run() {
  removed_events due;
  std::unique_lock<std::mutex> guard(lock_);
  while (!stopping_) {
    auto now = clock_type::now();
    while (!schedule_.empty() && schedule_.begin()->first <= now) {
      auto i = schedule_.begin();
      if (i->second->backlink != actor_lookup_.end())
        actor_lookup_.erase(i->second->backlink);
      due.emplace_back(std::move(i->second));
      schedule_.erase(i);
    }
    if (!due.empty()) {
      // Shipping enqueues to actors, which may set or cancel timeouts here.
      guard.unlock();
      for (auto& x : due)
        ship(*x);
      due.clear();
      guard.lock();
      continue;
    }
    sleeps_until_ = schedule_.empty() ? time_point::max() : schedule_.begin()->first;
    if (sleeps_until_ == time_point::max())
      wake_.wait(guard);
    else
      wake_.wait_until(guard, sleeps_until_);
    sleeps_until_ = time_point::min();
    ++wake_ups_;
  }
}

} // namespace tollgate
