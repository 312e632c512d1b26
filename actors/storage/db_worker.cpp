#include "actors/storage/db_worker.hpp"

#include "actors/thread_name.hpp"

namespace tollgate {

namespace {

void close_session(db_worker_state& st) {
  st.cache.clear(); // its statements belong to the session
  st.session.reset();
}

} // namespace

caf::behavior db_worker(caf::stateful_actor<db_worker_state>* self,
                        std::shared_ptr<const storage::database> db, const char* thread_name) {
  // A detached actor is initialized on its own thread.
  name_this_thread(thread_name);
  self->state.db = std::move(db);
  return {
      [=](db_job& job) -> caf::expected<caf::message> {
        auto& st = self->state;
        try {
          // A session the server ended while it sat idle is reopened before the job, so
          // that no call fails on it (the server was restarted, or a node taking over a
          // shard ended this node's sessions).
          if (st.session && st.db->idle_session_ended(*st.session))
            close_session(st);
          if (!st.session)
            st.session = st.db->open();
          auto reply = job.run(*st.session, st.cache);
          if (st.cache.invalid())
            close_session(st);
          return reply;
        } catch (const soci::soci_error& e) {
          // The connection may be broken (server restarted): reopen on the next job.
          close_session(st);
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
