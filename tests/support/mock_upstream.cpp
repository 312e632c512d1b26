// tollgate_mock_upstream: an OpenAI-compatible upstream for integration tests and benchmarks
// (and Anthropic's /v1/messages, for the anthropic provider kind).
// Every delay is an asio timer on the connection's strand, so a few threads carry thousands
// of slow streams. The answers themselves come from mock_upstream_logic.

#include "tests/support/mock_upstream_logic.hpp"

#include <restinio/all.hpp>

#include <pthread.h>
#include <sys/resource.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace tollgate::mock {

namespace {

namespace asio = restinio::asio_ns;
using nlohmann::json;

constexpr std::size_t recorded_limit = 100;
constexpr auto long_timeout = std::chrono::minutes{10};

class mock_state;

/// Tells mock_state when a connection closes, so answers still waiting on it end as cancelled.
class connection_close_listener {
public:
  explicit connection_close_listener(mock_state& state)
      : state_(state) {}
  void state_changed(const restinio::connection_state::notice_t& notice) noexcept;

private:
  mock_state& state_;
};

struct server_traits : restinio::traits_t<restinio::asio_timer_manager_t, restinio::null_logger_t,
                                          restinio::router::express_router_t<>> {
  using connection_state_listener_t = connection_close_listener;
};
using router_t = restinio::router::express_router_t<>;
using connection_t = restinio::impl::connection_t<server_traits>;
using strand_t = server_traits::strand_t;

class chat_exchange;

/// Which API a chat answer speaks: OpenAI's chat completions or Anthropic's Messages.
enum class wire_format { openai, anthropic };

/// State shared by all connections: settings, recorded requests, counters and the chat
/// answers still in flight (keyed by connection, so a closed connection cancels them).
class mock_state {
public:
  mock_state(mock_settings defaults, std::vector<std::string> models)
      : settings_(defaults)
      , models_(std::move(models)) {}

  mock_settings settings() const {
    std::lock_guard lock{mutex_};
    return settings_;
  }

  /// Applies a partial update; throws std::invalid_argument and changes nothing if it is bad.
  mock_settings update_settings(const json& patch) {
    std::lock_guard lock{mutex_};
    apply_settings_patch(settings_, patch);
    return settings_;
  }

  void record(std::string path, json headers, json body) {
    json entry{
        {"path", std::move(path)}, {"headers", std::move(headers)}, {"body", std::move(body)}};
    std::lock_guard lock{mutex_};
    ++requests_;
    recorded_.push_back(std::move(entry));
    if (recorded_.size() > recorded_limit)
      recorded_.pop_front();
  }

  json recorded() const {
    std::lock_guard lock{mutex_};
    return json(recorded_);
  }

  /// Forgets recorded requests and zeroes the request and cancel counters.
  void clear_recorded() {
    std::lock_guard lock{mutex_};
    recorded_.clear();
    requests_ = 0;
    cancelled_ = 0;
  }

  json stats() const {
    std::lock_guard lock{mutex_};
    return {{"requests", requests_}, {"in_flight", in_flight_.size()}, {"cancelled", cancelled_}};
  }

  std::string next_completion_id() { return "chatcmpl-mock-" + std::to_string(++last_id_); }
  std::string next_message_id() { return "msg_mock-" + std::to_string(++last_id_); }

  const std::vector<std::string>& models() const { return models_; }

  void begin(restinio::connection_id_t connection, std::shared_ptr<chat_exchange> exchange) {
    std::lock_guard lock{mutex_};
    in_flight_.emplace(connection, std::move(exchange));
  }

  /// Drops the exchange from the in-flight set; the caller must hold its own reference.
  void end(restinio::connection_id_t connection, const chat_exchange* exchange, bool cancelled) {
    std::lock_guard lock{mutex_};
    auto [first, last] = in_flight_.equal_range(connection);
    for (auto it = first; it != last; ++it)
      if (it->second.get() == exchange) {
        in_flight_.erase(it);
        break;
      }
    if (cancelled)
      ++cancelled_;
  }

  void connection_closed(restinio::connection_id_t connection);

