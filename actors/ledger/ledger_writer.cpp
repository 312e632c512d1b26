#include "actors/ledger/ledger_writer.hpp"

#include <chrono>
#include <utility>

#include "actors/metrics/metrics.hpp"

namespace tollgate {

namespace {

using self_ptr = caf::stateful_actor<ledger_writer_state>*;

void commit_next(self_ptr self) {
  auto& st = self->state;
  if (st.committing || st.queue.empty())
    return;
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
  st.committing = true;
  ++st.batches;
  st.posts += static_cast<int64_t>(posts.size());
  metrics.ledger_batch.observe(static_cast<double>(posts.size()));
  auto shared = std::make_shared<decltype(batch)>(std::move(batch));
  self->request(
          st.committer, caf::infinite,
          db_job{[posts = std::move(posts)](soci::session& sql, storage::session_cache& cache) {
            auto results = cache.get<storage::ledger_batch_writer>(sql).commit(posts);
            if (!results.empty() && results.front().status == storage::apply_status::failed)
              cache.invalidate(); // the connection may be gone: start afresh
            return caf::make_message(std::move(results));
          }})
      .then(
          [=](std::vector<storage::ledger_result>& results) {
            gateway_metrics::global().ledger_commit.observe(
                std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
            for (std::size_t i = 0; i < shared->size(); ++i)
              (*shared)[i].promise.deliver(std::move(results[i]));
            self->state.committing = false;
            commit_next(self);
          },
          [=](caf::error& err) {
            for (auto& w : *shared)
              w.promise.deliver(err);
            self->state.committing = false;
            commit_next(self);
          });
}

} // namespace

caf::behavior ledger_writer(caf::stateful_actor<ledger_writer_state>* self, caf::actor committer) {
  self->state.committer = std::move(committer);
  self->link_to(self->state.committer);
  return {
      [=](post_atom, storage::ledger_post& post) {
        auto promise = self->make_response_promise();
        self->state.queue.push_back({std::move(post), promise, std::chrono::steady_clock::now()});
        commit_next(self);
        return promise;
      },
      [=](stats_atom) { return std::make_tuple(self->state.batches, self->state.posts); },
  };
}

} // namespace tollgate
