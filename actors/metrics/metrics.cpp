#include "actors/metrics/metrics.hpp"

#include "actors/metrics/process_metrics.hpp"

#include <cmath>
#include <cstdio>

namespace tollgate {

namespace {

const std::vector<double> latency_bounds{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                         0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5,
                                         5,      10,      30,     60,    120,    300};
const std::vector<double> size_bounds{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};

std::string escape(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"')
      out.push_back('\\');
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out.push_back(c);
  }
  return out;
}

std::string format_double(double v) {
  if (std::isinf(v))
    return "+Inf";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

std::string label_text(const std::vector<std::string>& names, const label_values& values,
                       const std::string& extra = {}) {
  std::string out;
  for (std::size_t i = 0; i < names.size() && i < values.size(); ++i)
    out += (out.empty() ? "" : ",") + names[i] + "=\"" + escape(values[i]) + "\"";
  if (!extra.empty())
    out += (out.empty() ? "" : ",") + extra;
  return out.empty() ? out : "{" + out + "}";
}

} // namespace

metric_family::metric_family(std::string name, std::string help, kind k,
                             std::vector<std::string> labels, std::vector<double> bounds)
    : name_(std::move(name))
    , help_(std::move(help))
    , kind_(k)
    , labels_(std::move(labels))
    , bounds_(std::move(bounds)) {}

metric_value& metric_family::at(const label_values& labels) {
  std::lock_guard<std::mutex> guard(mtx_);
  auto& slot = values_[labels];
  if (!slot)
    slot = std::make_unique<metric_value>();
  return *slot;
}

histogram_value& metric_family::histogram_at(const label_values& labels) {
  if (labels.empty())
    if (auto* h = unlabeled_.load(std::memory_order_acquire))
      return *h;
  std::lock_guard<std::mutex> guard(mtx_);
  auto& slot = histograms_[labels];
  if (!slot)
    slot = std::make_unique<histogram_value>(bounds_.size() + 1);
  if (labels.empty())
    unlabeled_.store(slot.get(), std::memory_order_release);
  return *slot;
}

void metric_family::observe(double value, const label_values& labels) {
  auto& h = histogram_at(labels);
  std::size_t i = 0;
  while (i < bounds_.size() && value > bounds_[i])
    ++i;
  h.counts[i].fetch_add(1, std::memory_order_relaxed);
  h.count.fetch_add(1, std::memory_order_relaxed);
  h.sum_micros.fetch_add(static_cast<int64_t>(std::llround(value * 1e6)),
                         std::memory_order_relaxed);
}

void metric_family::render(std::string& out) const {
  static const char* type_names[] = {"counter", "gauge", "histogram"};
  out += "# HELP " + name_ + " " + help_ + "\n";
  out += "# TYPE " + name_ + " " + type_names[static_cast<int>(kind_)] + "\n";
  std::lock_guard<std::mutex> guard(mtx_);
  if (kind_ != kind::histogram) {
    for (const auto& [labels, v] : values_)
      out += name_ + label_text(labels_, labels) + " " +
             std::to_string(v->value.load(std::memory_order_relaxed)) + "\n";
    return;
  }
  for (const auto& [labels, h] : histograms_) {
    uint64_t cumulative = 0;
    for (std::size_t i = 0; i <= bounds_.size(); ++i) {
      cumulative += h->counts[i].load(std::memory_order_relaxed);
      auto le = i < bounds_.size() ? format_double(bounds_[i]) : std::string("+Inf");
      out += name_ + "_bucket" + label_text(labels_, labels, "le=\"" + le + "\"") + " " +
             std::to_string(cumulative) + "\n";
    }
    out += name_ + "_sum" + label_text(labels_, labels) + " " +
           format_double(static_cast<double>(h->sum_micros.load()) / 1e6) + "\n";
    out += name_ + "_count" + label_text(labels_, labels) + " " + std::to_string(h->count.load()) +
           "\n";
  }
}

gateway_metrics::gateway_metrics()
    : requests("tollgate_requests_total", "HTTP requests answered, by endpoint and status code.",
               metric_family::kind::counter, {"endpoint", "code"})
    , errors("tollgate_errors_total", "Error answers, by OpenAI error type.",
             metric_family::kind::counter, {"type"})
    , tokens("tollgate_tokens_total", "Tokens metered, by model and kind (prompt, completion).",
             metric_family::kind::counter, {"model", "kind"})
    , credits_charged("tollgate_credits_charged_micro_total",
                      "Micro-credits charged to users, by model.", metric_family::kind::counter,
                      {"model"})
    , duration("tollgate_request_duration_seconds", "Time from request to last byte, by endpoint.",
               metric_family::kind::histogram, {"endpoint"}, latency_bounds)
    , ttft("tollgate_time_to_first_token_seconds",
           "Time from request to the first token, by model.", metric_family::kind::histogram,
           {"model"}, latency_bounds)
    , overhead("tollgate_overhead_seconds",
               "Time a call spent in tollgate itself: total minus the upstream's time.",
               metric_family::kind::histogram, {}, latency_bounds)
    , in_flight("tollgate_upstream_calls_in_flight", "Upstream calls in flight.",
                metric_family::kind::gauge, {})
    , curl_buffers("tollgate_upstream_buffer_bytes",
                   "Bytes of libcurl's large buffers allocated now: a receive buffer per "
                   "HTTP/2 transfer, an upload buffer per request over TLS until it is sent, "
                   "an input buffer per HTTP/2 connection.",
                   metric_family::kind::gauge, {})
    , upstream_nudges(
          "tollgate_upstream_http2_nudges_total",
          "Nudges of upstream calls over HTTP/2 silent for 1 s before their answer began "
          "or 250 ms after (then for doubling times, up to 16 s): libcurl 7.88 can lose "
          "track of a call on a shared connection.",
          metric_family::kind::counter, {})
    , breaker_state("tollgate_breaker_state",
                    "Circuit breaker per deployment: 0 closed, 1 half-open, 2 open.",
                    metric_family::kind::gauge, {"deployment"})
    , retries("tollgate_upstream_retries_total", "Upstream attempts beyond the first.",
              metric_family::kind::counter, {"deployment"})
    , rate_limited("tollgate_rate_limited_total", "Calls refused by a rate window, by scope.",
                   metric_family::kind::counter, {"scope"})
    , ledger_batch("tollgate_ledger_batch_size", "Balance changes per ledger commit.",
                   metric_family::kind::histogram, {}, size_bounds)
    , ledger_commit("tollgate_ledger_commit_seconds", "Duration of one ledger commit.",
                    metric_family::kind::histogram, {}, latency_bounds)
    , ledger_wait("tollgate_ledger_wait_seconds",
                  "Time a balance change waited for its commit to begin (the commit before "
                  "it was still running).",
                  metric_family::kind::histogram, {}, latency_bounds)
    , actors("tollgate_actors", "Live user and key actors on this node.",
             metric_family::kind::gauge, {"kind"})
    , hibernated("tollgate_hibernated",
                 "Idle users and keys kept as records on this node, their actors ended.",
                 metric_family::kind::gauge, {"kind"})
    , activations("tollgate_activations_total",
                  "User and key actors started, by where their state came from: storage, or "
                  "the record they left when they hibernated.",
                  metric_family::kind::counter, {"kind", "from"})
    , allocator("tollgate_allocator_bytes",
                "The memory allocator's bytes, read when scraped (jemalloc builds): allocated "
                "to the gateway, in active pages, resident, mapped, its own metadata, and "
                "retained (address space kept, not resident).",
                metric_family::kind::gauge, {"state"}) {}

void gateway_metrics::on_scrape(std::function<void()> refresh) {
  std::lock_guard<std::mutex> guard(scrape_mtx_);
  refreshers_.push_back(std::move(refresh));
}

std::string gateway_metrics::render() {
  {
    std::lock_guard<std::mutex> guard(scrape_mtx_);
    for (const auto& refresh : refreshers_)
      refresh();
  }
  std::string out;
  for (const auto* f :
       {&requests,      &errors,   &tokens,       &credits_charged, &duration,
        &ttft,          &overhead, &in_flight,    &curl_buffers,    &upstream_nudges,
        &breaker_state, &retries,  &rate_limited, &ledger_batch,    &ledger_commit,
        &ledger_wait,   &actors,   &hibernated,   &activations,     &allocator})
    f->render(out);
  render_process_metrics(sample_this_process(), out);
  return out;
}

gateway_metrics& gateway_metrics::global() {
  static gateway_metrics instance;
  return instance;
}

} // namespace tollgate
