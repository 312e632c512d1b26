#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include <caf/all.hpp>

namespace tollgate {

/// The key actors alive on this node, by key hash, for the HTTP front end: a call whose key
/// actor is listed asks it to admit directly, without a hop through the directory. The
/// directory alone writes the table: an entry is added when a key actor starts and removed
/// when it ends (passivated, crashed, or its shard left the node), so an entry never keeps
/// an ended actor. A call that still finds its actor gone asks the directory, as without
/// the table. Thread-safe: read by every HTTP thread.
class key_handles {
public:
  caf::actor find(const std::string& key_hash) const {
    std::lock_guard<std::mutex> guard(mtx_);
    auto it = actors_.find(key_hash);
    return it == actors_.end() ? caf::actor{} : it->second;
  }

  void put(const std::string& key_hash, caf::actor handle) {
    std::lock_guard<std::mutex> guard(mtx_);
    actors_[key_hash] = std::move(handle);
  }

  void erase(const std::string& key_hash) {
    std::lock_guard<std::mutex> guard(mtx_);
    actors_.erase(key_hash);
  }

  void clear() {
    std::lock_guard<std::mutex> guard(mtx_);
    actors_.clear();
  }

private:
  mutable std::mutex mtx_;
  std::unordered_map<std::string, caf::actor> actors_;
};

using key_handles_ptr = std::shared_ptr<key_handles>;

} // namespace tollgate
