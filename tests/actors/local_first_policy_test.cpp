#include <boost/test/unit_test.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include <caf/all.hpp>
#include <caf/scheduler/coordinator.hpp>

#include "actors/scheduling/local_first_policy.hpp"
#include "tests/support/thread_stats.hpp"
#include "tests/support/two_workers.hpp"

// The gateway's scheduling policy in a real actor system with 2 workers: where hops run,
// and that no job is left behind a busy worker.

using namespace std::chrono_literals;

namespace {

using tollgate::test::two_workers;

/// The threads the hops of one chain ran on.
struct thread_log {
  std::mutex lock;
  std::vector<std::thread::id> threads;

  void record() {
    std::lock_guard<std::mutex> guard(lock);
    threads.push_back(std::this_thread::get_id());
  }
  std::size_t distinct() {
    std::lock_guard<std::mutex> guard(lock);
    return std::set<std::thread::id>(threads.begin(), threads.end()).size();
  }
};

/// One hop: records its thread and passes the number on.
caf::behavior hop(caf::event_based_actor* self, caf::actor next, std::shared_ptr<thread_log> log) {
  return {[=](int n) {
    log->record();
    self->send(next, n + 1);
  }};
}

/// Holds the thread until `flag` is set (at most 10 s); whether it was.
bool spin_until(const std::atomic<bool>& flag) {
  auto until = std::chrono::steady_clock::now() + 10s;
  while (!flag.load() && std::chrono::steady_clock::now() < until)
    std::this_thread::yield();
  return flag.load();
}

caf::behavior spinner(caf::event_based_actor*, std::shared_ptr<std::atomic<bool>> flag) {
  return {[=](int) { return spin_until(*flag); }};
}

caf::behavior setter(caf::event_based_actor*, std::shared_ptr<std::atomic<bool>> flag) {
  return {[=](int) { flag->store(true); }};
}

/// A chain of 8 hops that ends at `self`: its first hop.
caf::actor make_chain(caf::actor_system& sys, caf::scoped_actor& self,
                      const std::shared_ptr<thread_log>& log) {
  caf::actor next = caf::actor_cast<caf::actor>(self);
  for (int i = 0; i < 8; ++i)
    next = sys.spawn(hop, next, log);
  return next;
}

/// Sends 0 down the chain that starts at `first`; the number that arrives.
int run_chain(caf::scoped_actor& self, const caf::actor& first) {
  self->send(first, 0);
  int hops = -1;
  self->receive([&](int n) { hops = n; }, caf::after(10s) >> [] {});
  return hops;
}

/// An actor system on the policy with 2 workers, a test thread to talk to it, and a flag
/// for a spinning actor to wait on.
struct a_system {
  two_workers cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  std::shared_ptr<std::atomic<bool>> flag = std::make_shared<std::atomic<bool>>(false);
};

} // namespace

BOOST_AUTO_TEST_SUITE(local_first_scheduling)

BOOST_FIXTURE_TEST_CASE(a_chain_of_hops_stays_on_the_worker_that_sent_it, a_system) {
  // A chain moves only if the idle worker happens to wake up and steal, which is rare.
  int whole_chains = 0;
  for (int round = 0; round < 20; ++round) {
    auto log = std::make_shared<thread_log>();
    BOOST_TEST_REQUIRE(run_chain(self, make_chain(sys, self, log)) == 8);
    if (log->distinct() == 1)
      ++whole_chains;
  }
  BOOST_TEST(whole_chains >= 15, whole_chains << " of 20 chains ran on one thread");
}

BOOST_FIXTURE_TEST_CASE(a_chain_of_hops_wakes_no_other_worker, a_system) {
  // The chain's first message comes from outside and wakes a worker; its 7 hops between
  // actors should wake nobody. (CAF's work-sharing policy wakes the idle worker for each.)
  constexpr int chains = 200;
  auto first = make_chain(sys, self, std::make_shared<thread_log>());
  BOOST_TEST_REQUIRE(run_chain(self, first) == 8); // the actors have started
  auto before = tollgate::test::voluntary_switches_of("tg-worker");
  for (int round = 0; round < chains; ++round)
    BOOST_TEST_REQUIRE(run_chain(self, first) == 8);
  auto per_chain =
      static_cast<double>(tollgate::test::voluntary_switches_of("tg-worker") - before) / chains;
  BOOST_TEST(per_chain < 1.5, per_chain << " worker thread switches per chain of 8 hops");
}

