#include "storage/ledger_batch.hpp"

#include <map>
#include <utility>

namespace tollgate::storage {

std::vector<ledger_result> ledger_batch_writer::commit(const std::vector<ledger_post>& posts) {
  std::vector<ledger_result> out;
  out.reserve(posts.size());
  try {
    soci::transaction tx(sql_);
    // Each (shard, epoch) once per batch; the row lock taken by the check lasts until the
    // commit, so no other node can acquire the shard in between.
    std::map<std::pair<int32_t, int64_t>, bool> fences;
    for (const auto& post : posts)
      if (post.shard >= 0)
        fences.try_emplace({post.shard, post.epoch}, false);
    for (auto& [fence, holds] : fences)
      holds = cluster_.fence_holds(fence.first, fence.second);
    for (const auto& post : posts) {
      if (post.shard >= 0 && !fences[{post.shard, post.epoch}]) {
        out.push_back({apply_status::fenced, post.change, "the shard lease moved to another node"});
        continue;
      }
      // On PostgreSQL a charge's usage row travels in the charge's own statement.
      const bool has_usage = !post.usage.request_id.empty();
      const bool usage_with_change = has_usage && post.change.amount != 0 && ledger_.writes_usage();
      if (has_usage && !usage_with_change)
        usage_.append(post.usage);
      if (post.change.amount == 0) {
        out.push_back({apply_status::committed, post.change, {}});
        continue;
      }
      auto outcome =
          ledger_.apply(post.change, post.floor, usage_with_change ? &post.usage : nullptr);
      if (outcome.status == apply_status::committed && !post.audit.action.empty()) {
        auto record = post.audit;
        // Both sides come from inside the transaction: exact even when a batch holds several
        // changes of one user.
        record.before_json =
            "{\"balance\":" + std::to_string(outcome.entry.balance_after - outcome.entry.amount) +
            "}";
        record.after_json = "{\"ledger_entry_id\":" + std::to_string(outcome.entry.id) +
                            ",\"amount\":" + std::to_string(outcome.entry.amount) +
                            ",\"balance_after\":" + std::to_string(outcome.entry.balance_after) +
                            "}";
        audit_.append(record);
      }
      out.push_back({outcome.status, std::move(outcome.entry), {}});
    }
    tx.commit();
  } catch (const std::exception& e) {
    out.assign(posts.size(), ledger_result{apply_status::failed, {}, e.what()});
    for (std::size_t i = 0; i < posts.size(); ++i)
      out[i].entry = posts[i].change;
  }
  return out;
}

std::vector<ledger_result> commit_batch(soci::session& sql, const std::vector<ledger_post>& posts) {
  return ledger_batch_writer(sql).commit(posts);
}

} // namespace tollgate::storage
