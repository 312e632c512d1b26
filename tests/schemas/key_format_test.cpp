#include <chrono>
#include <thread>

#include <boost/test/unit_test.hpp>

#include <set>
#include <vector>

#include "schemas/api_error.hpp"
#include "schemas/ip_allowlist.hpp"
#include "schemas/key_format.hpp"
#include "schemas/migrations.hpp"

#include <nlohmann/json.hpp>

using namespace tollgate::schemas;

BOOST_AUTO_TEST_SUITE(key_format)

BOOST_AUTO_TEST_CASE(keys_have_environment_tag_and_192_random_bits) {
  auto live = generate_api_key("live");
  auto test = generate_api_key("test");
  BOOST_TEST(live.rfind("tg-live-", 0) == 0u);
  BOOST_TEST(test.rfind("tg-test-", 0) == 0u);
  BOOST_TEST(live.size() == std::string("tg-live-").size() + 48);
  BOOST_TEST(is_api_key_shape(live));
  BOOST_TEST(is_api_key_shape(test));
  BOOST_TEST(!is_api_key_shape("tg-live-xyz"));
  BOOST_TEST(!is_api_key_shape("sk-" + std::string(48, 'a')));
  BOOST_TEST(!is_api_key_shape(generate_admin_key()));
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i)
    seen.insert(generate_api_key("live"));
  BOOST_TEST(seen.size() == 1000u);
}

