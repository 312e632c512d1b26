#include "actors/ledger/ledger_writer.hpp"

#include <chrono>
#include <exception>
#include <iterator>
#include <utility>

#include "actors/metrics/metrics.hpp"
#include "actors/thread_name.hpp"

namespace tollgate {

namespace {

using self_ptr = caf::stateful_actor<ledger_writer_state>*;

/// Commits after every message already in the mailbox, so that the posts among them join
/// the batch.
void commit_later(self_ptr self) {
  if (std::exchange(self->state.commit_due, true))
    return;
  self->send(self, commit_atom_v);
}

std::vector<storage::ledger_result> commit(storage::session_keeper& session,
                                           const std::vector<storage::ledger_post>& posts) {
  try {
    return session.run([&](soci::session& sql, storage::session_cache& cache) {
      auto results = cache.get<storage::ledger_batch_writer>(sql).commit(posts);
      if (!results.empty() && results.front().status == storage::apply_status::failed)
        cache.invalidate(); // the connection may be gone: start afresh
      return results;
    });
  } catch (const std::exception& e) {
    // The session could not be opened (the batch writer answers its own failures).
    std::vector<storage::ledger_result> out;
    out.reserve(posts.size());
    for (const auto& post : posts)
      out.push_back(
          {storage::apply_status::failed, post.change, std::string("database error: ") + e.what()});
    return out;
  }
}

/// Commits the oldest posts (at most max_batch) and answers them.
void commit_next(self_ptr self) {
  auto& st = self->state;
  std::vector<ledger_writer_state::waiting_post> batch;
  if (st.queue.size() <= st.max_batch) {
    batch.swap(st.queue);
  } else {
    auto end = st.queue.begin() + static_cast<std::ptrdiff_t>(st.max_batch);
    batch.assign(std::make_move_iterator(st.queue.begin()), std::make_move_iterator(end));
    st.queue.erase(st.queue.begin(), end);
  }
  auto started = std::chrono::steady_clock::now();
  auto& metrics = gateway_metrics::global();
  std::vector<storage::ledger_post> posts;
  posts.reserve(batch.size());
  for (auto& w : batch) {
    metrics.ledger_wait.observe(std::chrono::duration<double>(started - w.queued).count());
    posts.push_back(std::move(w.post));
  }
  ++st.batches;
  st.posts += static_cast<int64_t>(posts.size());
  metrics.ledger_batch.observe(static_cast<double>(posts.size()));
  auto results = commit(*st.session, posts);
  metrics.ledger_commit.observe(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  for (std::size_t i = 0; i < batch.size(); ++i)
    batch[i].promise.deliver(std::move(results[i]));
}

} // namespace

caf::behavior ledger_writer(caf::stateful_actor<ledger_writer_state>* self,
                            std::shared_ptr<const storage::database> db) {
  name_this_thread("tg-ledger"); // a detached actor is initialized on its own thread
  self->state.session.emplace(std::move(db));
  return {
      [=](post_atom, storage::ledger_post& post) {
        auto promise = self->make_response_promise();
        self->state.queue.push_back({std::move(post), promise, std::chrono::steady_clock::now()});
        commit_later(self);
        return promise;
      },
      [=](commit_atom) {
        // Sent only after a post was queued, so the queue holds at least that post.
        self->state.commit_due = false;
        commit_next(self);
        // The posts that came during the commit wait in the mailbox: they are queued before
        // the next commit, which comes after them.
        if (!self->state.queue.empty())
          commit_later(self);
      },
      [=](stats_atom) { return std::make_tuple(self->state.batches, self->state.posts); },
  };
}

} // namespace tollgate
