#include "http/server.hpp"

#include <algorithm>
#include <exception>
#include <future>
#include <optional>

#include "http/worker_io.hpp"

namespace tollgate::http {

namespace {

using traits = restinio::traits_t<restinio::asio_timer_manager_t, restinio::null_logger_t, router>;

/// Waits for the outcome of an asynchronous open or close; rethrows its error.
class completion {
public:
  auto on_ok() {
    return [this]() noexcept { done_.set_value(); };
  }
  auto on_error() {
    return [this](std::exception_ptr e) noexcept { done_.set_exception(std::move(e)); };
  }
  void wait() { done_.get_future().get(); }

private:
  std::promise<void> done_;
};

} // namespace

struct server::impl {
  impl(const config::gateway_config& config, std::shared_ptr<const route_context> routes,
       restinio::asio_ns::io_context& workers_io)
      : cfg(config)
      , ctx(std::move(routes))
      , on_workers(workers_io) {}

  const config::gateway_config& cfg;
  std::shared_ptr<const route_context> ctx;
  restinio::asio_ns::io_context& on_workers;
  restinio::running_server_handle_t<traits> running;    // on threads of its own
  std::optional<restinio::http_server_t<traits>> on_io; // or on the actor workers
};

server::server(const config::gateway_config& cfg, std::shared_ptr<const route_context> ctx,
               restinio::asio_ns::io_context& on_workers)
    : impl_(std::make_unique<impl>(cfg, std::move(ctx), on_workers)) {}

server::~server() {
  stop();
}

void server::start() {
  const auto& cfg = impl_->cfg;
  // Model calls run for minutes: the defaults (10 s to handle, 5 s to write) are far too short.
  auto timeout =
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(cfg.http.request_timeout);
  // RESTinio drops a connection whose body passes its limit without answering; its limit is
  // set above ours so that the handler can answer 413 in the error shape.
  auto transport_limit = std::max<std::uint64_t>(cfg.http.max_body_bytes * 4, 1 << 20);
  auto settings = restinio::server_settings_t<traits>{}
                      .address(cfg.listen.host)
                      .port(cfg.listen.port)
                      .request_handler(make_router(impl_->ctx))
                      // Stream chunks go out at once, not after the client's delayed ACK.
                      .socket_options_setter([](auto& options) {
                        options.set_option(restinio::asio_ns::ip::tcp::no_delay{true});
                      })
                      .handle_request_timeout(timeout)
                      .write_http_response_timelimit(timeout)
                      .read_next_http_message_timelimit(std::chrono::seconds(120))
                      // Thousands of connections stay open through long streams: each keeps
                      // a read buffer and a slot per pipelined request. 1 KB (nginx's
                      // default header buffer) holds a typical call's headers; longer bodies
                      // are read in more pieces.
                      .buffer_size(1024)
                      .max_pipelined_requests(2)
                      .incoming_http_msg_limits(
                          restinio::incoming_http_msg_limits_t{}.max_body_size(transport_limit));
  if (cfg.http.threads > 0) {
    impl_->running =
        restinio::run_async(restinio::own_io_context(), std::move(settings), cfg.http.threads);
    return;
  }
  auto& http =
      impl_->on_io.emplace(restinio::external_io_context(impl_->on_workers), std::move(settings));
  completion opened;
  http.open_async(opened.on_ok(), opened.on_error());
  try {
    opened.wait();
  } catch (...) {
    impl_->on_io.reset();
    throw; // the address cannot be bound
  }
}

void server::stop() {
  if (impl_->running) {
    impl_->running->stop();
    impl_->running->wait();
    impl_->running.reset();
  }
  if (impl_->on_io) {
    completion closed;
    impl_->on_io->close_async(closed.on_ok(), closed.on_error());
    try {
      closed.wait();
    } catch (const std::exception&) {
      // The acceptor could not be closed cleanly: it goes with the io_context.
    }
    impl_->on_io.reset();
  }
}

} // namespace tollgate::http
