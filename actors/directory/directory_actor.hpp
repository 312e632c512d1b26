#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include <caf/all.hpp>

#include "actors/directory/hibernation_store.hpp"
#include "actors/directory/key_handles.hpp"
#include "actors/directory/striped_map.hpp"
#include "actors/limits/rate_limiter.hpp"
#include "actors/messages.hpp"
#include "actors/storage/db_worker.hpp"
#include "config/config.hpp"

namespace tollgate {

/// In a cluster: which shards this node serves, where the others live, and the calls
/// waiting for a shard that is on its way between nodes.
struct directory_routing {
  bool enabled = false;
  std::string self_id;
  int32_t shards = 0;
  std::vector<std::string> owners;              ///< By shard: lease holder, "" if none.
  std::map<std::string, std::string> addresses; ///< Node id -> middleman host:port.
  std::map<int32_t, int64_t> serving;           ///< Shard -> lease epoch.
  std::set<int32_t> releasing;                  ///< Draining for a hand-off.
  std::map<std::string, caf::actor> remote;     ///< Node id -> that node's directory.
  std::set<std::string> connecting;
  /// Node id -> when connecting to it last failed (retries wait a moment).
  std::map<std::string, std::chrono::steady_clock::time_point> unreachable;
  /// Calls relayed to another node and not answered yet, by node: if that node goes down,
  /// each is routed again (to the shard's next owner) instead of waiting for a timeout.
  std::map<std::string, std::map<uint64_t, std::function<void()>>> relays;
  uint64_t next_relay = 0;
  /// A call waiting for its shard to settle somewhere; retried on every change of view.
  struct parked {
    std::chrono::steady_clock::time_point deadline;
    std::function<void()> retry;
    std::function<void()> expire;
  };
  std::vector<parked> waiting;
  caf::actor middleman; ///< CAF's middleman actor, to connect to other nodes.
};

/// An idle key as the directory keeps it once its actor ended (hibernated): all a new actor
/// of the key needs to go on where the last one stopped.
struct hibernated_key {
  schemas::key_record key;
  rate_snapshot windows;

  std::string& id() { return key.key_hash; }
};

/// The same for a user: its committed balance (an idle user has no holds and nothing in
/// flight), its policy and its own windows.
struct hibernated_user {
  schemas::user_record user;
  rate_snapshot windows;

  std::string& id() { return user.id; }
};

struct directory_state {
  static inline constexpr const char* name = "directory";
  using waiter = std::function<void(caf::expected<caf::actor>)>;

  struct key_entry {
    caf::actor handle;
    std::string user_id;
  };

  // The maps that grow with the entities a node serves are striped, so that at a million
  // entries none of them stalls the directory for a rehash of all (see striped_map).
  striped_map<std::string, caf::actor> users;  ///< By user id.
  striped_map<std::string, key_entry> keys;    ///< By key hash.
  striped_map<std::string, int> keys_per_user; ///< Live key actors per user.
  /// Activations waiting for storage, by id: every asker gets the one actor.
  std::unordered_map<std::string, std::vector<waiter>> loading_users;
  std::unordered_map<std::string, std::vector<waiter>> loading_keys;
  db_pool db;
  caf::actor ledger;
  schemas::rate_limits default_limits; ///< For keys that set none of their own.
  std::chrono::seconds idle{300};      ///< Quiet time after which a key or user is passivated.
  /// Quiet time after which a key or user actor ends and its record is kept here instead,
  /// until `idle` is up; zero: actors stay until they are passivated.
  std::chrono::seconds hibernate{0};
  hibernation_store<hibernated_key> sleeping_keys;   ///< By key hash.
  hibernation_store<hibernated_user> sleeping_users; ///< By user id.
  caf::actor redis; ///< A redis_worker, or none: keeps key windows between activations.
  /// Without Redis (a single node): the windows of passivated keys, by key hash, until the
  /// key's next activation. Swept of day-old entries as it grows, a few buckets at a time.
  striped_map<std::string, rate_snapshot> kept_windows;
  striped_map<std::string, rate_snapshot>::cursor kept_sweep; ///< Where its next sweep starts.
  directory_routing cluster;
  /// This node's live key actors, published for the HTTP front end (may be null).
  key_handles_ptr handles;
};

/// Per node: resolves users and keys to their actors, activating them from storage on first
/// use (or from their record, if they hibernated), hibernating and passivating idle ones as
/// `lifetimes` says; never more than one actor per user or key.
caf::behavior directory_actor(caf::stateful_actor<directory_state>* self, db_pool db,
                              caf::actor ledger, schemas::rate_limits default_limits,
                              config::actors_config lifetimes, caf::actor redis,
                              key_handles_ptr handles = nullptr);

/// The same in a cluster node: entities of shards this node serves live here; calls for
/// other shards go to the owning node's directory; calls for a shard being handed over
/// wait until it has a new owner.
caf::behavior clustered_directory_actor(caf::stateful_actor<directory_state>* self, db_pool db,
                                        caf::actor ledger, schemas::rate_limits default_limits,
                                        config::actors_config lifetimes, std::string node_id,
                                        int32_t shards, caf::actor middleman, caf::actor redis,
                                        key_handles_ptr handles = nullptr);

} // namespace tollgate
