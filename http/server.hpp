#pragma once

#include <memory>

#include "config/config.hpp"
#include "http/routes.hpp"

namespace asio {
class io_context;
} // namespace asio

namespace tollgate::http {

/// The RESTinio front end: on the actor workers (`http.threads` 0, see worker_io.hpp) or on a
/// thread pool of its own.
class server {
public:
  /// `on_workers`: the io_context the actor workers run (workers_io_context), which must
  /// outlive the server; it serves the sockets when `http.threads` is 0.
  server(const config::gateway_config& cfg, std::shared_ptr<const route_context> ctx,
         asio::io_context& on_workers);
  ~server();

  /// Binds and starts serving; throws if the address cannot be bound.
  void start();
  /// Stops accepting; on threads of its own, also closes the connections and returns once
  /// the threads are done (on the workers, the connections end with their io_context).
  void stop();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace tollgate::http
