#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include <caf/all.hpp>

#include "actors/messages.hpp"
#include "actors/storage/db_worker.hpp"

namespace tollgate {

struct directory_state {
  static inline constexpr const char* name = "directory";
  using waiter = std::function<void(caf::expected<caf::actor>)>;

  struct key_entry {
    caf::actor handle;
    std::string user_id;
  };

  std::unordered_map<std::string, caf::actor> users;  ///< By user id.
  std::unordered_map<std::string, key_entry> keys;    ///< By key hash.
  std::unordered_map<std::string, int> keys_per_user; ///< Live key actors per user.
  /// Activations waiting for storage, by id: every asker gets the one actor.
  std::unordered_map<std::string, std::vector<waiter>> loading_users;
  std::unordered_map<std::string, std::vector<waiter>> loading_keys;
  db_pool db;
  caf::actor ledger;
  schemas::rate_limits default_limits; ///< For keys that set none of their own.
  std::chrono::seconds idle{300};
};

/// Per node: resolves users and keys to their actors, activating them from storage on first
/// use and passivating idle ones; never more than one actor per user or key.
caf::behavior directory_actor(caf::stateful_actor<directory_state>* self, db_pool db,
                              caf::actor ledger, schemas::rate_limits default_limits,
                              std::chrono::seconds idle);

} // namespace tollgate
