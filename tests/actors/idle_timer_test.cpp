#include <boost/test/unit_test.hpp>

#include "actors/idle_timer.hpp"

using namespace std::chrono_literals;
using tollgate::idle_timer;

BOOST_AUTO_TEST_SUITE(idle_timers)

BOOST_AUTO_TEST_CASE(a_quiet_actor_is_idle_once_the_limit_has_passed) {
  idle_timer::clock::time_point t0{};
  idle_timer timer(10s, t0);
  BOOST_TEST(timer.next_tick(t0 + 4s).has_value());
  BOOST_TEST((*timer.next_tick(t0 + 4s) == 6s));
  BOOST_TEST(!timer.next_tick(t0 + 10s).has_value());
  BOOST_TEST(!timer.next_tick(t0 + 11s).has_value());
}

BOOST_AUTO_TEST_CASE(work_pushes_the_next_tick_back) {
  idle_timer::clock::time_point t0{};
  idle_timer timer(10s, t0);
  timer.touch(t0 + 8s);
  // The tick armed at the start fires at 10 s: the actor worked 2 s ago, 8 s are left.
  auto next = timer.next_tick(t0 + 10s);
  BOOST_TEST_REQUIRE(next.has_value());
  BOOST_TEST((*next == 8s));
  BOOST_TEST(!timer.next_tick(t0 + 18s).has_value());
}

BOOST_AUTO_TEST_SUITE_END()