  /// Releases every in-flight exchange (and so its connection) before the server goes away.
  void drop_in_flight() {
    std::unordered_multimap<restinio::connection_id_t, std::shared_ptr<chat_exchange>> dropped;
    std::lock_guard lock{mutex_};
    dropped.swap(in_flight_);
  }

private:
  mutable std::mutex mutex_;
  mock_settings settings_;
  std::deque<json> recorded_;
  std::uint64_t requests_ = 0;
  std::uint64_t cancelled_ = 0;
  std::unordered_multimap<restinio::connection_id_t, std::shared_ptr<chat_exchange>> in_flight_;
  std::atomic<std::uint64_t> last_id_{0};
  const std::vector<std::string> models_;
};

/// One chat completion that waits or streams. Runs on its connection's strand: the request
/// handler, timers, write notifications and the close notice all execute there.
class chat_exchange : public std::enable_shared_from_this<chat_exchange> {
public:
  chat_exchange(mock_state& state, restinio::request_handle_t request, chat_request chat,
                mock_settings settings, wire_format format = wire_format::openai)
      : state_(state)
      , request_(std::move(request))
      , connection_(restinio::impl::access_req_connection(*request_))
      , strand_(dynamic_cast<connection_t&>(*connection_).get_executor())
      , timer_(strand_)
      , chat_(std::move(chat))
      , settings_(std::move(settings))
      , format_(format)
      , ids_{format == wire_format::anthropic ? state.next_message_id()
                                              : state.next_completion_id(),
             static_cast<std::int64_t>(std::time(nullptr))} {
    if (chat_.stream)
      events_ = format_ == wire_format::anthropic ? messages_stream_events(chat_, settings_, ids_)
                                                  : chat_stream_events(chat_, settings_, ids_);
  }

  void start() {
    state_.begin(request_->connection_id(), shared_from_this());
    if (!chat_.stream)
      after_delay(settings_.latency_ms, [this] { answer(); });
    else if (fault_at(fault_kind::stall_after, 0))
      stall();
    else
      after_delay(settings_.ttft_ms, [this] { send_event(0); });
  }

  /// The connection closed (client gone, or a RESTinio timeout) before the answer ended.
  void connection_closed() {
    if (phase_ != phase::done)
      finish(true);
  }

  strand_t& strand() { return strand_; }

private:
  enum class phase { waiting, streaming, stalled, done };

  template <typename Step>
  void after_delay(std::int64_t delay_ms, Step step) {
    if (delay_ms <= 0) {
      step();
      return;
    }
    timer_.expires_after(std::chrono::milliseconds{delay_ms});
    timer_.async_wait([self = shared_from_this(), step](const asio::error_code& error) {
      if (!error && self->phase_ != phase::done)
        step();
    });
  }

  /// True if the fault of `kind` strikes before event `index` (k beyond the end: at the end).
  bool fault_at(fault_kind kind, std::size_t index) const {
    return settings_.fault.kind == kind &&
           std::min(settings_.fault.value, events_.events.size()) == index;
  }

  void answer() {
    switch (settings_.fault.kind) {
    case fault_kind::reset_after:
      reset_connection();
      return;
    case fault_kind::stall_after:
      stall();
      return;
    case fault_kind::malformed_after:
      request_->create_response()
          .append_header(restinio::http_field::content_type, "application/json")
          .set_body("{not json")
          .done();
      break;
    default:
      request_->create_response()
          .append_header(restinio::http_field::content_type, "application/json")
          .set_body((format_ == wire_format::anthropic
                         ? messages_body(chat_, settings_, ids_)
                         : chat_completion_body(chat_, settings_, ids_))
                        .dump())
          .done();
    }
    finish(false);
  }

  void open_stream() {
    if (stream_)
      return;
    phase_ = phase::streaming;
    stream_.emplace(request_->create_response<restinio::chunked_output_t>());
    stream_->append_header(restinio::http_field::content_type, "text/event-stream")
        .append_header(restinio::http_field::cache_control, "no-cache");
  }

  void send_event(std::size_t index) {
    if (fault_at(fault_kind::reset_after, index)) {
      if (stream_) {
        reset_connection();
      } else {
        // Headers first, so the client has started a response that then breaks off.
        open_stream();
        stream_->flush([self = shared_from_this()](const asio::error_code& error) {
          if (error)
            self->finish(true);
          else
            self->reset_connection();
        });
      }
      return;
    }
    if (fault_at(fault_kind::stall_after, index)) {
      stall();
      return;
    }
    open_stream();
    if (index == events_.events.size()) {
      stream_->done();
      finish(false);
      return;
    }
    stream_->append_chunk(events_.events[index]);
    bool last = index + 1 == events_.events.size();
    if (last && !fault_at(fault_kind::reset_after, index + 1) &&
        !fault_at(fault_kind::stall_after, index + 1)) {
      // [DONE] travels with the terminating zero-length chunk.
      stream_->done();
      finish(false);
      return;
    }
    stream_->flush([self = shared_from_this(), index](const asio::error_code& error) {
      self->after_event(index, error);
    });
  }

