#pragma once

#include <chrono>
#include <cstdint>
#include <vector>

#include <caf/all.hpp>

#include "actors/messages.hpp"

namespace tollgate {

struct ledger_writer_state {
  static inline constexpr const char* name = "ledger_writer";

  struct waiting_post {
    storage::ledger_post post;
    caf::response_promise promise;
    std::chrono::steady_clock::time_point queued; ///< When it came: its wait is metered.
  };

  std::vector<waiting_post> queue;
  bool committing = false;
  caf::actor committer; ///< A db_worker with the writer's own session.
  std::size_t max_batch = 1024;
  int64_t batches = 0;
  int64_t posts = 0;
};

/// Per node: group-commits balance changes. While one batch commits, the next one gathers;
/// each poster gets its answer only once its change is durable.
caf::behavior ledger_writer(caf::stateful_actor<ledger_writer_state>* self, caf::actor committer);

} // namespace tollgate
