#pragma once

#include <memory>

#include "config/config.hpp"
#include "http/routes.hpp"

namespace tollgate::http {

/// The RESTinio front end: on the actor workers (`http.threads` 0, see worker_io.hpp) or on a
/// thread pool of its own.
class server {
public:
  server(const config::gateway_config& cfg, std::shared_ptr<const route_context> ctx);
  ~server();

  /// Binds and starts serving; throws if the address cannot be bound.
  void start();
  /// Stops accepting and closes connections; returns once the threads are done.
  void stop();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace tollgate::http
