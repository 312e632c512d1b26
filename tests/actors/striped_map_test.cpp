#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <caf/all.hpp>

#include "actors/directory/key_handles.hpp"
#include "actors/directory/striped_map.hpp"

namespace {

using map = tollgate::striped_map<std::string, int>;

std::string key_of(int i) {
  return "key_" + std::to_string(i);
}

} // namespace

BOOST_AUTO_TEST_SUITE(striped_maps)

BOOST_AUTO_TEST_CASE(entries_are_found_changed_and_erased_by_key) {
  map m;
  BOOST_TEST(m.empty());
  BOOST_TEST((m.find("a") == m.end()));
  BOOST_TEST(m.emplace("a", 1).second);
  BOOST_TEST(!m.emplace("a", 2).second); // an entry is never replaced by emplace
  BOOST_TEST(m.find("a")->second == 1);
  m["b"] += 5;
  BOOST_TEST(m["b"] == 5);
  BOOST_TEST(!m.insert_or_assign(std::string("b"), 7).second);
  BOOST_TEST(m.find("b")->second == 7);
  BOOST_TEST(m.size() == 2u);
  BOOST_TEST(m.count("a") == 1u);
  BOOST_TEST(m.erase("a") == 1u);
  BOOST_TEST(m.erase("a") == 0u);
  BOOST_TEST(m.count("a") == 0u);
  auto node = m.extract("b");
  BOOST_TEST_REQUIRE(!node.empty());
  BOOST_TEST(node.mapped() == 7);
  BOOST_TEST(m.extract("b").empty());
  BOOST_TEST(m.empty());
  BOOST_TEST(m.size() == 0u);
}

BOOST_AUTO_TEST_CASE(iteration_visits_every_entry_once_across_the_stripes) {
  map m;
  BOOST_TEST((m.begin() == m.end()));
  for (int i = 0; i < 5000; ++i)
    m.emplace(key_of(i), i);
  std::set<std::string> seen;
  std::size_t visits = 0;
  for (const auto& [key, value] : m) {
    BOOST_TEST(key == key_of(value));
    seen.insert(key);
    ++visits;
  }
  BOOST_TEST(visits == 5000u);
  BOOST_TEST(seen.size() == 5000u);
  // The same through a const map and its iterators.
  const map& view = m;
  BOOST_TEST(static_cast<std::size_t>(std::distance(view.begin(), view.end())) == 5000u);
  map::const_iterator found = m.find(key_of(42)); // a non-const iterator converts
  BOOST_TEST(found->second == 42);
}

BOOST_AUTO_TEST_CASE(erasing_while_iterating_keeps_the_rest) {
  map m;
  for (int i = 0; i < 3000; ++i)
    m.emplace(key_of(i), i);
  for (auto it = m.begin(); it != m.end();)
    it = it->second % 3 == 0 ? m.erase(it) : std::next(it);
  BOOST_TEST(m.size() == 2000u);
  for (int i = 0; i < 3000; ++i)
    BOOST_TEST(m.count(key_of(i)) == (i % 3 == 0 ? 0u : 1u));
  // Taking entries out by iterator, stepping past each first, as the directory does.
  for (auto it = m.begin(); it != m.end();) {
    auto node = m.extract(it++);
    BOOST_TEST(node.mapped() % 3 != 0);
  }
  BOOST_TEST(m.empty());
}

BOOST_AUTO_TEST_CASE(keys_spread_evenly_over_the_stripes) {
  // What bounds a rehash: no stripe holds much more than its share.
  map m;
  const int n = 64'000;
  for (int i = 0; i < n; ++i)
    m.emplace(key_of(i), i);
  std::size_t least = n, most = 0;
  for (std::size_t s = 0; s < map::stripe_count(); ++s) {
    least = std::min(least, m.stripe(s).size());
    most = std::max(most, m.stripe(s).size());
  }
  auto share = n / map::stripe_count();
  BOOST_TEST(least > share * 8 / 10);
  BOOST_TEST(most < share * 12 / 10);
  for (std::size_t s = 0; s < map::stripe_count(); ++s)
    for (const auto& [key, value] : m.stripe(s))
      BOOST_TEST(map::stripe_of(key) == s);
}

