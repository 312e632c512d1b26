#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <soci/soci.h>

#include "schemas/records.hpp"
#include "storage/pg_pipeline.hpp"
#include "storage/usage_repository.hpp"

namespace tollgate::storage {

/// What happened to one balance change.
enum class apply_status {
  committed,    ///< New entry written, balance changed.
  replayed,     ///< An entry with this request id exists; it is returned unchanged.
  insufficient, ///< The balance would fall below the floor; nothing written.
  no_account,   ///< No such user; nothing written.
  failed,       ///< The store failed; nothing written.
  fenced,       ///< The node no longer owns the user's shard at this epoch; nothing written.
};

struct apply_outcome {
  apply_status status = apply_status::no_account;
  schemas::ledger_entry entry; ///< The new or the earlier entry.
};

/// The append-only ledger and the balances it moves. Callers run `apply` inside a
/// transaction; balance and entry change together or not at all.
/// The statements of `apply` are prepared on first use and kept: a repository that lives
/// as long as its session (the ledger writer's) parses its SQL once.
class ledger_repository {
public:
  explicit ledger_repository(soci::session& sql);
  ~ledger_repository();
  ledger_repository(const ledger_repository&) = delete;
  ledger_repository& operator=(const ledger_repository&) = delete;

  /// Adds `change.amount` to the user's balance if the result stays >= `floor`, and appends
  /// the entry with the resulting balance. Replays of a request id change nothing.
  apply_outcome apply(const schemas::ledger_entry& change, int64_t floor);

  /// PostgreSQL: queues the one statement of `apply` in `pipe`, with `usage` (if given)
  /// written by the same statement, as usage_repository::append would, whatever becomes of
  /// the change. Once the pipeline has synced, `applied` reads the outcome from that
  /// statement's answer; a replay or a refusal then looks up the earlier entry or the
  /// balance with a statement of its own.
  void send_apply(pg_pipeline& pipe, const schemas::ledger_entry& change, int64_t floor,
                  const usage_record* usage);
  apply_outcome applied(const pg_answer& answer, const schemas::ledger_entry& change);

  std::optional<schemas::ledger_entry> find_by_request(const std::string& request_id);
  /// Newest first; `before_id` 0 starts at the newest.
  std::vector<schemas::ledger_entry> list(const std::string& user_id, int64_t limit,
                                          int64_t before_id);
  /// Sum of all the user's entries: must always equal the stored balance.
  int64_t sum(const std::string& user_id);
  std::optional<int64_t> balance(const std::string& user_id);

private:
  struct prepared;
  prepared& statements();

  soci::session& sql_;
  const bool postgres_;
  std::unique_ptr<prepared> prepared_;
  /// PostgreSQL: the names of the charge statement once prepared, alone and after the
  /// call's usage row, and the parameters of the last one sent (reused).
  std::string pipelined_charge_;
  std::string pipelined_charge_with_usage_;
  pg_params pipelined_params_;
};

} // namespace tollgate::storage
