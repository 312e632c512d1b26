#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include <caf/all.hpp>

#include "actors/messages.hpp"
#include "storage/database.hpp"
#include "storage/session_keeper.hpp"

namespace tollgate {

struct ledger_writer_state {
  static inline constexpr const char* name = "ledger_writer";

  struct waiting_post {
    storage::ledger_post post;
    caf::response_promise promise;
    std::chrono::steady_clock::time_point queued; ///< When it came: its wait is metered.
  };

  std::vector<waiting_post> queue;
  /// A commit_atom to itself is in the mailbox, behind the posts that came before it.
  bool commit_due = false;
  std::optional<storage::session_keeper> session; ///< The writer's own; set when it starts.
  std::size_t max_batch = 1024;
  int64_t batches = 0;
  int64_t posts = 0;
};

/// Per node: group-commits balance changes. Spawned detached: it commits on its own session,
/// on its own thread. The posts that came while one batch was committing make the next
/// batch, committed as soon as the first ends, without a hop to another thread in between;
/// each poster gets its answer only once its change is durable.
caf::behavior ledger_writer(caf::stateful_actor<ledger_writer_state>* self,
                            std::shared_ptr<const storage::database> db);

} // namespace tollgate
