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

/// The front end served by the actor workers (`http.threads` 0): its own io_context, which
/// the workers run between their jobs.
struct on_workers {
  explicit on_workers(caf::actor_system& sys)
      : attached(sys, io) {}

  restinio::asio_ns::io_context io;
  std::optional<restinio::http_server_t<traits>> http;
  worker_io attached; // ends first: the workers leave io before the server and io end
};

} // namespace

struct server::impl {
  const config::gateway_config& cfg;
  std::shared_ptr<const route_context> ctx;
  restinio::running_server_handle_t<traits> running; // on threads of its own
  std::unique_ptr<on_workers> shared;                // or on the actor workers
};

server::server(const config::gateway_config& cfg, std::shared_ptr<const route_context> ctx)
    : impl_(std::make_unique<impl>(impl{cfg, std::move(ctx), {}, {}})) {}

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
  auto shared = std::make_unique<on_workers>(*impl_->ctx->system);
  shared->http.emplace(restinio::external_io_context(shared->io), std::move(settings));
  completion opened;
  shared->http->open_async(opened.on_ok(), opened.on_error());
  opened.wait(); // throws if the address cannot be bound
  impl_->shared = std::move(shared);
}

void server::stop() {
  if (impl_->running) {
    impl_->running->stop();
    impl_->running->wait();
    impl_->running.reset();
  }
  if (impl_->shared) {
    completion closed;
    impl_->shared->http->close_async(closed.on_ok(), closed.on_error());
    try {
      closed.wait();
    } catch (const std::exception&) {
      // The acceptor could not be closed cleanly: it goes with the io_context below.
    }
    // The workers leave the io_context; then the connections it still holds end with it.
    impl_->shared.reset();
  }
}

} // namespace tollgate::http
