#include <boost/test/unit_test.hpp>

#include "http/purge_switch.hpp"

using tollgate::http::purge_switch;

BOOST_AUTO_TEST_SUITE(purge_switches)

BOOST_AUTO_TEST_CASE(purging_starts_above_the_upper_bound_and_stops_below_the_lower) {
  purge_switch purge(8, 32);
  BOOST_TEST(!purge.update(20));
  BOOST_TEST(!purge.update(32)); // at the bound is not above it
  BOOST_TEST(!purge.on());
  BOOST_TEST(purge.update(33));
  BOOST_TEST(purge.on());
  BOOST_TEST(!purge.update(40)); // already on
  BOOST_TEST(!purge.update(8));  // between the bounds it stays on
  BOOST_TEST(!purge.update(20));
  BOOST_TEST(purge.on());
  BOOST_TEST(purge.update(7));
  BOOST_TEST(!purge.on());
  BOOST_TEST(!purge.update(0));
  BOOST_TEST(!purge.update(31)); // off again until above the upper bound
  BOOST_TEST(!purge.on());
  BOOST_TEST(purge.update(1'000));
  BOOST_TEST(purge.on());
}

BOOST_AUTO_TEST_SUITE_END()
