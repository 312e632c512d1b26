#include <boost/test/unit_test.hpp>

#include <set>
#include <string>

#include "actors/directory/hibernation_store.hpp"

using namespace std::chrono_literals;

namespace {

struct record {
  std::string name;
  int64_t balance = 0;

  std::string& id() { return name; }
};

using store = tollgate::hibernation_store<record>;

} // namespace

BOOST_AUTO_TEST_SUITE(hibernation_stores)

BOOST_AUTO_TEST_CASE(a_record_comes_back_whole_once) {
  store kept(60s);
  kept.put({"usr_1", 500});
  BOOST_TEST(kept.size() == 1u);
  BOOST_TEST(kept.contains("usr_1"));
  // The id is kept once, as the store's key: the stored record's own field is empty.
  auto* stored = kept.find("usr_1");
  BOOST_TEST_REQUIRE(stored != nullptr);
  BOOST_TEST(stored->name.empty());
  stored->balance = 700;
  auto back = kept.take("usr_1");
  BOOST_TEST_REQUIRE(back.has_value());
  BOOST_TEST(back->name == "usr_1");
  BOOST_TEST(back->balance == 700);
  BOOST_TEST(!kept.take("usr_1").has_value());
  BOOST_TEST(kept.empty());
  BOOST_TEST(kept.find("usr_1") == nullptr);
}

BOOST_AUTO_TEST_CASE(a_second_record_of_an_id_replaces_the_first) {
  store kept(60s);
  kept.put({"usr_1", 500});
  kept.put({"usr_1", 300});
  BOOST_TEST(kept.size() == 1u);
  BOOST_TEST(kept.take("usr_1")->balance == 300);
}

BOOST_AUTO_TEST_CASE(records_expire_after_their_keep_time) {
  store::clock::time_point t0{};
  store kept(10s);
  kept.put({"usr_1", 1}, t0);
  kept.put({"usr_2", 2}, t0 + 5s);
  std::set<std::string> expired;
  auto collect = [&](record&& r) { expired.insert(r.name); };
  BOOST_TEST(kept.sweep(1000, collect, t0 + 9s) == 0u);
  BOOST_TEST(kept.sweep(1000, collect, t0 + 10s) == 1u);
  BOOST_TEST((expired == std::set<std::string>{"usr_1"})); // handed out with its id
  BOOST_TEST(kept.sweep(1000, collect, t0 + 15s) == 1u);
  BOOST_TEST(expired.count("usr_2") == 1u);
  BOOST_TEST(kept.empty());
}

BOOST_AUTO_TEST_CASE(a_sweep_looks_at_a_slice_and_the_next_goes_on) {
  store::clock::time_point t0{};
  store kept(1s);
  for (int i = 0; i < 1000; ++i)
    kept.put({"usr_" + std::to_string(i), i}, t0);
  std::size_t expired = 0;
  auto count = [&](record&&) { ++expired; };
  // A slice of 16 buckets cannot hold all 1,000 records.
  auto first = kept.sweep(16, count, t0 + 2s);
  BOOST_TEST(first > 0u);
  BOOST_TEST(first < 1000u);
  int rounds = 1;
  while (!kept.empty() && rounds < 1000) {
    kept.sweep(16, count, t0 + 2s);
    ++rounds;
  }
  BOOST_TEST(kept.empty());
  BOOST_TEST(expired == 1000u);
  BOOST_TEST(rounds > 1);
}

BOOST_AUTO_TEST_CASE(take_if_takes_the_records_it_is_asked_for) {
  store kept(60s);
  for (int i = 0; i < 10; ++i)
    kept.put({"usr_" + std::to_string(i), i});
  int64_t sum = 0;
  kept.take_if([](const std::string& id) { return id.back() % 2 == 0; },
               [&](record&& r) {
                 BOOST_TEST(r.name.size() == 5u);
                 sum += r.balance;
               });
  BOOST_TEST(sum == 0 + 2 + 4 + 6 + 8);
  BOOST_TEST(kept.size() == 5u);
  BOOST_TEST(kept.contains("usr_1"));
  BOOST_TEST(!kept.contains("usr_2"));
}

BOOST_AUTO_TEST_SUITE_END()
