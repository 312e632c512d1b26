#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "storage/cluster_repository.hpp"

namespace tollgate::cluster {

/// A stable 64-bit hash (FNV-1a with a final avalanche): the same on every node and build.
uint64_t stable_hash(std::string_view text);

/// The shard of a user id or key hash, in [0, shards).
int32_t shard_of(std::string_view id, int32_t shards);

/// Rendezvous (highest random weight) hashing: the member that should own `shard`. Adding or
/// removing a member moves only the shards it wins or held. Empty if there are no members.
std::string owner_of(int32_t shard, const std::vector<std::string>& members);

/// What one node should do after a look at the database.
struct cluster_plan {
  std::vector<int32_t> acquire; ///< Free or expired shards this node should own.
  std::vector<int32_t> release; ///< Shards this node serves that belong elsewhere now.
  std::vector<int32_t> lost;    ///< Shards this node serves whose lease it no longer holds.
  /// Shards whose live lease names this node though it does not serve them (left by an
  /// earlier run with the same node id): released, then acquired afresh with a new epoch.
  std::vector<int32_t> stale;
  /// Per shard: the node holding its live lease ("" while none does), for forwarding.
  std::vector<std::string> owners;
  std::map<std::string, std::string> addresses; ///< Member id -> middleman host:port.
};

/// Plans the moves of `self` from a snapshot, given the shards it serves (shard -> epoch).
/// Desired owners are chosen among active members only; a draining node gives all up.
cluster_plan plan_moves(const storage::cluster_snapshot& snapshot, const std::string& self,
                        const std::map<int32_t, int64_t>& serving);

} // namespace tollgate::cluster
