#include "actors/provider/upstream_loop.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <system_error>
#include <utility>

#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/steady_timer.hpp>
#include <curl/curl.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "actors/metrics/metrics.hpp"

namespace tollgate {

struct upstream_loop::transfer {
  uint64_t id = 0;
  CURL* easy = nullptr;
  curl_slist* headers = nullptr;
  transfer_spec spec;
  transfer_result result;
  char error[CURL_ERROR_SIZE] = {0};
  std::chrono::steady_clock::time_point started;
  /// Of the latest piece of the answer (or the start, before one came).
  std::chrono::steady_clock::time_point last_data;
  bool got_bytes = false;
  /// curl holds an upload buffer for the request until the request is sent whole.
  bool holds_upload_buffer = false;
  /// Its entry in the loop's deadlines, while one is queued.
  deadline_slot deadline;
  /// How long the transfer may be silent before it is nudged (upstream_loop::nudge_silent);
  /// zero: never (not over HTTP/2).
  std::chrono::milliseconds nudge_after{0};
  /// Its entry in the loop's nudges, while one is queued.
  deadline_slot nudge;
  upstream_loop* loop = nullptr;

  ~transfer() {
    if (easy)
      curl_easy_cleanup(easy);
    if (headers)
      curl_slist_free_all(headers);
  }
};

namespace {

struct curl_global {
  curl_global() { curl_global_init(CURL_GLOBAL_DEFAULT); }
  ~curl_global() { curl_global_cleanup(); }
};

size_t on_write(char* ptr, size_t size, size_t count, void* user) {
  auto* t = static_cast<upstream_loop::transfer*>(user);
  auto bytes = size * count;
  t->last_data = std::chrono::steady_clock::now();
  if (!std::exchange(t->got_bytes, true)) {
    if (t->spec.stream && t->spec.idle_timeout.count() > 0)
      t->loop->queue_deadline(*t, t->last_data + t->spec.idle_timeout); // now silence counts
    if (t->nudge_after.count() > 0) {
      t->nudge_after = upstream_loop::nudge_in_answer;
      t->loop->queue_nudge(*t, t->last_data + t->nudge_after);
    }
  }
  long status = 0;
  curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
  t->result.http_status = status;
  // Streams pass 2xx bodies through as they come; errors are collected whole to report them.
  if (t->spec.stream && status >= 200 && status < 300 && t->spec.on_data)
    t->spec.on_data(t->id, std::string_view(ptr, bytes));
  else
    t->result.body.append(ptr, bytes);
  return bytes;
}

/// Whether `text` begins with `prefix` (lower case), ignoring the case of `text`.
bool starts_with_lower(std::string_view text, std::string_view prefix) {
  return text.size() >= prefix.size() &&
         std::equal(prefix.begin(), prefix.end(), text.begin(), [](char p, char c) {
           return p == std::tolower(static_cast<unsigned char>(c));
         });
}

/// Keeps the one response header the gateway acts on: Retry-After (in seconds).
size_t on_header(char* ptr, size_t size, size_t count, void* user) {
  auto* t = static_cast<upstream_loop::transfer*>(user);
  std::string_view line(ptr, size * count);
  constexpr std::string_view name = "retry-after:";
  if (starts_with_lower(line, name)) {
    int64_t seconds = 0;
    auto value = line.substr(name.size());
    while (!value.empty() && value.front() == ' ')
      value.remove_prefix(1);
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
    if (ec == std::errc() && end != value.data() && seconds > 0)
      t->result.retry_after_ms = seconds * 1000;
  }
  return size * count;
}

/// Over TLS: curl copies the request through its upload buffer.
bool uses_tls(const transfer_spec& spec) {
  return starts_with_lower(spec.url, "https://");
}

/// HTTP/2 where TLS may negotiate it.
bool may_speak_http2(const transfer_spec& spec) {
  return spec.http == config::http_version::automatic && uses_tls(spec);
}

[[noreturn]] void throw_errno(const char* what) {
  throw std::system_error(errno, std::generic_category(), what);
}

} // namespace

/// curl tells which sockets to watch for what. When to call it without a socket (its
/// timers) the loop asks with curl_multi_timeout before each wait rather than through a timer
/// callback: curl calls that only when its earliest timer changes, so one handed over a
/// fraction of a millisecond early would be lost.
struct upstream_loop::curl_events {
  static int on_socket(CURL*, curl_socket_t fd, int what, void* user, void* known) {
    auto* loop = static_cast<upstream_loop*>(user);
    if (what == CURL_POLL_REMOVE) {
      // Fails harmlessly if curl closed the socket already: closing left the epoll set.
      epoll_ctl(loop->epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
      return 0;
    }
    epoll_event ev{};
    ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0u) | (what & CURL_POLL_OUT ? EPOLLOUT : 0u);
    ev.data.fd = fd;
    // A socket curl has not shown before is added; a number reused after a close that curl
    // did not announce is still in the set, so adding it falls back to changing it.
    if (known == nullptr) {
      if (epoll_ctl(loop->epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0 && errno == EEXIST)
        epoll_ctl(loop->epoll_fd_, EPOLL_CTL_MOD, fd, &ev);
      curl_multi_assign(loop->multi_, fd, loop);
    } else if (epoll_ctl(loop->epoll_fd_, EPOLL_CTL_MOD, fd, &ev) != 0 && errno == ENOENT) {
      epoll_ctl(loop->epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
    }
    return 0;
  }

  /// Notes a transfer whose request curl has sent whole (its body counted as uploaded): the
  /// loop frees the upload buffer once curl has returned (no option is set in a callback).
  static int on_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t uploaded) {
    auto* t = static_cast<transfer*>(user);
    if (t->holds_upload_buffer && uploaded >= static_cast<curl_off_t>(t->spec.body.size())) {
      t->holds_upload_buffer = false;
      t->loop->requests_sent_.push_back(t->id);
    }
    return 0;
  }
};

/// Waits for the loop's epoll set and timers in the io_context, and turns the loop on the
/// thread that runs the wait's handler or asks to start or cancel a transfer. Its handlers
/// keep it alive; they find the loop gone (null) once it has ended.
///
/// One thread at a time turns the loop, holding `turning`. A command queued while another
/// thread holds it sets `queued`; the holder looks at `queued` after it lets go and, if set,
/// takes the loop again for another turn unless a third thread has. So no command waits for
/// the next event, and no thread that asks waits for another's turn.
struct upstream_loop::io_driver : std::enable_shared_from_this<io_driver> {
  io_driver(asio::io_context& context, upstream_loop& owner)
      : io(context)
      , loop(&owner) {
    ready.emplace(io, owner.epoll_fd_);
    timer.emplace(io);
  }

