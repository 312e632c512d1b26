#pragma once

#include <memory>
#include <optional>

#include <caf/all.hpp>

#include "actors/messages.hpp"
#include "storage/database.hpp"
#include "storage/session_cache.hpp"
#include "storage/session_keeper.hpp"

namespace tollgate {

struct db_worker_state {
  static inline constexpr const char* name = "db_worker";
  std::optional<storage::session_keeper> session; ///< Set when the worker starts.
};

/// Runs db_jobs on its own session. Spawned detached: blocking is its purpose. Its thread is
/// named `thread_name` (at most 15 characters).
caf::behavior db_worker(caf::stateful_actor<db_worker_state>* self,
                        std::shared_ptr<const storage::database> db, const char* thread_name);

/// A few db workers served round-robin; used by one actor at a time (not thread-safe).
class db_pool {
public:
  db_pool() = default;
  db_pool(caf::actor_system& sys, std::shared_ptr<const storage::database> db, std::size_t size);

  const caf::actor& next();
  const std::vector<caf::actor>& workers() const { return workers_; }

private:
  std::vector<caf::actor> workers_;
  std::size_t next_ = 0;
};

/// Sends `fn(session)` to a db worker; `fn` returns the reply as a caf::message.
template <class Self, class Fn>
auto run_db(Self* self, db_pool& pool, Fn fn) {
  return self->request(pool.next(), caf::infinite,
                       db_job{[fn = std::move(fn)](soci::session& sql, storage::session_cache&) {
                         return fn(sql);
                       }});
}

} // namespace tollgate
