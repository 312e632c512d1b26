#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace tollgate {

using label_values = std::vector<std::string>;

/// A counter or gauge series: one atomic, safe to bump from any thread.
struct metric_value {
  std::atomic<int64_t> value{0};

  void add(int64_t n = 1) { value.fetch_add(n, std::memory_order_relaxed); }
  void set(int64_t n) { value.store(n, std::memory_order_relaxed); }
};

/// Latencies in seconds (or sizes), with fixed bucket bounds.
struct histogram_value {
  explicit histogram_value(std::size_t buckets)
      : counts(buckets) {}

  std::vector<std::atomic<uint64_t>> counts; ///< Per bucket, not cumulative.
  std::atomic<uint64_t> count{0};
  std::atomic<int64_t> sum_micros{0}; ///< Sum in millionths of the unit.
};

/// A metric family with a fixed list of label names. Series are created on first use and
/// live as long as the registry: hold on to the returned reference on hot paths.
class metric_family {
public:
  enum class kind { counter, gauge, histogram };

  metric_family(std::string name, std::string help, kind k, std::vector<std::string> labels,
                std::vector<double> bounds = {});

  metric_value& at(const label_values& labels = {});
  histogram_value& histogram_at(const label_values& labels = {});
  /// Records one observation (in seconds for latencies).
  void observe(double value, const label_values& labels = {});

  void render(std::string& out) const;

private:
  std::string name_;
  std::string help_;
  kind kind_;
  std::vector<std::string> labels_;
  std::vector<double> bounds_;
  mutable std::mutex mtx_;
  std::map<label_values, std::unique_ptr<metric_value>> values_;
  std::map<label_values, std::unique_ptr<histogram_value>> histograms_;
  /// The series without labels, once made: observed per call or per change, found without
  /// the lock and the map.
  std::atomic<histogram_value*> unlabeled_{nullptr};
};

/// The gateway's metrics, declared in one list and exported in Prometheus text format.
struct gateway_metrics {
  gateway_metrics();

  metric_family requests;        ///< tollgate_requests_total{endpoint,code}
  metric_family errors;          ///< tollgate_errors_total{type}
  metric_family tokens;          ///< tollgate_tokens_total{model,kind}
  metric_family credits_charged; ///< tollgate_credits_charged_micro_total{model}
  metric_family duration;        ///< tollgate_request_duration_seconds{endpoint}
  metric_family ttft;            ///< tollgate_time_to_first_token_seconds{model}
  metric_family overhead;        ///< tollgate_overhead_seconds
  metric_family in_flight;       ///< tollgate_upstream_calls_in_flight
  metric_family curl_buffers;    ///< tollgate_upstream_buffer_bytes
  metric_family upstream_nudges; ///< tollgate_upstream_http2_nudges_total
  metric_family breaker_state;   ///< tollgate_breaker_state{deployment}
  metric_family retries;         ///< tollgate_upstream_retries_total{deployment}
  metric_family rate_limited;    ///< tollgate_rate_limited_total{scope}
  metric_family ledger_batch;    ///< tollgate_ledger_batch_size
  metric_family ledger_commit;   ///< tollgate_ledger_commit_seconds
  metric_family ledger_wait;     ///< tollgate_ledger_wait_seconds
  metric_family actors;          ///< tollgate_actors{kind}
  metric_family hibernated;      ///< tollgate_hibernated{kind}
  metric_family activations;     ///< tollgate_activations_total{kind,from}
  metric_family allocator;       ///< tollgate_allocator_bytes{state}, set when scraped

  /// Runs `refresh` before each render, for figures read when scraped rather than kept up
  /// to date (the allocator's).
  void on_scrape(std::function<void()> refresh);

  /// All families as Prometheus text, then the process's figures (process_*).
  std::string render();

  static gateway_metrics& global();

private:
  std::mutex scrape_mtx_;
  std::vector<std::function<void()>> refreshers_;
};

} // namespace tollgate