  asio::io_context& io;
  /// Held while a thread turns the loop. Guards the fields below and the loop's own state.
  std::mutex turning;
  std::atomic<bool> queued{false}; ///< a command waits for a turn
  upstream_loop* loop;             ///< null once the loop has ended
  /// The loop's epoll set (not owned), and when the loop must next look at its timers; both
  /// gone once the io_context ends.
  std::optional<asio::posix::stream_descriptor> ready;
  std::optional<asio::steady_timer> timer;
  std::optional<clock::time_point> armed; ///< the timer's due time while it waits
  std::array<epoll_event, 256> found;     ///< what one look at the epoll set found ready

  /// Turns the loop on this thread, the ready sockets of `events` first (under `turning`).
  /// The transfers it ends for silence while it sets the timer count as part of the turn.
  void turn(const epoll_event* events, int ready_count) {
    queued.store(false);
    auto* outer = std::exchange(turning_here, loop); // a callback may turn another loop
    loop->turn(events, ready_count);
    arm();
    turning_here = outer;
  }

  /// Lets go of the loop, and turns it again while commands came meanwhile and no other
  /// thread took it. A loop that ended meanwhile has no commands left to apply: the flag is
  /// cleared all the same, or this thread would take and let go of the driver for ever.
  void let_go() {
    for (;;) {
      turning.unlock();
      if (!queued.load() || !turning.try_lock())
        return;
      if (loop)
        turn(nullptr, 0);
      else
        queued.store(false);
    }
  }

