#include "actors/cluster/shard_map.hpp"

namespace tollgate::cluster {

uint64_t stable_hash(std::string_view text) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ull;
  }
  // splitmix64's finalizer: FNV alone mixes the last bytes poorly.
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  h ^= h >> 31;
  return h;
}

int32_t shard_of(std::string_view id, int32_t shards) {
  return static_cast<int32_t>(stable_hash(id) % static_cast<uint64_t>(shards));
}

std::string owner_of(int32_t shard, const std::vector<std::string>& members) {
  std::string best;
  uint64_t best_weight = 0;
  std::string suffix(1, '#');
  suffix += std::to_string(shard);
  for (const auto& m : members) {
    auto weight = stable_hash(m + suffix);
    if (best.empty() || weight > best_weight || (weight == best_weight && m < best)) {
      best = m;
      best_weight = weight;
    }
  }
  return best;
}

cluster_plan plan_moves(const storage::cluster_snapshot& snapshot, const std::string& self,
                        const std::map<int32_t, int64_t>& serving) {
  cluster_plan plan;
  std::vector<std::string> active;
  for (const auto& m : snapshot.members) {
    plan.addresses[m.node_id] = m.cluster_address;
    if (m.state == "active")
      active.push_back(m.node_id);
  }
  bool member = !snapshot.own_state.empty();
  int32_t count = 0;
  for (const auto& lease : snapshot.leases)
    count = std::max(count, lease.shard + 1);
  plan.owners.assign(static_cast<std::size_t>(count), std::string());
  for (const auto& lease : snapshot.leases) {
    bool live = !lease.node_id.empty() && lease.expires_at > snapshot.now;
    if (live)
      plan.owners[static_cast<std::size_t>(lease.shard)] = lease.node_id;
    auto served = serving.find(lease.shard);
    bool mine = live && lease.node_id == self;
    if (served != serving.end() && (!mine || lease.epoch != served->second)) {
      plan.lost.push_back(lease.shard);
      continue;
    }
    if (mine && served == serving.end()) {
      plan.stale.push_back(lease.shard);
      continue;
    }
    auto desired = owner_of(lease.shard, active);
    if (desired.empty())
      continue; // no active member: leave things as they are
    if (desired == self) {
      if (!live && member)
        plan.acquire.push_back(lease.shard);
    } else if (served != serving.end()) {
      plan.release.push_back(lease.shard);
    }
  }
  return plan;
}

} // namespace tollgate::cluster
