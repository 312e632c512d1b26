#include "http/server.hpp"

#include <algorithm>

namespace tollgate::http {

namespace {

using traits = restinio::traits_t<restinio::asio_timer_manager_t, restinio::null_logger_t, router>;

} // namespace

struct server::impl {
  const config::gateway_config& cfg;
  std::shared_ptr<const route_context> ctx;
  restinio::running_server_handle_t<traits> running;
};

server::server(const config::gateway_config& cfg, std::shared_ptr<const route_context> ctx)
    : impl_(std::make_unique<impl>(impl{cfg, std::move(ctx), {}})) {}

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
  impl_->running =
      restinio::run_async(restinio::own_io_context(), std::move(settings), cfg.http.threads);
}

void server::stop() {
  if (impl_->running) {
    impl_->running->stop();
    impl_->running->wait();
    impl_->running.reset();
  }
}

} // namespace tollgate::http