  /// The loop's earliest deadline, if earlier than the timer's (a later one is seen when the
  /// timer fires early).
  void arm() {
    auto due = clock::now() + loop->next_wait();
    if (!timer || (armed && *armed <= due))
      return;
    armed = due;
    timer->expires_at(due);
    timer->async_wait([self = shared_from_this()](const asio::error_code& ec) {
      if (ec != asio::error::operation_aborted)
        self->on_timer();
    });
  }

  void wait_ready() {
    ready->async_wait(asio::posix::descriptor_base::wait_read,
                      [self = shared_from_this()](const asio::error_code& ec) {
                        if (!ec)
                          self->on_ready();
                      });
  }

  void on_ready() {
    turning.lock();
    if (loop && ready) {
      int count = epoll_wait(loop->epoll_fd_, found.data(), static_cast<int>(found.size()), 0);
      turn(found.data(), std::max(count, 0));
      // Waiting again tells the io_context's epoll afresh, so sockets curl left ready show.
      wait_ready();
    }
    let_go();
  }

  void on_timer() {
    turning.lock();
    if (loop && timer) {
      armed.reset();
      turn(nullptr, 0);
    }
    let_go();
  }

  /// A command was queued: turns the loop here, unless another thread turns it (and then
  /// applies the command) or this thread is in the loop's turn already (a transfer's callback).
  void on_command(const upstream_loop* from) {
    queued.store(true);
    if (turning_here == from || !turning.try_lock())
      return;
    if (loop)
      turn(nullptr, 0);
    let_go();
  }

  /// Stops waiting in the io_context (under `turning`); the loop's transfers no longer move
  /// but on commands.
  void end_waits() {
    if (ready)
      ready->release(); // the epoll set is the loop's to close
    ready.reset();
    timer.reset();
    armed.reset();
  }

  /// The loop this thread is turning, if any.
  static thread_local const upstream_loop* turning_here;
};

namespace {

/// The io_drivers of an io_context's loops. When the io_context ends, asio shuts its services
/// down before it destroys what waits in it: the drivers stop waiting then, so that a loop
/// may outlive the io_context it ran on (it ends with the actor that holds it last).
class upstream_drivers final : public asio::execution_context::service {
public:
  static asio::execution_context::id id;

  explicit upstream_drivers(asio::execution_context& owner)
      : asio::execution_context::service(owner) {}

  void add(const std::shared_ptr<upstream_loop::io_driver>& driver) {
    std::lock_guard<std::mutex> guard(mtx_);
    std::erase_if(drivers_, [](const auto& d) { return d.expired(); });
    drivers_.push_back(driver);
  }

private:
  void shutdown() override {
    std::lock_guard<std::mutex> guard(mtx_);
    for (auto& weak : drivers_)
      if (auto driver = weak.lock()) {
        std::lock_guard<std::mutex> turning(driver->turning);
        driver->end_waits();
      }
    drivers_.clear();
  }