  void after_event(std::size_t index, const asio::error_code& error) {
    if (phase_ == phase::done)
      return;
    if (error) {
      finish(true);
      return;
    }
    std::size_t next = index + 1;
    after_delay(next < events_.content_events ? settings_.interval_ms : 0,
                [this, next] { send_event(next); });
  }

  /// Keeps the connection open and silent until the client closes it.
  void stall() { phase_ = phase::stalled; }

  /// Closes the socket under RESTinio: it has no API to abort a response, so the socket is
  /// taken with move_upgrade_internals() (as websocket upgrades do), shut down and closed.
  /// The client sees the response end early: no zero-length chunk, or no response at all.
  void reset_connection() {
    phase_ = phase::done;
    // Posted: the notificator or handler that called us still uses the connection.
    asio::post(strand_, [self = shared_from_this()] {
      auto internals = dynamic_cast<connection_t&>(*self->connection_).move_upgrade_internals();
      asio::error_code ignored;
      internals.m_socket.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
      internals.m_socket.close(ignored);
      self->stream_.reset();
      self->state_.end(self->request_->connection_id(), self.get(), false);
    });
  }

  void finish(bool cancelled) {
    if (phase_ == phase::done)
      return;
    phase_ = phase::done;
    timer_.cancel();
    stream_.reset();
    state_.end(request_->connection_id(), this, cancelled);
  }

  mock_state& state_;
  restinio::request_handle_t request_;
  restinio::impl::connection_handle_t connection_;
  strand_t strand_;
  asio::steady_timer timer_;
  chat_request chat_;
  mock_settings settings_;
  wire_format format_;
  completion_ids ids_;
  stream_events events_;
  std::optional<restinio::response_builder_t<restinio::chunked_output_t>> stream_;
  phase phase_ = phase::waiting;
};

void mock_state::connection_closed(restinio::connection_id_t connection) {
  std::vector<std::shared_ptr<chat_exchange>> closed;
  {
    std::lock_guard lock{mutex_};
    auto [first, last] = in_flight_.equal_range(connection);
    for (auto it = first; it != last; ++it)
      closed.push_back(it->second);
  }
  for (auto& exchange : closed) {
    auto& strand = exchange->strand();
    asio::post(strand, [exchange = std::move(exchange)] { exchange->connection_closed(); });
  }
}

void connection_close_listener::state_changed(
    const restinio::connection_state::notice_t& notice) noexcept {
  auto cause = notice.cause();
  if (restinio::get_if<restinio::connection_state::closed_t>(&cause) == nullptr)
    return;
  try {
    state_.connection_closed(notice.connection_id());
  } catch (...) {
    // Out of memory while collecting: the exchange then ends at its next write instead.
  }
}

restinio::http_status_line_t status_line(std::size_t code) {
  static const std::unordered_map<std::size_t, const char*> reasons{{200, "OK"},
                                                                    {400, "Bad Request"},
                                                                    {401, "Unauthorized"},
                                                                    {403, "Forbidden"},
                                                                    {404, "Not Found"},
                                                                    {405, "Method Not Allowed"},
                                                                    {408, "Request Timeout"},
                                                                    {409, "Conflict"},
                                                                    {413, "Payload Too Large"},
                                                                    {422, "Unprocessable Entity"},
                                                                    {429, "Too Many Requests"},
                                                                    {500, "Internal Server Error"},
                                                                    {502, "Bad Gateway"},
                                                                    {503, "Service Unavailable"},
                                                                    {504, "Gateway Timeout"}};
  auto it = reasons.find(code);
  return {restinio::http_status_code_t{static_cast<std::uint16_t>(code)},
          it == reasons.end() ? "Mock Status" : it->second};
}

restinio::request_handling_status_t reply_json(const restinio::request_handle_t& request,
                                               std::size_t status, const json& body) {
  return request->create_response(status_line(status))
      .append_header(restinio::http_field::content_type, "application/json")
      .set_body(body.dump())
      .done();
}

restinio::request_handling_status_t reply_error(const restinio::request_handle_t& request,
                                                std::size_t status, std::string_view message,
                                                std::string_view type = "invalid_request_error") {
  return reply_json(request, status, error_body(message, type, ""));
}

std::string lower(std::string_view text) {
  std::string result{text};
  for (auto& c : result)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return result;
}

/// The HTTP endpoints; each handler answers at once or hands the request to a chat_exchange.
class mock_service {
public:
  explicit mock_service(mock_state& state)
      : state_(state) {}

