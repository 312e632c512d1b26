#include <map>
#include <string>
#include <vector>

#include <boost/test/unit_test.hpp>

#include "actors/cluster/shard_map.hpp"

// Shards, rendezvous hashing and the moves a node plans from what the database says.

using namespace tollgate;
using namespace tollgate::cluster;

namespace {

constexpr int32_t shards = 256;

storage::cluster_snapshot snapshot(const std::vector<std::pair<std::string, std::string>>& members,
                                   const std::string& self) {
  storage::cluster_snapshot s;
  s.now = 1'000'000;
  for (const auto& [id, state] : members) {
    s.members.push_back({id, id + ":9000", id + ":8080", state, 0, s.now + 5000});
    if (id == self)
      s.own_state = state;
  }
  for (int32_t i = 0; i < shards; ++i)
    s.leases.push_back({i, "", 0, 0});
  return s;
}

/// Gives every shard to its desired owner among `members`, at epoch 1.
void settle(storage::cluster_snapshot& s, const std::vector<std::string>& members) {
  for (auto& lease : s.leases) {
    lease.node_id = owner_of(lease.shard, members);
    lease.epoch = 1;
    lease.expires_at = s.now + 5000;
  }
}

/// The shards whose lease `node` holds in `s`, as served (shard -> epoch).
std::map<int32_t, int64_t> held_by(const storage::cluster_snapshot& s, const std::string& node) {
  std::map<int32_t, int64_t> serving;
  for (const auto& lease : s.leases)
    if (lease.node_id == node)
      serving[lease.shard] = lease.epoch;
  return serving;
}

} // namespace

BOOST_AUTO_TEST_SUITE(shard_map)

BOOST_AUTO_TEST_CASE(shards_are_stable_and_in_range) {
  BOOST_TEST(stable_hash("usr_1") == stable_hash("usr_1"));
  BOOST_TEST(stable_hash("usr_1") != stable_hash("usr_2"));
  // Fixed across builds and machines: nodes of different builds must agree.
  BOOST_TEST(shard_of("", shards) == static_cast<int32_t>(stable_hash("") % shards));
  std::vector<int> hits(shards, 0);
  for (int i = 0; i < 25'600; ++i) {
    auto s = shard_of("usr_" + std::to_string(i), shards);
    BOOST_TEST_REQUIRE(s >= 0);
    BOOST_TEST_REQUIRE(s < shards);
    ++hits[static_cast<std::size_t>(s)];
  }
  for (int h : hits)
    BOOST_TEST((h > 40 && h < 180), "a shard got " << h << " of about 100 ids");
}

BOOST_AUTO_TEST_CASE(rendezvous_spreads_and_moves_little) {
  std::vector<std::string> three{"node-1", "node-2", "node-3"};
  std::map<std::string, int> owned;
  std::vector<std::string> before;
  for (int32_t s = 0; s < shards; ++s) {
    before.push_back(owner_of(s, three));
    ++owned[before.back()];
  }
  BOOST_TEST(owned.size() == 3u);
  for (auto& [node, n] : owned)
    BOOST_TEST((n > shards / 6 && n < shards / 2), node << " owns " << n);
  // The order of members does not matter.
  std::vector<std::string> shuffled{"node-3", "node-1", "node-2"};
  for (int32_t s = 0; s < shards; ++s)
    BOOST_TEST(owner_of(s, shuffled) == before[static_cast<std::size_t>(s)]);
  // A fourth node takes shards only for itself; nothing moves between the others.
  auto four = three;
  four.push_back("node-4");
  int moved = 0;
  for (int32_t s = 0; s < shards; ++s) {
    auto now = owner_of(s, four);
    if (now != before[static_cast<std::size_t>(s)]) {
      BOOST_TEST(now == "node-4");
      ++moved;
    }
  }
  BOOST_TEST((moved > shards / 8 && moved < shards / 2));
  BOOST_TEST(owner_of(0, {}).empty());
}