  std::mutex mtx_;
  std::vector<std::weak_ptr<upstream_loop::io_driver>> drivers_;
};

asio::execution_context::id upstream_drivers::id;

} // namespace

thread_local const upstream_loop* upstream_loop::io_driver::turning_here = nullptr;

upstream_loop::upstream_loop(asio::io_context& io, long max_host_connections) {
  static curl_global global;
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0)
    throw_errno("epoll_create1");
  multi_ = curl_multi_init();
  // Reuse connections across calls; multiplex HTTP/2 streams where the upstream offers it.
  curl_multi_setopt(multi_, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
  curl_multi_setopt(multi_, CURLMOPT_MAXCONNECTS, 1024L);
  if (max_host_connections > 0)
    curl_multi_setopt(multi_, CURLMOPT_MAX_HOST_CONNECTIONS, max_host_connections);
  curl_multi_setopt(multi_, CURLMOPT_SOCKETFUNCTION, curl_events::on_socket);
  curl_multi_setopt(multi_, CURLMOPT_SOCKETDATA, this);
  driver_ = std::make_shared<io_driver>(io, *this);
  // After the driver's descriptor and timer: asio shuts the newest service down first.
  asio::use_service<upstream_drivers>(io).add(driver_);
  std::lock_guard<std::mutex> guard(driver_->turning);
  driver_->wait_ready();
  driver_->arm();
}

upstream_loop::~upstream_loop() {
  {
    std::lock_guard<std::mutex> guard(driver_->turning);
    driver_->loop = nullptr;
    driver_->end_waits();
  }
  for (auto& [id, t] : transfers_)
    curl_multi_remove_handle(multi_, t->easy);
  transfers_.clear();
  curl_multi_cleanup(multi_);
  close(epoll_fd_);
}

std::size_t upstream_loop::queued_checks() {
  std::lock_guard<std::mutex> guard(driver_->turning);
  return deadlines_.size() + nudges_.size();
}

std::shared_ptr<upstream_loop> upstream_loop::sibling(long max_host_connections) const {
  return std::make_shared<upstream_loop>(driver_->io, max_host_connections);
}

uint64_t upstream_loop::start(transfer_spec spec) {
  auto id = next_id_++;
  ++active_;
  submit({command::kind::start, id, std::make_unique<transfer_spec>(std::move(spec))});
  return id;
}

void upstream_loop::cancel(uint64_t id) {
  submit({command::kind::cancel, id, nullptr});
}

void upstream_loop::submit(command cmd) {
  {
    std::lock_guard<std::mutex> guard(mtx_);
    commands_.push_back(std::move(cmd));
  }
  driver_->on_command(this);
}

bool upstream_loop::apply_queued() {
  std::vector<command> batch;
  {
    std::lock_guard<std::mutex> guard(mtx_);
    batch.swap(commands_);
  }
  for (auto& cmd : batch)
    apply(cmd);
  return !batch.empty();
}

void upstream_loop::turn(const epoll_event* events, int ready) {
  apply_queued();
  do {
    dispatch(events, ready);
    release_upload_buffers();
    end_finished();
    events = nullptr; // the ready sockets are handed over once
    ready = 0;
  } while (apply_queued()); // callbacks may have started or cancelled transfers
}

void upstream_loop::end_finished() {
  int queued = 0;
  while (CURLMsg* msg = curl_multi_info_read(multi_, &queued)) {
    if (msg->msg != CURLMSG_DONE)
      continue;
    transfer* t = nullptr;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &t);
    finish(t->id, msg->data.result, false);
  }
}

void upstream_loop::apply(command& cmd) {
  if (cmd.what == command::kind::cancel) {
    if (transfers_.count(cmd.id) > 0)
      finish(cmd.id, CURLE_ABORTED_BY_CALLBACK, true);
    return;
  }
  auto t = std::make_unique<transfer>();
  t->id = cmd.id;
  t->spec = std::move(*cmd.spec);
  t->easy = curl_easy_init();
  for (const auto& h : t->spec.headers)
    t->headers = curl_slist_append(t->headers, h.c_str());
  // No "Expect: 100-continue" round trip before the body.
  t->headers = curl_slist_append(t->headers, "Expect:");
  CURL* e = t->easy;
  curl_easy_setopt(e, CURLOPT_URL, t->spec.url.c_str());
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);
  if (!t->spec.body.empty()) {
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, t->spec.body.data());
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(t->spec.body.size()));
  }
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, t.get());
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, t.get());
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->error);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  // Over TLS, libcurl 7.88 keeps the upload buffer it sent the request from (64 KB, a page
  // or two of it written) until the transfer ends, and streams wait long for their answer.
  // The progress callback tells when the request is out, so the buffer can go then.
  if (!t->spec.body.empty() && uses_tls(t->spec)) {
    t->holds_upload_buffer = true;
    curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, curl_events::on_progress);
    curl_easy_setopt(e, CURLOPT_XFERINFODATA, t.get());
  }
  // curl's receive buffer (16 KB by default) is most of what a transfer costs in memory,
  // and thousands of streams are open at once: a stream's events are a few hundred bytes
  // each (1 KB is curl's least), a whole answer of a chat call a few KB. Not over HTTP/2:
  // there Debian's libcurl 7.88 stalls a transfer when more arrives at once than its buffer
  // holds (the end of the answer is never delivered), so a transfer that may speak HTTP/2
  // keeps curl's default, which holds a whole DATA frame.
  const bool http2 = may_speak_http2(t->spec);
  if (!http2)
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, t->spec.stream ? 1024L : 2048L);
  curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  if (t->spec.http == config::http_version::http1_1) {
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1);
  } else {
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_2TLS);
    // A burst of calls waits for the connection being opened and, if TLS chose HTTP/2,
    // shares it instead of opening one each; curl opens another when the upstream's stream
    // limit is reached. Not on http://: a burst would wait for the first answer.
    if (http2)
      curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
  }
  if (!t->spec.tls_ca.empty())
    curl_easy_setopt(e, CURLOPT_CAINFO, t->spec.tls_ca.c_str());
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(t->spec.connect_timeout.count()));
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(t->spec.total_timeout.count()));
  // Loopback never goes through a proxy; other hosts follow the environment's proxy settings.
  curl_easy_setopt(e, CURLOPT_NOPROXY, "localhost,127.0.0.1,::1");
  curl_easy_setopt(e, CURLOPT_PRIVATE, t.get());
  // curl keeps its own copies of these (the body, which it does not copy, stays).
  std::vector<std::string>().swap(t->spec.headers);
  std::string().swap(t->spec.url);
  std::string().swap(t->spec.tls_ca);
  curl_multi_add_handle(multi_, e);
  t->started = clock::now();
  t->last_data = t->started;
  t->loop = this;
  if (t->spec.first_byte_timeout.count() > 0)
    queue_deadline(*t, t->started + t->spec.first_byte_timeout);
  else if (t->spec.idle_timeout.count() > 0)
    queue_deadline(*t, t->started + t->spec.idle_timeout);
  if (http2) {
    t->nudge_after = nudge_before_answer;
    queue_nudge(*t, t->started + t->nudge_after);
  }
  transfers_.emplace(t->id, std::move(t));
}