  std::unique_ptr<router_t> make_router() {
    auto router = std::make_unique<router_t>();
    add(*router, restinio::http_method_post(), "/v1/chat/completions", &mock_service::chat);
    add(*router, restinio::http_method_post(), "/v1/messages", &mock_service::messages);
    add(*router, restinio::http_method_post(), "/v1/embeddings", &mock_service::embeddings);
    add(*router, restinio::http_method_get(), "/v1/models", &mock_service::models);
    add(*router, restinio::http_method_get(), "/mock/requests", &mock_service::requests);
    add(*router, restinio::http_method_delete(), "/mock/requests", &mock_service::clear);
    add(*router, restinio::http_method_get(), "/mock/stats", &mock_service::stats);
    add(*router, restinio::http_method_get(), "/mock/settings", &mock_service::get_settings);
    add(*router, restinio::http_method_post(), "/mock/settings", &mock_service::post_settings);
    add(*router, restinio::http_method_get(), "/health", &mock_service::health);
    for (auto& [path, methods] : methods_by_path_)
      router->add_handler(std::move(methods), path, [](auto request, auto) {
        return reply_error(request, 405, "method not allowed");
      });
    router->non_matched_request_handler([](auto request) {
      return reply_error(request, 404,
                         "no such endpoint: " + std::string{request->header().path()});
    });
    return router;
  }

private:
  using handler_t =
      restinio::request_handling_status_t (mock_service::*)(const restinio::request_handle_t&);

  void add(router_t& router, restinio::http_method_id_t method, const std::string& path,
           handler_t handler) {
    router.add_handler(method, path, [this, handler](auto request, auto) {
      try {
        return (this->*handler)(request);
      } catch (const std::exception& error) {
        return reply_error(request, 500, error.what(), "server_error");
      }
    });
    methods_by_path_[path].add(method);
  }

  /// Records a /v1 request and works out its settings; on a bad `x-mock-*` header or an
  /// injected status fault it answers and returns nullopt.
  std::optional<mock_settings> admit(const restinio::request_handle_t& request, const json& body,
                                     restinio::request_handling_status_t& answered,
                                     wire_format format = wire_format::openai) {
    json headers = json::object();
    mock_settings settings = state_.settings();
    std::string bad_header;
    request->header().for_each_field([&](const restinio::http_header_field_t& field) {
      auto name = lower(field.name());
      try {
        apply_setting_header(settings, name, field.value());
      } catch (const std::invalid_argument& error) {
        bad_header = error.what();
      }
      headers[name] = field.value();
    });
    state_.record(std::string{request->header().path()}, std::move(headers), body);
    if (!bad_header.empty()) {
      answered = format == wire_format::anthropic
                     ? reply_json(request, 400, anthropic_error_body(bad_header, 400))
                     : reply_error(request, 400, bad_header);
      return std::nullopt;
    }
    if (settings.fault.kind == fault_kind::status) {
      auto response = request->create_response(status_line(settings.fault.value));
      response.append_header(restinio::http_field::content_type, "application/json");
      if (settings.fault.value == 429)
        response.append_header(restinio::http_field::retry_after, "1");
      auto fault_body = format == wire_format::anthropic
                            ? anthropic_error_body("mock fault", settings.fault.value)
                            : error_body("mock fault", "server_error", "mock_fault");
      answered = response.set_body(fault_body.dump()).done();
      return std::nullopt;
    }
    return settings;
  }

  static json parse_body(const restinio::request_handle_t& request) {
    return json::parse(request->body(), nullptr, false);
  }

  restinio::request_handling_status_t chat(const restinio::request_handle_t& request) {
    auto body = parse_body(request);
    restinio::request_handling_status_t answered{};
    auto settings = admit(request, body.is_discarded() ? json(request->body()) : body, answered);
    if (!settings)
      return answered;
    if (body.is_discarded())
      return reply_error(request, 400, "the request body is not valid JSON");
    chat_request chat;
    try {
      chat = parse_chat_request(body);
    } catch (const std::invalid_argument& error) {
      return reply_error(request, 400, error.what());
    }
    // The benchmark's hot path: no timer, no in-flight bookkeeping.
    if (!chat.stream && settings->latency_ms <= 0 && settings->fault.kind == fault_kind::none) {
      completion_ids ids{state_.next_completion_id(),
                         static_cast<std::int64_t>(std::time(nullptr))};
      return reply_json(request, 200, chat_completion_body(chat, *settings, ids));
    }
    std::make_shared<chat_exchange>(state_, request, std::move(chat), std::move(*settings))
        ->start();
    return restinio::request_accepted();
  }