BOOST_AUTO_TEST_CASE(a_new_member_acquires_its_free_shards) {
  auto s = snapshot({{"a", "active"}, {"b", "active"}}, "a");
  auto plan = plan_moves(s, "a", {});
  BOOST_TEST(plan.release.empty());
  BOOST_TEST(plan.lost.empty());
  BOOST_TEST_REQUIRE(plan.owners.size() == static_cast<std::size_t>(shards));
  for (auto shard : plan.acquire)
    BOOST_TEST(owner_of(shard, {"a", "b"}) == "a");
  int mine = 0;
  for (int32_t i = 0; i < shards; ++i)
    mine += owner_of(i, {"a", "b"}) == "a";
  BOOST_TEST(plan.acquire.size() == static_cast<std::size_t>(mine));
  BOOST_TEST(plan.addresses.at("b") == "b:9000");
  // A node whose membership lapsed acquires nothing.
  s.own_state.clear();
  BOOST_TEST(plan_moves(s, "a", {}).acquire.empty());
}

BOOST_AUTO_TEST_CASE(a_join_makes_the_old_owners_hand_over) {
  auto s = snapshot({{"a", "active"}, {"b", "active"}, {"c", "active"}}, "a");
  settle(s, {"a", "b"});
  auto serving = held_by(s, "a");
  auto plan = plan_moves(s, "a", serving);
  BOOST_TEST(plan.acquire.empty()); // nothing is free
  BOOST_TEST(plan.lost.empty());
  BOOST_TEST(!plan.release.empty());
  for (auto shard : plan.release)
    BOOST_TEST(owner_of(shard, {"a", "b", "c"}) == "c");
  for (const auto& lease : s.leases)
    BOOST_TEST(plan.owners[static_cast<std::size_t>(lease.shard)] == lease.node_id);
}

BOOST_AUTO_TEST_CASE(draining_gives_everything_up) {
  auto s = snapshot({{"a", "draining"}, {"b", "active"}}, "a");
  settle(s, {"a", "b"});
  auto serving = held_by(s, "a");
  auto plan = plan_moves(s, "a", serving);
  BOOST_TEST(plan.release.size() == serving.size());
  BOOST_TEST(plan.acquire.empty());
}

BOOST_AUTO_TEST_CASE(a_moved_lease_is_lost_and_a_left_over_one_is_stale) {
  auto s = snapshot({{"a", "active"}, {"b", "active"}}, "a");
  settle(s, {"a", "b"});
  int32_t taken = -1;
  int32_t left_over = -1;
  for (auto& lease : s.leases) {
    if (lease.node_id != "a")
      continue;
    if (taken < 0) {
      taken = lease.shard; // served by a at epoch 1, but b holds it at epoch 2 now
      lease.node_id = "b";
      lease.epoch = 2;
    } else if (left_over < 0) {
      left_over = lease.shard; // names a, but a does not serve it (an earlier run)
    }
  }
  std::map<int32_t, int64_t> serving{{taken, 1}};
  for (const auto& lease : s.leases)
    if (lease.node_id == "a" && lease.shard != left_over)
      serving[lease.shard] = 1;
  auto plan = plan_moves(s, "a", serving);
  BOOST_TEST(plan.lost == std::vector<int32_t>{taken});
  BOOST_TEST(plan.stale == std::vector<int32_t>{left_over});
  // An expired lease is no one's: the desired owner acquires it.
  for (auto& lease : s.leases)
    if (lease.shard == left_over)
      lease.expires_at = s.now - 1;
  serving.erase(taken);
  plan = plan_moves(s, "a", serving);
  BOOST_TEST(plan.acquire == std::vector<int32_t>{left_over});
  BOOST_TEST(plan.owners[static_cast<std::size_t>(left_over)].empty());
}

BOOST_AUTO_TEST_SUITE_END()
