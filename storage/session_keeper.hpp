#pragma once

#include <memory>
#include <utility>

#include <soci/soci.h>

#include "storage/database.hpp"
#include "storage/session_cache.hpp"

namespace tollgate::storage {

/// The database session of one thread that runs jobs on it, such as a db worker or the
/// ledger writer: opened on first use, with the objects that live as long as it (a
/// session_cache), and opened afresh after a job that may have broken it.
class session_keeper {
public:
  explicit session_keeper(std::shared_ptr<const database> db)
      : db_(std::move(db)) {}

  /// Runs fn(session, cache) and returns what it returns. The session is opened first if
  /// there is none, or if the server ended it while it sat idle (restarted, or a node taking
  /// over a shard ended this node's sessions), so that no job fails on it. It is closed
  /// after a job that throws soci::soci_error (the connection may be gone) or that called
  /// cache.invalidate(). Exceptions propagate, those of opening the session included.
  template <class Fn>
  auto run(Fn&& fn) {
    auto& sql = ready();
    try {
      auto out = std::forward<Fn>(fn)(sql, cache_);
      if (cache_.invalid())
        close();
      return out;
    } catch (const soci::soci_error&) {
      close();
      throw;
    }
  }

  void close() {
    cache_.clear(); // its statements belong to the session
    session_.reset();
  }

private:
  soci::session& ready() {
    if (session_ && db_->idle_session_ended(*session_))
      close();
    if (!session_)
      session_ = db_->open();
    return *session_;
  }

  std::shared_ptr<const database> db_;
  std::unique_ptr<soci::session> session_;
  session_cache cache_; ///< Cleared whenever the session closes.
};

} // namespace tollgate::storage