  /// Anthropic's Messages API, with the chat endpoint's settings and faults.
  restinio::request_handling_status_t messages(const restinio::request_handle_t& request) {
    auto body = parse_body(request);
    restinio::request_handling_status_t answered{};
    auto settings = admit(request, body.is_discarded() ? json(request->body()) : body, answered,
                          wire_format::anthropic);
    if (!settings)
      return answered;
    if (body.is_discarded())
      return reply_json(request, 400,
                        anthropic_error_body("the request body is not valid JSON", 400));
    chat_request chat;
    try {
      chat = parse_messages_request(body);
    } catch (const std::invalid_argument& error) {
      return reply_json(request, 400, anthropic_error_body(error.what(), 400));
    }
    std::make_shared<chat_exchange>(state_, request, std::move(chat), std::move(*settings),
                                    wire_format::anthropic)
        ->start();
    return restinio::request_accepted();
  }

  restinio::request_handling_status_t embeddings(const restinio::request_handle_t& request) {
    auto body = parse_body(request);
    restinio::request_handling_status_t answered{};
    auto settings = admit(request, body.is_discarded() ? json(request->body()) : body, answered);
    if (!settings)
      return answered;
    if (body.is_discarded())
      return reply_error(request, 400, "the request body is not valid JSON");
    json answer;
    try {
      answer = embeddings_body(body);
    } catch (const std::invalid_argument& error) {
      return reply_error(request, 400, error.what());
    }
    if (settings->latency_ms <= 0)
      return reply_json(request, 200, answer);
    auto& connection =
        dynamic_cast<connection_t&>(*restinio::impl::access_req_connection(*request));
    auto timer = std::make_shared<asio::steady_timer>(connection.get_executor());
    timer->expires_after(std::chrono::milliseconds{settings->latency_ms});
    timer->async_wait([timer, request, answer = std::move(answer)](const asio::error_code&) {
      reply_json(request, 200, answer);
    });
    return restinio::request_accepted();
  }

  restinio::request_handling_status_t models(const restinio::request_handle_t& request) {
    restinio::request_handling_status_t answered{};
    if (!admit(request, nullptr, answered))
      return answered;
    return reply_json(request, 200, models_body(state_.models()));
  }

  restinio::request_handling_status_t requests(const restinio::request_handle_t& request) {
    return reply_json(request, 200, state_.recorded());
  }

  restinio::request_handling_status_t clear(const restinio::request_handle_t& request) {
    state_.clear_recorded();
    return reply_json(request, 200, json::object());
  }

  restinio::request_handling_status_t stats(const restinio::request_handle_t& request) {
    return reply_json(request, 200, state_.stats());
  }

  restinio::request_handling_status_t get_settings(const restinio::request_handle_t& request) {
    return reply_json(request, 200, to_json(state_.settings()));
  }

  restinio::request_handling_status_t post_settings(const restinio::request_handle_t& request) {
    auto patch = parse_body(request);
    if (patch.is_discarded())
      return reply_error(request, 400, "the request body is not valid JSON");
    try {
      return reply_json(request, 200, to_json(state_.update_settings(patch)));
    } catch (const std::invalid_argument& error) {
      return reply_error(request, 400, error.what());
    }
  }

  restinio::request_handling_status_t health(const restinio::request_handle_t& request) {
    return reply_json(request, 200, {{"status", "ok"}});
  }

  mock_state& state_;
  std::map<std::string, restinio::router::dynamic_none_of_methods_matcher_t> methods_by_path_;
};

struct command_line {
  std::string host;
  std::uint16_t port = 0;
  std::size_t threads = 2;
  std::vector<std::string> models{"mock-1"};
  std::string port_file;
  mock_settings defaults{};
};

constexpr const char* usage_text =
    "usage: tollgate_mock_upstream --listen HOST:PORT [--threads N] [--models a,b]\n"
    "         [--port-file PATH] [--latency-ms MS] [--ttft-ms MS] [--chunks N]\n"
    "         [--interval-ms MS] [--completion-tokens N] [--usage 0|1]\n"
    "         [--fault none|status:CODE|reset-after:K|stall-after:K|malformed-after:K]\n";

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> items;
  std::size_t start = 0;
  while (start <= text.size()) {
    auto comma = text.find(',', start);
    auto item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (!item.empty())
      items.push_back(item);
    if (comma == std::string::npos)
      break;
    start = comma + 1;
  }
  return items;
}

