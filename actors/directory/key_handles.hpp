#pragma once

#include <array>
#include <memory>
#include <mutex>
#include <string>

#include <caf/all.hpp>

#include "actors/directory/striped_map.hpp"

namespace tollgate {

/// The key actors alive on this node, by key hash, for the HTTP front end: a call whose key
/// actor is listed asks it to admit directly, without a hop through the directory. The
/// directory alone writes the table: an entry is added when a key actor starts and removed
/// when it ends (passivated, crashed, or its shard left the node), so an entry never keeps
/// an ended actor. A call that still finds its actor gone asks the directory, as without
/// the table. Thread-safe: read by every HTTP thread.
///
/// Each stripe of the table has a lock of its own, so that a stripe that rehashes while
/// keys are being activated holds up only the calls whose keys hash to it, for a
/// `stripe_count()`th of the time a rehash of the whole table took (about 0.2 s at a
/// million keys, every call waiting).
class key_handles {
public:
  caf::actor find(const std::string& key_hash) const {
    auto s = table::stripe_of(key_hash);
    std::lock_guard<std::mutex> guard(locks_[s].mtx);
    const auto& part = actors_.stripe(s);
    auto it = part.find(key_hash);
    return it == part.end() ? caf::actor{} : it->second;
  }

  void put(const std::string& key_hash, caf::actor handle) {
    auto s = table::stripe_of(key_hash);
    std::lock_guard<std::mutex> guard(locks_[s].mtx);
    actors_.stripe(s)[key_hash] = std::move(handle);
  }

  void erase(const std::string& key_hash) {
    auto s = table::stripe_of(key_hash);
    std::lock_guard<std::mutex> guard(locks_[s].mtx);
    actors_.stripe(s).erase(key_hash);
  }

  void clear() {
    for (std::size_t s = 0; s < table::stripe_count(); ++s) {
      std::lock_guard<std::mutex> guard(locks_[s].mtx);
      actors_.stripe(s).clear();
    }
  }

private:
  using table = striped_map<std::string, caf::actor>;

  /// A lock on a cache line of its own: threads that take neighbouring locks do not slow
  /// each other down.
  struct alignas(64) stripe_lock {
    std::mutex mtx;
  };

  mutable std::array<stripe_lock, table::stripe_count()> locks_;
  table actors_;
};

using key_handles_ptr = std::shared_ptr<key_handles>;

} // namespace tollgate
