#include "actors/storage/db_worker.hpp"

#include "actors/thread_name.hpp"

namespace tollgate {

caf::behavior db_worker(caf::stateful_actor<db_worker_state>* self,
                        std::shared_ptr<const storage::database> db, const char* thread_name) {
  // A detached actor is initialized on its own thread.
  name_this_thread(thread_name);
  self->state.session.emplace(std::move(db));
  return {
      [=](db_job& job) -> caf::expected<caf::message> {
        try {
          return self->state.session->run(job.run);
        } catch (const soci::soci_error& e) {
          // The session was closed: the next job opens another (the server restarted).
          return make_api_failure(
              schemas::unavailable(std::string("database error: ") + e.what(), "database_error"));
        } catch (const std::exception& e) {
          return make_api_failure(schemas::internal_error(e.what()));
        }
      },
  };
}

db_pool::db_pool(caf::actor_system& sys, std::shared_ptr<const storage::database> db,
                 std::size_t size) {
  for (std::size_t i = 0; i < size; ++i)
    workers_.push_back(sys.spawn<caf::detached>(db_worker, db, "tg-db-read"));
}

const caf::actor& db_pool::next() {
  return workers_[next_++ % workers_.size()];
}

} // namespace tollgate