BOOST_AUTO_TEST_CASE(the_stripes_rehash_at_different_moments) {
  // Stripes of about the same size would all double within a few thousand inserts of each
  // other; with their load factors spread over one doubling, their rehashes spread over it.
  map m;
  std::vector<int> rehashed_at; // insert numbers at which a stripe doubled its buckets
  for (int i = 0; i < 400'000; ++i) {
    auto key = key_of(i);
    auto& part = m.stripe(map::stripe_of(key));
    auto before = part.bucket_count();
    m.emplace(key, i);
    if (part.bucket_count() != before && i >= 100'000)
      rehashed_at.push_back(i);
  }
  // From 100,000 to 400,000 entries each stripe doubles about twice.
  BOOST_TEST(rehashed_at.size() >= 64u);
  std::size_t most = 0; // the most rehashes within any 2,000 inserts
  for (std::size_t a = 0, b = 0; b < rehashed_at.size(); ++b) {
    while (rehashed_at[b] - rehashed_at[a] >= 2000)
      ++a;
    most = std::max(most, b - a + 1);
  }
  BOOST_TEST_MESSAGE("rehashes: " << rehashed_at.size() << ", at most " << most
                                  << " within 2,000 inserts");
  BOOST_TEST(most <= 10u); // 23 when every stripe doubles at the same load
}

BOOST_AUTO_TEST_CASE(sweeps_in_slices_go_round_the_whole_map) {
  map m;
  for (int i = 0; i < 10'000; ++i)
    m.emplace(key_of(i), i);
  map::cursor at;
  std::map<int, int> taken; // value -> times taken out
  auto odd = [](const auto& entry) { return entry.second % 2 == 1; };
  auto collect = [&](map::node_type node) { ++taken[node.mapped()]; };
  // One slice looks at some of the buckets only.
  auto first = m.sweep(at, 16, odd, collect);
  BOOST_TEST(first < 5000u);
  int slices = 1;
  while (taken.size() < 5000u && slices < 100'000) {
    m.sweep(at, 16, odd, collect);
    ++slices;
  }
  BOOST_TEST(taken.size() == 5000u);
  BOOST_TEST(std::all_of(taken.begin(), taken.end(),
                         [](const auto& t) { return t.first % 2 == 1 && t.second == 1; }));
  BOOST_TEST(m.size() == 5000u);
  // A slice as large as the map goes round it at most once.
  std::size_t looked = 0;
  m.sweep(
      at, 1'000'000,
      [&](const auto&) {
        ++looked;
        return false;
      },
      collect);
  BOOST_TEST(looked == 5000u);
}

BOOST_AUTO_TEST_CASE(clear_empties_every_stripe) {
  map m;
  for (int i = 0; i < 1000; ++i)
    m.emplace(key_of(i), i);
  m.clear();
  BOOST_TEST(m.empty());
  BOOST_TEST((m.begin() == m.end()));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(key_handle_tables)

BOOST_AUTO_TEST_CASE(handles_are_put_found_and_dropped_from_several_threads) {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  auto actor = sys.spawn([] { return caf::behavior{[](int) {}}; });
  tollgate::key_handles table;
  BOOST_TEST(!table.find("k"));
  // Each thread owns its own keys and checks what it reads, while the other writes into
  // the same stripes.
  auto work = [&](int thread) {
    int wrong = 0;
    for (int i = 0; i < 20'000; ++i) {
      auto key = key_of(thread * 1'000'000 + i);
      table.put(key, actor);
      if (table.find(key) != actor)
        ++wrong;
      if (i % 2 == 0) {
        table.erase(key);
        if (table.find(key))
          ++wrong;
      }
    }
    return wrong;
  };
  int wrong_a = 0, wrong_b = 0;
  std::thread a([&] { wrong_a = work(1); });
  std::thread b([&] { wrong_b = work(2); });
  a.join();
  b.join();
  BOOST_TEST(wrong_a == 0);
  BOOST_TEST(wrong_b == 0);
  BOOST_TEST((table.find(key_of(1'000'001)) == actor));
  BOOST_TEST(!table.find(key_of(2'000'000)));
  table.clear();
  BOOST_TEST(!table.find(key_of(1'000'001)));
  caf::anon_send_exit(actor, caf::exit_reason::user_shutdown);
}

BOOST_AUTO_TEST_SUITE_END()
