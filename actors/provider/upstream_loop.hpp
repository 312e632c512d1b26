#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

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
  std::chrono::milliseconds connect_timeout{10'000};
  std::chrono::milliseconds total_timeout{600'000};
  /// Called on the loop thread with the transfer's id; must not block.
  std::function<void(uint64_t, std::string_view)> on_data;
  /// Called once on the loop thread when the transfer ends for any reason.
  std::function<void(uint64_t, transfer_result)> on_done;
};

/// The upstream HTTP client: libcurl's multi interface driven by one dedicated thread, so
/// that thousands of concurrent calls share a few threads and their connections (keep-alive,
/// HTTP/2 over TLS). Thread-safe: start and cancel from any thread.
class upstream_loop {
public:
  struct transfer;

  upstream_loop();
  ~upstream_loop();

  upstream_loop(const upstream_loop&) = delete;
  upstream_loop& operator=(const upstream_loop&) = delete;

  /// Queues a transfer; returns its id.
  uint64_t start(transfer_spec spec);
  /// Ends a transfer early; its on_done still runs (with `cancelled`).
  void cancel(uint64_t id);
  /// Transfers in flight.
  std::size_t active() const noexcept { return active_.load(); }

private:
  struct command {
    enum class kind { start, cancel } what;
    uint64_t id;
    std::unique_ptr<transfer_spec> spec;
  };

  void run();
  void apply(command& cmd);
  void finish(uint64_t id, int curl_code, bool cancelled);

  void* multi_ = nullptr; ///< CURLM*
  std::thread thread_;
  std::mutex mtx_;
  std::vector<command> commands_;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> next_id_{1};
  std::atomic<std::size_t> active_{0};
  std::unordered_map<uint64_t, std::unique_ptr<transfer>> transfers_; ///< Loop thread only.
};

} // namespace tollgate