void upstream_loop::finish(uint64_t id, int curl_code, bool cancelled, const char* why) {
  auto node = transfers_.extract(id);
  if (node.empty())
    return;
  auto& t = node.mapped();
  unqueue(deadlines_, &transfer::deadline, *t);
  unqueue(nudges_, &transfer::nudge, *t);
  curl_multi_remove_handle(multi_, t->easy);
  long status = 0;
  curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
  t->result.http_status = status;
  t->result.curl_code = curl_code;
  t->result.cancelled = cancelled;
  if (why)
    t->result.error = why;
  else if (curl_code != CURLE_OK)
    t->result.error = t->error[0] ? t->error : curl_easy_strerror(static_cast<CURLcode>(curl_code));
  --active_;
  if (t->spec.on_done)
    t->spec.on_done(t->id, std::move(t->result));
}

void upstream_loop::release_upload_buffers() {
  for (auto id : requests_sent_) {
    auto it = transfers_.find(id);
    if (it == transfers_.end())
      continue; // ended meanwhile
    CURL* e = it->second->easy;
    // libcurl 7.88 frees its upload buffer when this option is set (setopt.c), and nothing
    // is pending in it once the whole body counts as sent. A transfer that sends again (curl's
    // retry on a fresh connection) allocates a new one. No more progress calls are needed.
    curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, 16L * 1024);
    curl_easy_setopt(e, CURLOPT_NOPROGRESS, 1L);
  }
  requests_sent_.clear();
}

void upstream_loop::queue_at(deadline_queue& queue, deadline_slot transfer::*slot, transfer& t,
                             clock::time_point due) {
  unqueue(queue, slot, t);
  (t.*slot).at = queue.emplace(due, t.id);
  (t.*slot).queued = true;
}

void upstream_loop::unqueue(deadline_queue& queue, deadline_slot transfer::*slot, transfer& t) {
  if (!std::exchange((t.*slot).queued, false))
    return;
  queue.erase((t.*slot).at);
}

void upstream_loop::queue_deadline(transfer& t, clock::time_point due) {
  queue_at(deadlines_, &transfer::deadline, t, due);
}

void upstream_loop::queue_nudge(transfer& t, clock::time_point due) {
  queue_at(nudges_, &transfer::nudge, t, due);
}