BOOST_AUTO_TEST_CASE(hash_is_sha256_hex) {
  BOOST_TEST(sha256_hex("abc") ==
             "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  BOOST_TEST(sha256_hex("").size() == 64u);
}

BOOST_AUTO_TEST_CASE(prefix_shows_tag_and_six_digits_only) {
  auto key = generate_api_key("live");
  auto prefix = key_prefix(key);
  BOOST_TEST(prefix == key.substr(0, 14));
  BOOST_TEST(prefix.size() < key.size());
}

BOOST_AUTO_TEST_CASE(ids_and_comparison) {
  auto id = random_id("usr");
  BOOST_TEST(id.rfind("usr_", 0) == 0u);
  BOOST_TEST(id.size() == 4u + 24u);
  BOOST_TEST(random_id("usr") != random_id("usr"));
  BOOST_TEST(constant_time_equal("abc", "abc"));
  BOOST_TEST(!constant_time_equal("abc", "abd"));
  BOOST_TEST(!constant_time_equal("abc", "ab"));
}

BOOST_AUTO_TEST_CASE(time_ordered_ids_sort_by_creation) {
  auto first = time_ordered_id("req");
  std::this_thread::sleep_for(std::chrono::milliseconds(2)); // a later millisecond
  auto second = time_ordered_id("req");
  BOOST_TEST(first.rfind("req_", 0) == 0u);
  BOOST_TEST(first.size() == 4u + 32u); // 12 hex digits of time, 20 random
  BOOST_TEST(first < second);
  BOOST_TEST(time_ordered_id("req") != time_ordered_id("req")); // same millisecond
}

// Ids take their random digits from a per-thread pool of 4 KB: many ids, across several
// refills of the pool and from several threads at once, are all well formed and distinct.
BOOST_AUTO_TEST_CASE(ids_stay_distinct_across_pool_refills_and_threads) {
  constexpr int per_thread = 3000; // about 7 refills of 10-byte draws
  std::vector<std::vector<std::string>> made(4);
  std::vector<std::thread> threads;
  for (auto& ids : made)
    threads.emplace_back([&ids] {
      for (int i = 0; i < per_thread; ++i)
        ids.push_back(i % 2 ? time_ordered_id("req") : random_id("usr"));
    });
  for (auto& t : threads)
    t.join();
  std::set<std::string> random_parts;
  for (const auto& ids : made)
    for (const auto& id : ids) {
      bool timed = id.rfind("req_", 0) == 0;
      BOOST_TEST_REQUIRE((timed || id.rfind("usr_", 0) == 0));
      BOOST_TEST_REQUIRE(id.size() == (timed ? 4u + 32u : 4u + 24u));
      BOOST_TEST_REQUIRE(id.find_first_not_of("0123456789abcdef", 4) == std::string::npos);
      random_parts.insert(id.substr(timed ? 16 : 4));
    }
  BOOST_TEST(random_parts.size() == made.size() * per_thread);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(ip_allowlists)

BOOST_AUTO_TEST_CASE(empty_list_allows_everyone) {
  ip_allowlist list;
  BOOST_TEST(list.allows("203.0.113.9"));
}

BOOST_AUTO_TEST_CASE(blocks_and_addresses) {
  ip_allowlist list({"10.0.0.0/8", "192.168.1.7", "2001:db8::/32"});
  BOOST_TEST(list.allows("10.200.3.4"));
  BOOST_TEST(!list.allows("11.0.0.1"));
  BOOST_TEST(list.allows("192.168.1.7"));
  BOOST_TEST(!list.allows("192.168.1.8"));
  BOOST_TEST(list.allows("2001:db8:1::5"));
  BOOST_TEST(!list.allows("2001:db9::1"));
  BOOST_TEST(list.allows("::ffff:10.1.2.3"));
  BOOST_TEST(!list.allows("not an address"));
}

BOOST_AUTO_TEST_CASE(odd_prefix_lengths) {
  ip_allowlist list({"172.16.0.0/12"});
  BOOST_TEST(list.allows("172.31.255.255"));
  BOOST_TEST(!list.allows("172.32.0.0"));
  BOOST_TEST(!ip_block::parse("1.2.3.4/33"));
  BOOST_TEST(!ip_block::parse("1.2.3.4/"));
  BOOST_TEST(!ip_block::parse("::1/129"));
  BOOST_TEST(ip_block::parse("0.0.0.0/0").has_value());
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(api_errors)

BOOST_AUTO_TEST_CASE(errors_have_openai_shape) {
  auto body = nlohmann::json::parse(invalid_request("bad", "amount").body());
  BOOST_TEST(body["error"]["message"] == "bad");
  BOOST_TEST(body["error"]["type"] == "invalid_request_error");
  BOOST_TEST(body["error"]["param"] == "amount");
  BOOST_TEST(body["error"]["code"] == "invalid_value");
  auto none = nlohmann::json::parse(unauthenticated("no").body());
  BOOST_TEST(none["error"]["param"].is_null());
  BOOST_TEST(insufficient_quota("x").status == 402);
  BOOST_TEST(insufficient_quota("x").type == "insufficient_quota");
  BOOST_TEST(rate_limited("x").status == 429);
  BOOST_TEST(rate_limited("x").type == "rate_limit_exceeded");
  BOOST_TEST(payload_too_large(10).status == 413);
  BOOST_TEST(unsupported_media_type("text/plain").status == 415);
  BOOST_TEST(method_not_allowed("PUT", "/x").status == 405);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(migrations)

BOOST_AUTO_TEST_CASE(both_backends_have_the_same_versions_in_order) {
  auto lite = migrations_for("sqlite");
  auto pg = migrations_for("postgresql");
  BOOST_REQUIRE(!lite.empty());
  BOOST_REQUIRE_EQUAL(lite.size(), pg.size());
  for (std::size_t i = 0; i < lite.size(); ++i) {
    BOOST_TEST(lite[i].version == static_cast<int>(i + 1));
    BOOST_TEST(pg[i].version == lite[i].version);
    BOOST_TEST(pg[i].name == lite[i].name);
    BOOST_TEST(!lite[i].sql.empty());
    BOOST_TEST(!pg[i].sql.empty());
  }
  BOOST_TEST(lite[0].sql.find("CREATE TABLE ledger_entries") != std::string_view::npos);
  BOOST_TEST(migrations_for("oracle").empty());
}

BOOST_AUTO_TEST_SUITE_END()
