#include <boost/test/unit_test.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <future>
#include <memory>
#include <string>
#include <thread>

#include <caf/all.hpp>
#include <caf/scheduler/coordinator.hpp>

#include "http/worker_io.hpp"
#include "tests/support/thread_stats.hpp"
#include "tests/support/two_workers.hpp"

// The front end's io_context run by the actor workers (local_first_policy's event loop), in
// a real actor system with 2 workers: where its handlers run, what they spawn, and that the
// workers leave it when it is detached.

using namespace std::chrono_literals;
namespace asio = restinio::asio_ns;

namespace {

using tollgate::test::this_thread_name;
using tollgate::test::two_workers;

/// Where a piece of work ran.
struct place {
  std::thread::id thread;
  std::string name;
};

place here() {
  return {std::this_thread::get_id(), this_thread_name()};
}

/// Posts `f` to `io`; what it returns, waited for at most 10 s.
template <class F>
auto run_in(asio::io_context& io, F f) {
  auto done = std::make_shared<std::promise<decltype(f())>>();
  auto result = done->get_future();
  asio::post(io, [done, f] { done->set_value(f()); });
  BOOST_TEST_REQUIRE((result.wait_for(10s) == std::future_status::ready),
                     "the handler did not run within 10 s");
  return result.get();
}

/// An actor system on the policy with 2 workers and an io_context they run.
struct a_system {
  two_workers cfg;
  caf::actor_system sys{cfg};
  asio::io_context io;
  std::unique_ptr<tollgate::http::worker_io> attached =
      std::make_unique<tollgate::http::worker_io>(sys, io);
};

} // namespace

BOOST_AUTO_TEST_SUITE(worker_io_loop)

BOOST_FIXTURE_TEST_CASE(handlers_run_on_the_actor_workers, a_system) {
  for (int round = 0; round < 10; ++round) {
    auto where = run_in(io, here);
    BOOST_TEST(where.name == "tg-worker");
    BOOST_TEST((where.thread != std::this_thread::get_id()));
  }
}

BOOST_FIXTURE_TEST_CASE(timers_of_the_io_context_fire_while_the_workers_are_idle, a_system) {
  auto fired = std::make_shared<std::promise<place>>();
  auto result = fired->get_future();
  asio::steady_timer timer(io, 20ms);
  timer.async_wait([fired](const asio::error_code&) { fired->set_value(here()); });
  BOOST_TEST_REQUIRE((result.wait_for(10s) == std::future_status::ready));
  BOOST_TEST(result.get().name == "tg-worker");
}

BOOST_FIXTURE_TEST_CASE(an_actor_spawned_by_a_handler_runs_next_on_the_same_worker, a_system) {
  // The spawn goes to the worker's own queue: the other worker takes it only if it happens to
  // wake and steal, which is rare.
  int same = 0;
  for (int round = 0; round < 20; ++round) {
    auto actor_ran = std::make_shared<std::promise<std::thread::id>>();
    auto actor_thread = actor_ran->get_future();
    auto handler_thread = run_in(io, [&] {
      sys.spawn([actor_ran](caf::event_based_actor*) {
        actor_ran->set_value(std::this_thread::get_id());
      });
      return std::this_thread::get_id();
    });
    BOOST_TEST_REQUIRE((actor_thread.wait_for(10s) == std::future_status::ready));
    if (actor_thread.get() == handler_thread)
      ++same;
  }
  BOOST_TEST(same >= 15, same << " of 20 spawned actors ran on their handler's worker");
}

BOOST_FIXTURE_TEST_CASE(an_actor_spawned_by_a_handler_wakes_no_other_worker, a_system) {
  // The post wakes one worker and its handler's spawn runs there. Were the spawn handed to
  // the shared queue, it would wake the other worker as well.
  constexpr int rounds = 200;
  auto spawn_and_wait = [&] {
    auto actor_ran = std::make_shared<std::promise<void>>();
    auto ran = actor_ran->get_future();
    run_in(io, [&] {
      sys.spawn([actor_ran](caf::event_based_actor*) { actor_ran->set_value(); });
      return 0;
    });
    BOOST_TEST_REQUIRE((ran.wait_for(10s) == std::future_status::ready));
  };
  spawn_and_wait(); // the workers have named their threads
  auto before = tollgate::test::voluntary_switches_of("tg-worker");
  for (int round = 0; round < rounds; ++round)
    spawn_and_wait();
  auto per_round =
      static_cast<double>(tollgate::test::voluntary_switches_of("tg-worker") - before) / rounds;
  BOOST_TEST(per_round < 1.5, per_round << " worker thread switches per handler and its actor");
}

BOOST_FIXTURE_TEST_CASE(messages_from_outside_wake_a_worker_waiting_in_the_loop, a_system) {
  // Both workers wait in the io_context; messages from this thread must reach an actor.
  caf::scoped_actor self{sys};
  auto echo = sys.spawn([]() -> caf::behavior { return {[](int n) { return n + 1; }}; });
  for (int round = 0; round < 50; ++round) {
    std::this_thread::sleep_for(1ms); // let the workers go back to sleep
    int got = -1;
    self->request(echo, 10s, round).receive([&](int n) { got = n; }, [](caf::error&) {});
    BOOST_TEST_REQUIRE(got == round + 1);
  }
}

BOOST_FIXTURE_TEST_CASE(detached_the_loop_is_left_and_actors_still_run, a_system) {
  auto before = run_in(io, here);
  BOOST_TEST(before.name == "tg-worker");
  attached.reset();
  // No worker runs the io_context any more: a handler posted now stays in it.
  auto ran = std::make_shared<std::atomic<bool>>(false);
  asio::post(io, [ran] { ran->store(true); });
  caf::scoped_actor self{sys};
  auto echo = sys.spawn([]() -> caf::behavior { return {[](int n) { return n + 1; }}; });
  for (int round = 0; round < 20; ++round) {
    int got = -1;
    self->request(echo, 10s, round).receive([&](int n) { got = n; }, [](caf::error&) {});
    BOOST_TEST_REQUIRE(got == round + 1);
  }
  BOOST_TEST(!ran->load());
}

BOOST_AUTO_TEST_SUITE_END()