template <class Visit>
upstream_loop::clock::duration upstream_loop::visit_due(deadline_queue& queue,
                                                        deadline_slot transfer::*slot,
                                                        clock::duration longest, Visit visit) {
  auto now = clock::now();
  while (!queue.empty() && queue.begin()->first <= now) {
    auto it = transfers_.find(queue.begin()->second);
    if (it == transfers_.end()) { // cannot be: an ending transfer takes its entries out
      queue.erase(queue.begin());
      continue;
    }
    unqueue(queue, slot, *it->second);
    visit(*it->second, now);
  }
  if (queue.empty())
    return longest;
  return std::min(longest, queue.begin()->first - now);
}

upstream_loop::clock::duration upstream_loop::expire_silent(clock::duration longest) {
  return visit_due(
      deadlines_, &transfer::deadline, longest, [this](transfer& t, clock::time_point now) {
        if (!t.got_bytes) {
          if (t.spec.first_byte_timeout.count() > 0)
            finish(t.id, CURLE_OPERATION_TIMEDOUT, false, "no first token within the timeout");
          else
            queue_deadline(t, now + t.spec.idle_timeout); // the idle limit alone: wait on
          return;
        }
        // The answer has begun: from now on only silence within a stream counts.
        if (!t.spec.stream || t.spec.idle_timeout.count() <= 0)
          return;
        auto next = t.last_data + t.spec.idle_timeout;
        if (next <= now)
          finish(t.id, CURLE_OPERATION_TIMEDOUT, false,
                 "no data from the upstream within the idle timeout");
        else
          queue_deadline(t, next);
      });
}

upstream_loop::clock::duration upstream_loop::nudge_silent(clock::duration longest) {
  return visit_due(nudges_, &transfer::nudge, longest, [this](transfer& t, clock::time_point now) {
    if (now - t.last_data < t.nudge_after) {
      queue_nudge(t, t.last_data + t.nudge_after); // not silent for long: look again then
      return;
    }
    // Over a shared HTTP/2 connection libcurl 7.88 can lose track of a transfer: seen here,
    // a buffered answer that had come whole while other answers and streams shared the
    // connection, but whose transfer never ended; reported upstream, the end of a request
    // body left in nghttp2's output once curl stops watching the socket for writing
    // (curl/curl#11330, fixed in 8.1). Either waits for the total timeout. Changing the
    // transfer's pause state sends the connection's pending frames (http2.c,
    // http2_data_pause) and has curl run the transfer at once as if its socket were readable
    // and writable, which ends one whose answer is complete; pausing its sending and resuming
    // it straight away changes nothing else. Before the transfer has a connection it is
    // refused and does nothing.
    if (curl_easy_pause(t.easy, CURLPAUSE_SEND) == CURLE_OK) {
      curl_easy_pause(t.easy, CURLPAUSE_CONT);
      gateway_metrics::global().upstream_nudges.at().add();
      spdlog::debug(
          "upstream call {} silent for {} ms over HTTP/2: nudged", t.id,
          std::chrono::duration_cast<std::chrono::milliseconds>(now - t.last_data).count());
    }
    t.nudge_after = std::min(t.nudge_after * 2, longest_nudge_interval);
    queue_nudge(t, now + t.nudge_after);
  });
}

void upstream_loop::dispatch(const epoll_event* events, int ready) {
  int running = 0;
  for (int i = 0; i < ready; ++i) {
    const auto& ev = events[i];
    // An error or hang-up is handed over as readable: curl's read then reports it.
    int what = (ev.events & (EPOLLIN | EPOLLERR | EPOLLHUP) ? CURL_CSELECT_IN : 0) |
               (ev.events & EPOLLOUT ? CURL_CSELECT_OUT : 0);
    curl_multi_socket_action(multi_, ev.data.fd, what, &running);
  }
  long due_ms = -1;
  curl_multi_timeout(multi_, &due_ms);
  if (due_ms == 0)
    curl_multi_socket_action(multi_, CURL_SOCKET_TIMEOUT, 0, &running);
}

upstream_loop::clock::duration upstream_loop::next_wait() {
  auto wait = nudge_silent(expire_silent(std::chrono::seconds(1)));
  long curl_ms = -1; // curl rounds down, and says 1 for less than a millisecond
  curl_multi_timeout(multi_, &curl_ms);
  if (curl_ms >= 0)
    wait = std::min<clock::duration>(wait, std::chrono::milliseconds(curl_ms));
  return wait;
}

} // namespace tollgate
