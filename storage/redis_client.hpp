#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

#include "config/config.hpp"

struct redisContext;

namespace tollgate::storage {

class redis_error : public std::runtime_error {
public:
  using runtime_error::runtime_error;
};

/// A blocking Redis connection (hiredis) for state that is shared but can be rebuilt, such
/// as rate-window snapshots. Connects lazily, reconnects after a failure; every call throws
/// redis_error when Redis cannot be reached or answers an error. Not thread-safe.
class redis_client {
public:
  explicit redis_client(config::redis_url url,
                        std::chrono::milliseconds timeout = std::chrono::milliseconds(500));
  ~redis_client();
  redis_client(const redis_client&) = delete;
  redis_client& operator=(const redis_client&) = delete;

  /// GET; nothing if the key does not exist.
  std::optional<std::string> get(const std::string& key);
  /// SET with an expiry (PX).
  void set(const std::string& key, const std::string& value, std::chrono::milliseconds ttl);

private:
  redisContext* connection();
  void drop();

  config::redis_url url_;
  std::chrono::milliseconds timeout_;
  redisContext* context_ = nullptr;
};

} // namespace tollgate::storage
