#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <caf/all.hpp>

#include "actors/idle_timer.hpp"
#include "actors/limits/rate_limiter.hpp"
#include "actors/messages.hpp"
#include "actors/owed_answers.hpp"
#include "actors/user/credit_account.hpp"

namespace tollgate {

struct user_state {
  static inline constexpr const char* name = "user_actor";
  schemas::user_record user;
  credit_account account;
  caf::actor ledger;
  caf::actor directory;
  /// The user's shard and the lease epoch this actor was started under (cluster), stamped
  /// on every ledger post: once the lease moves, the ledger refuses its posts (fenced) and
  /// the actor ends, so the next call loads the user on the new owner.
  shard_fence fence;
  /// The shard is being handed to another node: no new holds; open ones finish here.
  bool closing = false;
  /// The user's own limits, across all of its keys.
  rate_limiter limiter;
  idle_timer idle; ///< Ends the actor after a quiet spell without open work.

  /// Who holds an open hold: if that request actor dies, its hold is voided.
  struct hold_owner {
    caf::actor_addr holder;
    int64_t tokens = 0; ///< Estimate charged to the token window.
  };
  /// Ledger posts waiting to be retried after the store failed, by request id.
  struct pending_retry {
    storage::ledger_post post;
    int attempts_left = 0;
    std::function<void(storage::ledger_result)> done;
  };
  /// Work under way, made by the first call and dropped on an idle tick once it is all done:
  /// an idle user actor then stays small (the whole actor fits a 1.5 KB allocation).
  struct open_work {
    /// The answers of settlements and credits whose change is on its way to the ledger:
    /// failed if this actor ends first, so that their calls settle with the user's next owner
    /// and the directory passes the credits on to it (request ids keep each to one entry).
    owed_answers owed;
    /// Credits sent to the ledger, by request id: the numbers in `owed` of their askers
    /// (replays arriving meanwhile wait here too).
    std::unordered_map<std::string, std::vector<uint64_t>> credits_in_flight;
    std::unordered_map<std::string, hold_owner> hold_owners;
    std::unordered_map<std::string, pending_retry> retries;

    std::size_t size() const { return owed.size() + hold_owners.size() + retries.size(); }
  };
  std::unique_ptr<open_work> work;

  open_work& busy() {
    if (!work)
      work = std::make_unique<open_work>();
    return *work;
  }
  std::size_t open_count() const { return work ? work->size() : 0; }
};

/// Takes an admin's change of `user`: its policy fields only (name, email, suspended, limits),
/// never the balance, which only the user's actor changes. True if the limits changed (the
/// user's windows start afresh).
bool apply_policy_change(schemas::user_record& user, schemas::user_record& changed);

/// One per account: owns the balance and open holds; the only writer of the balance.
/// `windows`, if taken (taken_at_ms > 0), is where the user's own rate windows stood when its
/// last actor ended (passivated, or its shard moved); an ending user actor leaves them with
/// the directory (passivated) or answers them (release_atom).
caf::behavior user_actor(caf::stateful_actor<user_state>* self, schemas::user_record user,
                         caf::actor ledger, caf::actor directory, std::chrono::seconds idle,
                         shard_fence fence, rate_snapshot windows = {});

} // namespace tollgate
