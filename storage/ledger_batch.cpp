#include "storage/ledger_batch.hpp"

#include <algorithm>
#include <utility>

#include "storage/database.hpp"

namespace tollgate::storage {

namespace {

/// Each (shard, epoch) the posts name, once; the values say whether the lease holds.
ledger_batch_writer::fence_map fences_of(const std::vector<ledger_post>& posts) {
  ledger_batch_writer::fence_map fences;
  for (const auto& post : posts)
    if (post.shard >= 0)
      fences.try_emplace({post.shard, post.epoch}, false);
  return fences;
}

bool fenced(const ledger_post& post, const ledger_batch_writer::fence_map& fences) {
  return post.shard >= 0 && !fences.at({post.shard, post.epoch});
}

ledger_result fenced_result(const ledger_post& post) {
  return {apply_status::fenced, post.change, "the shard lease moved to another node"};
}

/// The audit row of a committed change. Both sides come from inside the transaction: exact
/// even when a batch holds several changes of one user.
audit_record audit_of(const ledger_post& post, const schemas::ledger_entry& entry) {
  auto record = post.audit;
  record.before_json = "{\"balance\":" + std::to_string(entry.balance_after - entry.amount) + "}";
  record.after_json = "{\"ledger_entry_id\":" + std::to_string(entry.id) +
                      ",\"amount\":" + std::to_string(entry.amount) +
                      ",\"balance_after\":" + std::to_string(entry.balance_after) + "}";
  return record;
}

} // namespace

ledger_batch_writer::ledger_batch_writer(soci::session& sql)
    : sql_(sql)
    , postgres_(sql.get_backend_name() == "postgresql")
    , ledger_(sql)
    , usage_(sql)
    , audit_(sql)
    , cluster_(sql) {}

std::vector<ledger_result> ledger_batch_writer::commit(const std::vector<ledger_post>& posts) {
  try {
    return postgres_ ? commit_pipelined(posts) : commit_in_turn(posts);
  } catch (const std::exception& e) {
    std::vector<ledger_result> out(posts.size(), ledger_result{apply_status::failed, {}, e.what()});
    for (std::size_t i = 0; i < posts.size(); ++i)
      out[i].entry = posts[i].change;
    return out;
  }
}

std::vector<ledger_result>
ledger_batch_writer::commit_in_turn(const std::vector<ledger_post>& posts) {
  std::vector<ledger_result> out;
  out.reserve(posts.size());
  soci::transaction tx(sql_);
  // The row lock taken by each check lasts until the commit, so no other node can acquire
  // the shard in between.
  auto fences = fences_of(posts);
  for (auto& [fence, holds] : fences)
    holds = cluster_.fence_holds(fence.first, fence.second);
  for (const auto& post : posts) {
    if (fenced(post, fences)) {
      out.push_back(fenced_result(post));
      continue;
    }
    if (!post.usage.request_id.empty())
      usage_.append(post.usage);
    if (post.change.amount == 0) {
      out.push_back({apply_status::committed, post.change, {}});
      continue;
    }
    auto outcome = ledger_.apply(post.change, post.floor);
    if (outcome.status == apply_status::committed && !post.audit.action.empty())
      audit_.append(audit_of(post, outcome.entry));
    out.push_back({outcome.status, std::move(outcome.entry), {}});
  }
  tx.commit();
  return out;
}

std::vector<ledger_result>
ledger_batch_writer::commit_pipelined(const std::vector<ledger_post>& posts) {
  auto fences = fences_of(posts);
  if (fences.empty())
    return write_pipelined(posts, fences, cluster_repository::stale_fence::abort);
  // Leases rarely move: the batch asserts its fences in the round trip of its writes, and a
  // lease that moved undoes it all. Then the fences are checked first, in a round trip of
  // their own, and only the posts under a moved lease are refused.
  try {
    return write_pipelined(posts, fences, cluster_repository::stale_fence::abort);
  } catch (const pg_error& e) {
    if (e.sqlstate() != cluster_repository::lease_moved)
      throw;
  }
  return write_pipelined(posts, fences, cluster_repository::stale_fence::empty_answer);
}

std::vector<ledger_result>
ledger_batch_writer::write_pipelined(const std::vector<ledger_post>& posts, fence_map& fences,
                                     cluster_repository::stale_fence on_stale) {
  // Without fences to sort posts by, or audit rows, a batch is one round trip: its
  // statements and a sync, which commits them (or, if any fails, none). Checking fences
  // before the writes they guard, or writing audit rows, which need the entries' ids,
  // takes a transaction over two syncs.
  const bool check_first = on_stale == cluster_repository::stale_fence::empty_answer;
  const bool audits = std::any_of(posts.begin(), posts.end(),
                                  [](const ledger_post& p) { return !p.audit.action.empty(); });
  const bool explicit_transaction = (check_first && !fences.empty()) || audits;
  try {
    std::vector<pg_answer> answers;
    std::size_t next = 0; // the answer of the first post's first statement
    {
      pg_pipeline pipe(sql_);
      if (explicit_transaction) {
        pipe.send("BEGIN");
        ++next;
      }
      for (auto& [fence, holds] : fences) {
        cluster_.send_fence(pipe, fence.first, fence.second, on_stale);
        holds = true; // unless the check says otherwise
        ++next;
      }
      if (check_first && !fences.empty()) {
        auto checks = pipe.sync();
        next = 0;
        std::size_t i = 1; // after BEGIN's
        for (auto& [fence, holds] : fences)
          holds = cluster_repository::fence_held(checks.at(i++));
      }
      for (const auto& post : posts) {
        if (fenced(post, fences))
          continue;
        // A charge's usage row travels in the charge's own statement.
        const bool has_usage = !post.usage.request_id.empty();
        if (has_usage && post.change.amount == 0)
          usage_.send_append(pipe, post.usage);
        if (post.change.amount != 0)
          ledger_.send_apply(pipe, post.change, post.floor, has_usage ? &post.usage : nullptr);
      }
      if (explicit_transaction && !audits)
        pipe.send("COMMIT");
      answers = pipe.sync();
    }
    std::vector<ledger_result> out;
    out.reserve(posts.size());
    for (const auto& post : posts) {
      if (fenced(post, fences)) {
        out.push_back(fenced_result(post));
        continue;
      }
      if (post.change.amount == 0) {
        if (!post.usage.request_id.empty())
          ++next;
        out.push_back({apply_status::committed, post.change, {}});
        continue;
      }
      auto outcome = ledger_.applied(answers.at(next++), post.change);
      if (outcome.status == apply_status::committed && !post.audit.action.empty())
        audit_.append(audit_of(post, outcome.entry));
      out.push_back({outcome.status, std::move(outcome.entry), {}});
    }
    if (audits)
      sql_.commit();
    return out;
  } catch (...) {
    if (explicit_transaction) {
      try {
        execute_script(sql_, "ROLLBACK");
      } catch (...) {
        // The connection is broken; the server rolls back as it ends the session.
      }
    }
    throw;
  }
}

std::vector<ledger_result> commit_batch(soci::session& sql, const std::vector<ledger_post>& posts) {
  return ledger_batch_writer(sql).commit(posts);
}

} // namespace tollgate::storage