command_line parse_command_line(int argc, char** argv) {
  command_line parsed;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::cout << usage_text;
      std::exit(0);
    }
    if (i + 1 >= argc)
      throw std::invalid_argument(flag + " needs a value (or is unknown)");
    std::string value = argv[++i];
    if (flag == "--listen") {
      auto colon = value.rfind(':');
      auto port = colon == std::string::npos ? std::string{} : value.substr(colon + 1);
      unsigned long number = 0;
      try {
        number = std::stoul(port);
      } catch (const std::exception&) {
        number = 0;
      }
      if (number == 0 || number > 65535)
        throw std::invalid_argument("--listen: expected HOST:PORT with a port 1..65535, got '" +
                                    value + "'");
      parsed.host = value.substr(0, colon);
      parsed.port = static_cast<std::uint16_t>(number);
    } else if (flag == "--threads") {
      parsed.threads = std::stoul(value);
      if (parsed.threads == 0 || parsed.threads > 256)
        throw std::invalid_argument("--threads: expected 1..256");
    } else if (flag == "--models") {
      parsed.models = split_list(value);
    } else if (flag == "--port-file") {
      parsed.port_file = value;
    } else if (!apply_setting_flag(parsed.defaults, flag, value)) {
      throw std::invalid_argument("unknown option " + flag);
    }
  }
  if (parsed.host.empty())
    throw std::invalid_argument("--listen HOST:PORT is required");
  return parsed;
}

/// Thousands of concurrent streams need as many descriptors as the hard limit allows.
void raise_descriptor_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &limit);
  }
}

void write_port_file(const std::string& path, std::uint16_t port) {
  auto temporary = path + ".tmp";
  {
    std::ofstream out{temporary, std::ios::trunc};
    out << port << '\n';
    if (!out)
      throw std::runtime_error("cannot write " + temporary);
  }
  std::filesystem::rename(temporary, path);
}

int run(const command_line& options) {
  raise_descriptor_limit();
  mock_state state{options.defaults, options.models};
  mock_service service{state};

  // Block the stop signals in every thread (the pool inherits the mask); main sigwaits.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  auto settings = restinio::server_settings_t<server_traits>{}
                      .address(options.host)
                      .port(options.port)
                      .request_handler(service.make_router())
                      .handle_request_timeout(long_timeout)
                      .write_http_response_timelimit(long_timeout)
                      .read_next_http_message_timelimit(long_timeout)
                      // Room for a second request lets RESTinio keep reading during a stream, so it
                      // sees the client close at once, even while the stream is stalled.
                      .max_pipelined_requests(2)
                      // One accept at a time (the default): RESTinio 0.6.16 counts connection ids
                      // without a lock, so concurrent accepts could hand out one id twice.
                      .concurrent_accepts_count(1)
                      .connection_state_listener(std::make_shared<connection_close_listener>(state))
                      .socket_options_setter([](restinio::socket_options_t& socket) {
                        socket.set_option(asio::ip::tcp::no_delay{true});
                      });
  auto server = restinio::run_async<server_traits>(restinio::own_io_context(), std::move(settings),
                                                   options.threads);

  std::cout << "mock upstream listening on http://" << options.host << ':' << options.port
            << std::endl;
  if (!options.port_file.empty())
    write_port_file(options.port_file, options.port);

  int signal = 0;
  sigwait(&stop_signals, &signal);
  server->stop();
  server->wait();
  state.drop_in_flight();
  std::cout << "mock upstream stopped" << std::endl;
  return 0;
}

} // namespace

} // namespace tollgate::mock

int main(int argc, char** argv) {
  tollgate::mock::command_line options;
  try {
    options = tollgate::mock::parse_command_line(argc, argv);
  } catch (const std::exception& error) {
    std::cerr << "tollgate_mock_upstream: " << error.what() << '\n' << tollgate::mock::usage_text;
    return 2;
  }
  try {
    return tollgate::mock::run(options);
  } catch (const std::exception& error) {
    std::cerr << "tollgate_mock_upstream: " << error.what() << std::endl;
    return 1;
  }
}
