#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "config/config.hpp"

struct epoll_event;

namespace asio {
class io_context;
} // namespace asio

namespace tollgate {

/// How an upstream transfer ended.
struct transfer_result {
  long http_status = 0; ///< 0 when no response arrived.
  int curl_code = 0;    ///< CURLE_OK (0) when the transfer completed.
  std::string error;    ///< curl's message when curl_code != 0.
  std::string body;     ///< The whole body for buffered transfers and for error statuses.
  bool cancelled = false;
  int64_t retry_after_ms = 0; ///< The upstream's Retry-After (seconds form), if it sent one.

  template <class Inspector>
  friend auto inspect(Inspector& f, transfer_result& x) {
    return f(x.http_status, x.curl_code, x.error, x.body, x.cancelled, x.retry_after_ms);
  }
};

/// One HTTP request to an upstream.
struct transfer_spec {
  std::string url;
  std::vector<std::string> headers; ///< "Name: value"
  std::string body;                 ///< POSTed when non-empty, else GET.
  /// Streamed transfers hand each piece of a 2xx body to `on_data` as it arrives; others
  /// collect the body into the result.
  bool stream = false;
  config::http_version http = config::http_version::automatic;
  /// PEM file of the CAs to verify the upstream's certificate with; empty: the system's.
  std::string tls_ca;
  std::chrono::milliseconds connect_timeout{10'000};
  std::chrono::milliseconds total_timeout{600'000};
  /// Ends the transfer (CURLE_OPERATION_TIMEDOUT) if no byte of the answer came by then, or
  /// if a stream falls silent for longer than `idle_timeout` after it began; zero: no limit.
  /// Kept by the loop itself, so a call arms no timer anywhere else.
  std::chrono::milliseconds first_byte_timeout{0};
  std::chrono::milliseconds idle_timeout{0};
  /// Called where the loop turns with the transfer's id; must not block.
  std::function<void(uint64_t, std::string_view)> on_data;
  /// Called once where the loop turns when the transfer ends for any reason.
  std::function<void(uint64_t, transfer_result)> on_done;
};

/// The upstream HTTP client: libcurl's multi interface, so that thousands of concurrent calls
/// share the actor workers and their connections (keep-alive, HTTP/2 over TLS). curl's
/// sockets sit in an epoll set of the loop's own, which waits in an asio io_context as one
/// descriptor; curl is handed only the sockets that are ready (curl_multi_socket_action), so
/// a wake-up does not visit every transfer in flight (libcurl 7.88 itself still walks its
/// whole connection cache as each transfer starts and ends; docs/performance.md).
///
/// The gateway's io_context is run by the actor workers (http/worker_io.hpp): a transfer starts
/// on the worker whose actor asks for it, and its answer is read on the worker that the
/// io_context wakes, where the actors it tells run next. A call crosses no thread to reach its
/// upstream or to hear back. Every curl call is non-blocking (Debian's libcurl resolves names
/// on a thread of its own), so no worker waits on the network.
///
/// One thread at a time turns the loop. Thread-safe: start and cancel from any thread; a
/// thread that finds the loop turned elsewhere queues its command for that turn and returns.
/// The transfers' callbacks run where the loop turns, and may start and cancel transfers of
/// their own loop through a plain pointer: the loop ends only between turns (its destructor
/// waits for the turn), so it lives while a callback runs. A callback must not own the loop:
/// if it held the last reference, the loop would end inside its own turn.
class upstream_loop {
public:
  struct transfer;
  struct curl_events; ///< curl's socket and progress callbacks.
  struct io_driver;   ///< What waits for the loop's sockets and timers in the io_context.

  /// On the threads that run `io`. `max_host_connections`: connections to one host at most
  /// (0: no cap); transfers beyond what they carry wait in curl's queue for a connection or,
  /// over HTTP/2, a stream. The loop may outlive `io`: its transfers stop moving then.
  explicit upstream_loop(asio::io_context& io, long max_host_connections = 0);
  ~upstream_loop();

  /// Another loop, run where this one runs, with a cap of its own.
  std::shared_ptr<upstream_loop> sibling(long max_host_connections) const;

  upstream_loop(const upstream_loop&) = delete;
  upstream_loop& operator=(const upstream_loop&) = delete;

  /// Queues a transfer; returns its id.
  uint64_t start(transfer_spec spec);
  /// Ends a transfer early; its on_done still runs (with `cancelled`).
  void cancel(uint64_t id);
  /// Transfers in flight.
  std::size_t active() const noexcept { return active_.load(); }
  /// Deadlines and nudges queued, taken in the loop's turn (tests: never from a callback).
  std::size_t queued_checks();

  /// When `t` must next have made progress (replacing its earlier deadline). Only where the
  /// loop turns: the transfer's callbacks call it when its answer begins.
  void queue_deadline(transfer& t, std::chrono::steady_clock::time_point due);
  /// When to see next whether `t` has been silent too long (replacing the earlier time).
  /// Only where the loop turns, as queue_deadline.
  void queue_nudge(transfer& t, std::chrono::steady_clock::time_point due);

  /// How long a transfer over HTTP/2 may be silent before it is nudged: before its answer
  /// begins (upstreams often think for seconds), and once it has (an answer's pieces come
  /// close together). After each nudge the time doubles, up to the longest.
  static constexpr std::chrono::milliseconds nudge_before_answer{1000};
  static constexpr std::chrono::milliseconds nudge_in_answer{250};
  static constexpr std::chrono::milliseconds longest_nudge_interval{16'000};

private:
  struct command {
    enum class kind { start, cancel } what;
    uint64_t id;
    std::unique_ptr<transfer_spec> spec;
  };

  using clock = std::chrono::steady_clock;
  /// When each transfer must have made progress (or be nudged), by transfer id: checked again
  /// when due, since data may have come meanwhile (then the next time is queued instead). A
  /// transfer has at most one entry in each queue, taken out when it ends, so the queues hold
  /// only transfers in flight.
  using deadline_queue = std::multimap<clock::time_point, uint64_t>;
  /// A transfer's entry in one of the queues, if it has one.
  struct deadline_slot {
    deadline_queue::iterator at;
    bool queued = false;
  };

  /// Queues a command, and turns the loop unless another thread turns it.
  void submit(command cmd);
  /// One turn of the loop: the queued commands, then the ready sockets of one wait (and
  /// curl's timers if due), then the transfers that ended; again while the transfers'
  /// callbacks queued commands.
  void turn(const epoll_event* events, int ready);
  /// Applies the queued commands; whether there were any.
  bool apply_queued();
  /// Hands curl the ready sockets of one wait, then its timers if due.
  void dispatch(const epoll_event* events, int ready);
  /// Ends the transfers curl reports done.
  void end_finished();
  /// How long the loop may wait: until curl's timer or the next transfer deadline is due.
  clock::duration next_wait();
  void apply(command& cmd);
  void finish(uint64_t id, int curl_code, bool cancelled, const char* why = nullptr);
  /// Frees the upload buffers of the transfers whose request curl has sent whole.
  void release_upload_buffers();
  /// Puts `t` in `queue` at `due`, in place of its entry there (held in `t.*slot`).
  void queue_at(deadline_queue& queue, deadline_slot transfer::*slot, transfer& t,
                clock::time_point due);
  /// Takes `t`'s entry (held in `t.*slot`) out of `queue`, if it has one.
  void unqueue(deadline_queue& queue, deadline_slot transfer::*slot, transfer& t);
  /// Takes the entries of `queue` that are due out of it and hands each transfer to
  /// `visit(transfer&, now)`; the time until the next entry is due (at most `longest`).
  template <class Visit>
  clock::duration visit_due(deadline_queue& queue, deadline_slot transfer::*slot,
                            clock::duration longest, Visit visit);
  /// Times out the transfers that are silent past their deadline; the time until the next
  /// deadline is due (at most `longest`).
  clock::duration expire_silent(clock::duration longest);
  /// Nudges the transfers over HTTP/2 that have been silent for their nudge time, so that
  /// libcurl sends what it holds for them and sees what came for them; the time until the
  /// next nudge may be due (at most `longest`).
  clock::duration nudge_silent(clock::duration longest);

  void* multi_ = nullptr; ///< CURLM*
  int epoll_fd_ = -1;
  std::mutex mtx_;
  std::vector<command> commands_;
  std::atomic<uint64_t> next_id_{1};
  std::atomic<std::size_t> active_{0};
  /// Only where the loop turns.
  std::unordered_map<uint64_t, std::unique_ptr<transfer>> transfers_;
  deadline_queue deadlines_; ///< Same.
  /// When to see whether a transfer over HTTP/2 has fallen silent. Same.
  deadline_queue nudges_;
  std::vector<uint64_t> requests_sent_; ///< Transfers whose upload buffer can go. Same.
  std::shared_ptr<io_driver> driver_;
};

} // namespace tollgate
