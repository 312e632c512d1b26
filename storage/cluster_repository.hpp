#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <soci/soci.h>

#include "storage/pg_pipeline.hpp"

namespace tollgate::storage {

/// A row of cluster_nodes.
struct node_row {
  std::string node_id;
  std::string cluster_address; ///< host:port of its middleman.
  std::string http_address;    ///< host:port of its HTTP front end.
  std::string state;           ///< active, draining or left.
  int64_t started_at = 0;      ///< Milliseconds on the database's clock.
  int64_t expires_at = 0;

  template <class Inspector>
  friend auto inspect(Inspector& f, node_row& x) {
    return f(x.node_id, x.cluster_address, x.http_address, x.state, x.started_at, x.expires_at);
  }
};

/// A row of shard_leases.
struct lease_row {
  int32_t shard = 0;
  std::string node_id; ///< Empty: free.
  int64_t epoch = 0;
  int64_t expires_at = 0;

  template <class Inspector>
  friend auto inspect(Inspector& f, lease_row& x) {
    return f(x.shard, x.node_id, x.epoch, x.expires_at);
  }
};

/// What a node sees of the cluster in one look at the database.
struct cluster_snapshot {
  int64_t now = 0;               ///< The database's clock, milliseconds.
  std::string own_state;         ///< This node's state; empty if its membership lapsed.
  std::vector<node_row> members; ///< Nodes whose membership lease has not expired.
  std::vector<lease_row> leases; ///< Every shard.

  template <class Inspector>
  friend auto inspect(Inspector& f, cluster_snapshot& x) {
    return f(x.now, x.own_state, x.members, x.leases);
  }
};

/// cluster_nodes and shard_leases. Every time is judged by the database's clock, and every
/// change of a lease is one conditional UPDATE, so two nodes can never both win a shard.
class cluster_repository {
public:
  explicit cluster_repository(soci::session& sql);

  /// The database's clock, milliseconds since the Unix epoch.
  int64_t now();

  /// Creates the rows of shards 0..count-1 that are missing.
  void ensure_shards(int32_t count);

  /// Joins (or rejoins) as an active member with a lease of `lease_ms`.
  void register_node(const node_row& node, int64_t lease_ms);

  /// Renews the membership and every lease the node holds, then reads the cluster. A node
  /// whose membership had lapsed renews nothing and sees `own_state` empty.
  cluster_snapshot renew(const std::string& node_id, int64_t lease_ms);

  /// Takes a free or expired shard; returns the new epoch, or nothing if another node
  /// holds a live lease. On PostgreSQL a node that stalled in the middle of a ledger batch
  /// still holds the lease row's lock after its lease expired: past a short wait, that
  /// node's sessions are ended (their transactions roll back, so nothing stale commits)
  /// and the shard is taken.
  std::optional<int64_t> acquire(int32_t shard, const std::string& node_id, int64_t lease_ms);

  /// The PostgreSQL application_name of a node's sessions.
  static std::string session_name(const std::string& node_id);

  /// Gives a shard up if this node still holds it at `epoch`.
  bool release(int32_t shard, const std::string& node_id, int64_t epoch);

  /// Sets a member's state (draining, left); false if there is no such node.
  bool set_state(const std::string& node_id, const std::string& state);

  /// Whether (shard, epoch) is the live lease now. Inside a transaction on PostgreSQL it
  /// also locks the lease row until the commit, so that no acquisition slips in between.
  bool fence_holds(int32_t shard, int64_t epoch);
  /// What a fence sent in a pipeline does when the lease no longer holds.
  enum class stale_fence {
    empty_answer, ///< Answers no row (`fence_held` is false); the transaction goes on.
    abort,        ///< Fails with SQLSTATE `lease_moved`, undoing its transaction.
  };
  /// PostgreSQL: queues the check of `fence_holds` in `pipe`, which locks the lease row in
  /// the same way. Once the pipeline has synced, `fence_held` reads its answer.
  void send_fence(pg_pipeline& pipe, int32_t shard, int64_t epoch, stale_fence on_stale);
  static bool fence_held(const pg_answer& answer) { return answer.rows() > 0; }
  static constexpr const char* lease_moved = "TG001";

  std::vector<node_row> nodes();
  std::vector<lease_row> leases();

private:
  /// The check of fence_holds, with parameters shard and epoch.
  std::string fence_sql() const;

  soci::session& sql_;
  bool postgres_ = false;
  std::string now_sql_;          ///< The SQL expression of the database's clock.
  std::string pipelined_fence_;  ///< The name of the check on PostgreSQL, once prepared.
  std::string pipelined_assert_; ///< The name of the assertion on PostgreSQL, once prepared.
};

} // namespace tollgate::storage
