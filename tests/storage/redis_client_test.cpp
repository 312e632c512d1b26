#include <chrono>
#include <thread>

#include <boost/test/unit_test.hpp>

#include "config/config.hpp"
#include "storage/redis_client.hpp"
#include "tests/support/live_services.hpp"
#include "tests/support/ports.hpp"
#include "tests/support/random.hpp"

// The Redis client against the live Redis that scripts/test.sh starts.

using namespace tollgate;
using namespace std::chrono_literals;

BOOST_AUTO_TEST_SUITE(redis_client_live)

BOOST_AUTO_TEST_CASE(get_set_and_expiry) {
  storage::redis_client redis(config::parse_redis_url(test::require_redis_url()));
  auto key = "tollgate:test:" + test::random_hex(8);
  BOOST_TEST(!redis.get(key).has_value());
  redis.set(key, std::string("a b\0c", 5), 60s);
  auto value = redis.get(key);
  BOOST_TEST_REQUIRE(value.has_value());
  BOOST_TEST(*value == std::string("a b\0c", 5)); // binary-safe
  redis.set(key, "short", 50ms);
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (redis.get(key).has_value() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(10ms);
  BOOST_TEST(!redis.get(key).has_value()); // expired by Redis itself
}

BOOST_AUTO_TEST_CASE(unreachable_redis_throws) {
  config::redis_url nowhere;
  nowhere.host = "127.0.0.1";
  nowhere.port = test::free_loopback_port();
  storage::redis_client redis(nowhere, 200ms);
  BOOST_CHECK_THROW(redis.get("k"), storage::redis_error);
  BOOST_CHECK_THROW(redis.set("k", "v", 1s), storage::redis_error);
}

BOOST_AUTO_TEST_SUITE_END()