BOOST_FIXTURE_TEST_CASE(work_from_outside_runs_while_a_worker_is_busy, a_system) {
  auto busy = sys.spawn(spinner, flag);
  auto set = sys.spawn(setter, flag);
  auto answer = self->request(busy, caf::infinite, 1);
  // The spinner holds one worker; the setter must run on the other.
  std::this_thread::sleep_for(50ms);
  self->send(set, 1);
  bool seen = false;
  answer.receive([&](bool x) { seen = x; }, [&](caf::error&) {});
  BOOST_TEST(seen);
}

BOOST_FIXTURE_TEST_CASE(a_busy_workers_own_queue_is_stolen, a_system) {
  auto set = sys.spawn(setter, flag);
  // The message to the setter goes to the busy worker's own queue: the idle worker must
  // take it from there.
  auto busy = sys.spawn([set, flag = flag](caf::event_based_actor* me) -> caf::behavior {
    return {[=](int n) {
      me->send(set, n);
      return spin_until(*flag);
    }};
  });
  bool seen = false;
  self->request(busy, caf::infinite, 1).receive([&](bool x) { seen = x; }, [&](caf::error&) {});
  BOOST_TEST(seen);
}

BOOST_FIXTURE_TEST_CASE(a_burst_of_actors_woken_by_one_runs_on_both_workers, a_system) {
  // One actor wakes 50,000 others in one handler (as the directory does when it answers a
  // burst of passivations): they all queue on its worker, and the idle worker steals from
  // that queue while the owner keeps adding to it.
  constexpr int sinks = 50'000;
  auto received = std::make_shared<std::atomic<int>>(0);
  auto threads = std::make_shared<thread_log>();
  std::vector<caf::actor> targets;
  targets.reserve(sinks);
  for (int i = 0; i < sinks; ++i)
    targets.push_back(sys.spawn([=](caf::event_based_actor*) -> caf::behavior {
      return {[=](int) {
        threads->record();
        received->fetch_add(1);
      }};
    }));
  auto waker = sys.spawn([targets](caf::event_based_actor* me) -> caf::behavior {
    return {[=](int n) {
      for (const auto& t : targets)
        me->send(t, n);
      return true;
    }};
  });
  bool sent = false;
  self->request(waker, caf::infinite, 1).receive([&](bool x) { sent = x; }, [&](caf::error&) {});
  BOOST_TEST_REQUIRE(sent);
  auto until = std::chrono::steady_clock::now() + 60s;
  while (received->load() < sinks && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(1ms);
  BOOST_TEST(received->load() == sinks);
  BOOST_TEST(threads->distinct() == 2u);
}

BOOST_AUTO_TEST_CASE(every_message_from_many_threads_arrives) {
  constexpr int senders = 4;
  constexpr int per_sender = 20'000;
  auto received = std::make_shared<std::atomic<int>>(0);
  {
    two_workers cfg;
    caf::actor_system sys{cfg};
    std::vector<caf::actor> counters;
    for (int i = 0; i < 8; ++i)
      counters.push_back(sys.spawn([=](caf::event_based_actor* me) -> caf::behavior {
        return {[=](int n) {
          // Every other message takes a local hop before it is counted.
          if (n % 2 == 0)
            me->send(caf::actor_cast<caf::actor>(me), n + 1);
          else
            ++*received;
        }};
      }));
    std::vector<std::thread> threads;
    for (int t = 0; t < senders; ++t)
      threads.emplace_back([&, t] {
        for (int i = 0; i < per_sender; ++i)
          caf::anon_send(counters[static_cast<std::size_t>(i + t) % counters.size()], i);
      });
    for (auto& t : threads)
      t.join();
    auto until = std::chrono::steady_clock::now() + 30s;
    while (received->load() < senders * per_sender && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(1ms);
    counters.clear();
    // Leaving the scope waits for every actor and stops the workers.
  }
  BOOST_TEST(received->load() == senders * per_sender);
}

BOOST_AUTO_TEST_SUITE_END()
