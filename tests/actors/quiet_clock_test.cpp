#include <boost/test/unit_test.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <caf/all.hpp>

#include "actors/request_timeouts.hpp"
#include "actors/scheduling/quiet_clock.hpp"
#include "tests/support/two_workers.hpp"

// The gateway's actor clock in a real actor system: what it schedules arrives, in order and
// not early; what is cancelled never arrives; and an actor that ends does not wake it.

using namespace std::chrono_literals;

namespace {

using tollgate::quiet_clock;
using tollgate::test::two_workers;

constexpr auto an_hour = std::chrono::seconds(3600);

/// Answers nothing: requests to it can only time out. (The promises it keeps refer to it, so
/// it lives until told to exit.)
struct silent_state {
  std::vector<caf::response_promise> owed;
};

caf::behavior silent(caf::stateful_actor<silent_state>* self) {
  return {[=](int) { self->state.owed.push_back(self->make_response_promise()); }};
}

/// Answers each int with itself and quits on a negative one.
caf::behavior echo(caf::event_based_actor* self) {
  return {[=](int n) {
    if (n < 0)
      self->quit();
    return n;
  }};
}

/// The same with a receive timeout of 2 hours, which each message it handles sets afresh.
caf::behavior echo_with_idle_timeout(caf::event_based_actor* self) {
  return {[=](int n) {
            if (n < 0)
              self->quit();
            return n;
          },
          caf::after(2 * an_hour) >> [] {}};
}

/// Schedules a message to itself an hour from now and does nothing else; `ended` is set when
/// the actor is gone.
caf::behavior waits_an_hour(caf::event_based_actor* self,
                            std::shared_ptr<std::atomic<bool>> ended) {
  self->attach_functor([ended] { ended->store(true); });
  self->delayed_send(self, an_hour, 1);
  return {[](int) {}};
}

/// Sends itself a message for an hour from now, and `target` one for 100 ms from now; answers
/// an int with itself, and ends when told (a string).
caf::behavior sets_timers_then_quits(caf::event_based_actor* self, caf::actor target) {
  self->delayed_send(self, an_hour, 1);
  self->delayed_send(target, 100ms, 7);
  return {[](int n) { return n; }, [=](const std::string&) { self->quit(); }};
}

/// Passes each int on to `target` with an hour's timeout and answers with its answer; takes
/// the timeout off the clock when the answer comes if `forget` is set.
caf::behavior asks_with_a_timeout(caf::event_based_actor* self, caf::actor target, bool forget) {
  return {[=](int n) -> caf::result<int> {
    auto promise = self->make_response_promise<int>();
    self->request(target, an_hour, n)
        .then(
            [=](int m) mutable {
              if (forget)
                tollgate::forget_request_timeout(self);
              promise.deliver(m);
            },
            [=](caf::error& err) mutable { promise.deliver(err); });
    return promise;
  }};
}

/// Whether `holds` comes true within 10 s. (An actor cancels its timeouts after it tells those
/// waiting for it that it ended.)
template <class Predicate>
bool eventually(Predicate holds) {
  auto until = std::chrono::steady_clock::now() + 10s;
  while (!holds() && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(1ms);
  return holds();
}

struct a_system {
  two_workers cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  quiet_clock& clock = dynamic_cast<quiet_clock&>(sys.clock());
};

} // namespace

BOOST_AUTO_TEST_SUITE(quiet_clock_timers)

BOOST_FIXTURE_TEST_CASE(delayed_messages_arrive_in_order_and_never_early, a_system) {
  auto start = std::chrono::steady_clock::now();
  for (int ms : {300, 100, 200})
    self->delayed_send(self, std::chrono::milliseconds(ms), ms);
  std::vector<int> order;
  for (int i = 0; i < 3; ++i)
    self->receive(
        [&](int ms) {
          order.push_back(ms);
          BOOST_TEST((std::chrono::steady_clock::now() - start >= std::chrono::milliseconds(ms)));
        },
        caf::after(10s) >> [] {});
  BOOST_TEST(order == (std::vector<int>{100, 200, 300}));
}

BOOST_FIXTURE_TEST_CASE(an_earlier_deadline_cuts_the_clocks_sleep_short, a_system) {
  // The thread sleeps until the hour is up unless a sooner deadline wakes it.
  auto later = sys.spawn(silent);
  self->delayed_send(later, an_hour, 1);
  self->delayed_send(self, 50ms, 2);
  int got = 0;
  self->receive([&](int n) { got = n; }, caf::after(10s) >> [] {});
  BOOST_TEST(got == 2);
  // The hour's message keeps `later` alive, and the system waits for it at shutdown.
  self->send_exit(later, caf::exit_reason::user_shutdown);
}

BOOST_FIXTURE_TEST_CASE(a_request_times_out, a_system) {
  auto mute = sys.spawn(silent);
  caf::error err;
  self->request(mute, 100ms, 1).receive([](int) {}, [&](caf::error& e) { err = e; });
  BOOST_TEST((err == caf::sec::request_timeout), caf::to_string(err));
  self->send_exit(mute, caf::exit_reason::user_shutdown); // its promise keeps it alive
}

BOOST_FIXTURE_TEST_CASE(a_new_receive_timeout_replaces_the_old_and_an_ending_actor_takes_its_own,
                        a_system) {
  auto before = clock.pending();
  auto echo = sys.spawn(echo_with_idle_timeout);
  for (int n = 1; n <= 5; ++n)
    self->request(echo, caf::infinite, n).receive([](int) {}, [](caf::error&) {});
  BOOST_TEST(clock.pending() == before + 1);
  self->send_exit(echo, caf::exit_reason::user_shutdown);
  self->wait_for(echo);
  BOOST_TEST(eventually([&] { return clock.pending() == before; }));
}

BOOST_FIXTURE_TEST_CASE(actors_that_end_or_set_later_timeouts_do_not_wake_the_clock, a_system) {
  // CAF cancels the timeouts of every actor that ends, whether it had any or not; CAF's own
  // clock woke its thread for each, that is, once per call of the gateway.
  auto later = sys.spawn(silent);
  self->delayed_send(later, an_hour, 1); // the thread sleeps until then
  auto before = clock.wake_ups();
  for (int i = 0; i < 1000; ++i) {
    auto actor = i % 2 == 0 ? sys.spawn(echo) : sys.spawn(echo_with_idle_timeout);
    self->request(actor, caf::infinite, -1).receive([](int) {}, [](caf::error&) {});
    self->wait_for(actor);
  }
  auto woken = clock.wake_ups() - before;
  BOOST_TEST(woken < 10u, woken << " wake-ups of the clock thread for 1000 actors that ended");
  self->send_exit(later, caf::exit_reason::user_shutdown);
}

BOOST_FIXTURE_TEST_CASE(dropping_a_timeout_that_holds_the_last_reference_ends_the_actor, a_system) {
  // The actor ends inside the drop and cancels its timeouts on the same clock: the drop must
  // not hold the clock's lock by then.
  auto ended = std::make_shared<std::atomic<bool>>(false);
  {
    auto waiter = sys.spawn(waits_an_hour, ended);
    self->request(waiter, caf::infinite, 0).receive([] {}, [](caf::error&) {});
  }
  BOOST_TEST(!ended->load());
  clock.cancel_all();
  BOOST_TEST(eventually([&] { return ended->load(); }));
  BOOST_TEST(clock.pending() == 0u);
}

BOOST_FIXTURE_TEST_CASE(an_ending_actor_drops_what_it_sent_itself_and_not_what_it_sent_others,
                        a_system) {
  // A stream's request actor sends itself a keep-alive tick; when the call ends before the tick
  // comes due, the tick must not keep the ended actor (a few KB each) until then.
  auto before = clock.pending();
  auto timers = sys.spawn(sets_timers_then_quits, caf::actor{self});
  auto weak = caf::actor_cast<caf::weak_actor_ptr>(timers);
  self->request(timers, caf::infinite, 0).receive([](int) {}, [](caf::error&) {});
  BOOST_TEST(clock.pending() == before + 2);
  self->send(timers, std::string{"quit"});
  self->wait_for(timers);
  timers = nullptr;
  // The message to the scoped actor outlives its sender (and refers to it until received).
  int got = 0;
  self->receive([&](int n) { got = n; }, caf::after(10s) >> [] {});
  BOOST_TEST(got == 7);
  BOOST_TEST(eventually([&] { return weak.lock() == nullptr; }),
             "the ended actor is still referenced");
  BOOST_TEST(clock.pending() == before);
}

BOOST_FIXTURE_TEST_CASE(an_answered_request_leaves_its_timeout_unless_forgotten, a_system) {
  // CAF 0.17 keeps a request's timeout on the clock after the answer came, until it is due: a
  // long-lived actor that asks with a timeout (the directory relaying calls to other nodes)
  // would pile up one per request. forget_request_timeout takes it off.
  auto before = clock.pending();
  auto answers = sys.spawn(echo);
  for (bool forget : {false, true}) {
    auto asker = sys.spawn(asks_with_a_timeout, answers, forget);
    for (int i = 1; i <= 5; ++i) {
      int got = 0;
      self->request(asker, caf::infinite, i).receive([&](int n) { got = n; }, [](caf::error&) {});
      BOOST_TEST(got == i);
    }
    BOOST_TEST(clock.pending() == before + (forget ? 0u : 5u), (forget ? "forgotten" : "kept"));
    self->send_exit(asker, caf::exit_reason::user_shutdown);
    self->wait_for(asker);
    BOOST_TEST(eventually([&] { return clock.pending() == before; })); // its end takes them
  }
  self->send_exit(answers, caf::exit_reason::user_shutdown);
}

BOOST_AUTO_TEST_SUITE_END()
