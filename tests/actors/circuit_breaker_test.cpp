#include <boost/test/unit_test.hpp>

#include "actors/provider/circuit_breaker.hpp"

using namespace tollgate;
using namespace std::chrono_literals;
using state = circuit_breaker::state;

BOOST_AUTO_TEST_SUITE(circuit_breakers)

BOOST_AUTO_TEST_CASE(consecutive_failures_trip_it) {
  circuit_breaker b;
  auto t = circuit_breaker::clock::now();
  for (int i = 0; i < 4; ++i) {
    BOOST_TEST(b.allow(t));
    b.record_failure(t);
  }
  BOOST_TEST((b.current(t) == state::closed));
  BOOST_TEST(b.allow(t));
  b.record_failure(t);
  BOOST_TEST((b.current(t) == state::open));
  BOOST_TEST(!b.allow(t + 4s));
  BOOST_TEST(b.trips() == 1);
}

BOOST_AUTO_TEST_CASE(a_success_resets_the_run) {
  circuit_breaker b;
  auto t = circuit_breaker::clock::now();
  for (int i = 0; i < 20; ++i) {
    b.allow(t);
    if (i % 3 == 2)
      b.record_success(t);
    else
      b.record_failure(t);
    t += 10s; // spread out: the rate window never holds enough calls
  }
  BOOST_TEST((b.current(t) == state::closed));
}

BOOST_AUTO_TEST_CASE(failure_rate_over_the_window_trips_it) {
  circuit_breaker::settings s;
  s.consecutive_failures = 100;
  circuit_breaker b(s);
  auto t = circuit_breaker::clock::now();
  for (int i = 0; i < 9; ++i) {
    b.allow(t);
    i % 2 ? b.record_success(t) : b.record_failure(t);
  }
  BOOST_TEST((b.current(t) == state::closed)); // fewer than min_calls
  b.allow(t);
  b.record_failure(t); // 10 calls, 6 failures
  BOOST_TEST((b.current(t) == state::open));
}

BOOST_AUTO_TEST_CASE(half_open_probes_close_it_again) {
  circuit_breaker b;
  auto t = circuit_breaker::clock::now();
  b.trip(t);
  BOOST_TEST(!b.allow(t + 1s));
  auto later = t + 5s;
  BOOST_TEST((b.current(later) == state::half_open));
  BOOST_TEST(b.allow(later));
  BOOST_TEST(b.allow(later));
  BOOST_TEST(!b.allow(later)); // only two probes
  b.record_success(later);
  BOOST_TEST((b.current(later) == state::half_open));
  b.record_success(later);
  BOOST_TEST((b.current(later) == state::closed));
  BOOST_TEST(b.allow(later));
}

BOOST_AUTO_TEST_CASE(a_failed_probe_reopens_for_longer) {
  circuit_breaker b;
  auto t = circuit_breaker::clock::now();
  b.trip(t); // open for 5 s; next cooldown 10 s
  auto probe = t + 5s;
  BOOST_TEST(b.allow(probe));
  b.record_failure(probe);
  BOOST_TEST((b.current(probe + 9s) == state::open));
  BOOST_TEST((b.current(probe + 10s) == state::half_open));
  BOOST_TEST(b.trips() == 2);
}

BOOST_AUTO_TEST_CASE(cooldown_grows_then_decays_when_healthy) {
  circuit_breaker b;
  auto t = circuit_breaker::clock::now();
  for (int i = 0; i < 4; ++i) {
    b.trip(t);
    t = b.open_until();
  }
  BOOST_TEST(b.next_cooldown().count() == 80'000);
  b.reset();
  BOOST_TEST(b.next_cooldown().count() == 5'000);
  // Growth is capped.
  circuit_breaker capped;
  for (int i = 0; i < 20; ++i)
    capped.trip(t);
  BOOST_TEST(capped.next_cooldown().count() == 300'000);
  // Probes succeed, then a long healthy run halves the next cooldown.
  circuit_breaker d;
  auto u = circuit_breaker::clock::now();
  d.trip(u);
  d.trip(u);
  auto probe = d.open_until();
  d.allow(probe);
  d.record_success(probe);
  d.allow(probe);
  d.record_success(probe);
  BOOST_TEST((d.current(probe) == state::closed));
  BOOST_TEST(d.next_cooldown().count() == 20'000);
  d.allow(probe + 61s);
  d.record_success(probe + 61s);
  BOOST_TEST(d.next_cooldown().count() == 10'000);
}

BOOST_AUTO_TEST_CASE(retry_after_keeps_it_open_longer) {
  circuit_breaker::settings s;
  s.consecutive_failures = 1;
  circuit_breaker b(s);
  auto t = circuit_breaker::clock::now();
  b.allow(t);
  b.record_failure(t, 30s);
  BOOST_TEST((b.current(t + 29s) == state::open));
  BOOST_TEST((b.current(t + 30s) == state::half_open));
}

BOOST_AUTO_TEST_SUITE_END()
