#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <soci/soci.h>

#include "schemas/records.hpp"
#include "storage/audit_repository.hpp"
#include "storage/cluster_repository.hpp"
#include "storage/ledger_repository.hpp"
#include "storage/usage_repository.hpp"

namespace tollgate::storage {

/// One balance change waiting for the next group commit. A change of 0 writes no ledger
/// entry (a call that cost nothing), only its usage record.
struct ledger_post {
  schemas::ledger_entry change; ///< id and balance_after are filled in by the commit.
  int64_t floor = 0;            ///< The balance may not fall below this.
  audit_record audit;           ///< Written with the change when `audit.action` is set.
  usage_record usage;           ///< Written with the change when `usage.request_id` is set.
  /// In a cluster: the user's shard and the epoch of the lease its actor was started under.
  /// The post commits only while that lease is current. -1: no check (a single node).
  int32_t shard = -1;
  int64_t epoch = 0;

  template <class Inspector>
  friend auto inspect(Inspector& f, ledger_post& x) {
    return f(x.change, x.floor, x.audit, x.usage, x.shard, x.epoch);
  }
};

struct ledger_result {
  apply_status status = apply_status::failed;
  schemas::ledger_entry entry;
  std::string error; ///< Why the store failed, for the log.

  template <class Inspector>
  friend auto inspect(Inspector& f, ledger_result& x) {
    return f(x.status, x.entry, x.error);
  }
};

/// Commits batches of posts on one session, with its statements prepared once for all
/// batches (keep one per session, e.g. in a session_cache).
class ledger_batch_writer {
public:
  explicit ledger_batch_writer(soci::session& sql);

  /// Commits all posts in one transaction (one fsync for the lot) and returns one result
  /// per post, in order. If the transaction fails, every result is `failed` and nothing is
  /// written. Posts whose shard lease is no longer current are `fenced`: the check and the
  /// writes share the transaction (I5). On PostgreSQL the statements of a batch travel in
  /// a pipeline: one round trip to the server for the lot (two with audit rows, or when a
  /// lease has moved: see commit_pipelined).
  std::vector<ledger_result> commit(const std::vector<ledger_post>& posts);

  /// (shard, epoch) -> whether that lease is current.
  using fence_map = std::map<std::pair<int32_t, int64_t>, bool>;

private:
  /// SQLite: statement after statement, in the process.
  std::vector<ledger_result> commit_in_turn(const std::vector<ledger_post>& posts);
  /// PostgreSQL: the statements sent back to back, their answers read together.
  std::vector<ledger_result> commit_pipelined(const std::vector<ledger_post>& posts);
  /// One try of commit_pipelined, with the fences asserted in the writes' round trip or
  /// checked in a round trip before them (`on_stale`); sets what each fence held.
  std::vector<ledger_result> write_pipelined(const std::vector<ledger_post>& posts,
                                             fence_map& fences,
                                             cluster_repository::stale_fence on_stale);

  soci::session& sql_;
  const bool postgres_;
  ledger_repository ledger_;
  usage_repository usage_;
  audit_repository audit_;
  cluster_repository cluster_;
};

/// One batch on a writer made for it (statements prepared for this batch only).
std::vector<ledger_result> commit_batch(soci::session& sql, const std::vector<ledger_post>& posts);

} // namespace tollgate::storage
