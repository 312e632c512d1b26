#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <caf/all.hpp>

#include "actors/cluster/shard_map.hpp"
#include "actors/messages.hpp"
#include "storage/cluster_repository.hpp"

namespace tollgate {

struct cluster_agent_state {
  static inline constexpr const char* name = "cluster_agent";
  storage::node_row self; ///< This node as it registers.
  int32_t shards = 256;
  std::chrono::milliseconds lease{6000};
  caf::actor db;        ///< A db worker of its own: renewals never queue behind other work.
  caf::actor directory; ///< Told what this node serves and where other shards live.
  std::map<int32_t, int64_t> serving; ///< Shard -> epoch this node serves under.
  std::set<int32_t> moving;           ///< Being acquired or released right now.
  /// When the last renewal that succeeded was sent: leases hold at least a lease from then.
  std::chrono::steady_clock::time_point renewed_at;
  bool renewing = false;
  bool leaving = false;                    ///< Draining: give every shard up.
  std::vector<caf::response_promise> left; ///< Answered once no shard is served.
  storage::cluster_snapshot last;          ///< The last look at the database.
};

/// Per node in a cluster: keeps the membership and the shard leases of this node alive in
/// the database, acquires the shards rendezvous hashing gives it, hands over the ones it
/// should no longer own (the directory drains them first), and stops serving everything
/// when it cannot renew in time, before its leases can expire.
caf::behavior cluster_agent(caf::stateful_actor<cluster_agent_state>* self, storage::node_row node,
                            int32_t shards, std::chrono::milliseconds lease, caf::actor db,
                            caf::actor directory);

} // namespace tollgate
