#include "actors/provider/upstream_loop.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <string_view>
#include <utility>

#include <curl/curl.h>

#include "actors/thread_name.hpp"

namespace tollgate {

struct upstream_loop::transfer {
  uint64_t id = 0;
  CURL* easy = nullptr;
  curl_slist* headers = nullptr;
  transfer_spec spec;
  transfer_result result;
  char error[CURL_ERROR_SIZE] = {0};
  std::chrono::steady_clock::time_point started;
  std::chrono::steady_clock::time_point last_data; ///< Of the latest piece of the answer.
  bool got_bytes = false;
  /// The deadline queued for this transfer; others of it still in the queue are stale.
  std::chrono::steady_clock::time_point due;
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
  if (t->spec.idle_timeout.count() > 0)
    t->last_data = std::chrono::steady_clock::now();
  if (!std::exchange(t->got_bytes, true) && t->spec.stream && t->spec.idle_timeout.count() > 0)
    t->loop->queue_deadline(*t, t->last_data + t->spec.idle_timeout); // now silence counts
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

/// Keeps the one response header the gateway acts on: Retry-After (in seconds).
size_t on_header(char* ptr, size_t size, size_t count, void* user) {
  auto* t = static_cast<upstream_loop::transfer*>(user);
  std::string_view line(ptr, size * count);
  constexpr std::string_view name = "retry-after:";
  if (line.size() > name.size()) {
    bool match = true;
    for (std::size_t i = 0; i < name.size() && match; ++i)
      match = std::tolower(static_cast<unsigned char>(line[i])) == name[i];
    if (match) {
      int64_t seconds = 0;
      auto value = line.substr(name.size());
      while (!value.empty() && value.front() == ' ')
        value.remove_prefix(1);
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
      if (ec == std::errc() && end != value.data() && seconds > 0)
        t->result.retry_after_ms = seconds * 1000;
    }
  }
  return size * count;
}

/// HTTP/2 where TLS may negotiate it.
bool may_speak_http2(const transfer_spec& spec) {
  constexpr std::string_view tls = "https://";
  return spec.http == config::http_version::automatic && spec.url.size() >= tls.size() &&
         std::equal(tls.begin(), tls.end(), spec.url.begin(), [](char a, char b) {
           return a == std::tolower(static_cast<unsigned char>(b));
         });
}

} // namespace

upstream_loop::upstream_loop(long max_host_connections) {
  static curl_global global;
  multi_ = curl_multi_init();
  // Reuse connections across calls; multiplex HTTP/2 streams where the upstream offers it.
  curl_multi_setopt(multi_, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
  curl_multi_setopt(multi_, CURLMOPT_MAXCONNECTS, 1024L);
  if (max_host_connections > 0)
    curl_multi_setopt(multi_, CURLMOPT_MAX_HOST_CONNECTIONS, max_host_connections);
  thread_ = std::thread([this] { run(); });
}

upstream_loop::~upstream_loop() {
  stopping_ = true;
  curl_multi_wakeup(multi_);
  thread_.join();
  for (auto& [id, t] : transfers_)
    curl_multi_remove_handle(multi_, t->easy);
  transfers_.clear();
  curl_multi_cleanup(multi_);
}

uint64_t upstream_loop::start(transfer_spec spec) {
  auto id = next_id_++;
  {
    std::lock_guard<std::mutex> guard(mtx_);
    commands_.push_back(
        {command::kind::start, id, std::make_unique<transfer_spec>(std::move(spec))});
  }
  ++active_;
  curl_multi_wakeup(multi_);
  return id;
}

void upstream_loop::cancel(uint64_t id) {
  {
    std::lock_guard<std::mutex> guard(mtx_);
    commands_.push_back({command::kind::cancel, id, nullptr});
  }
  curl_multi_wakeup(multi_);
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
  t->loop = this;
  if (t->spec.first_byte_timeout.count() > 0)
    queue_deadline(*t, t->started + t->spec.first_byte_timeout);
  else if (t->spec.idle_timeout.count() > 0)
    queue_deadline(*t, t->started + t->spec.idle_timeout);
  transfers_.emplace(t->id, std::move(t));
}

void upstream_loop::finish(uint64_t id, int curl_code, bool cancelled, const char* why) {
  auto node = transfers_.extract(id);
  if (node.empty())
    return;
  auto& t = node.mapped();
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

void upstream_loop::queue_deadline(transfer& t, clock::time_point due) {
  t.due = due;
  deadlines_.push({due, t.id});
}

upstream_loop::clock::duration upstream_loop::expire_silent(clock::duration longest) {
  auto now = clock::now();
  while (!deadlines_.empty() && deadlines_.top().due <= now) {
    auto [due, id] = deadlines_.top();
    deadlines_.pop();
    auto it = transfers_.find(id);
    if (it == transfers_.end())
      continue; // ended meanwhile
    auto& t = *it->second;
    if (t.due != due)
      continue; // a later deadline replaced this one
    if (!t.got_bytes) {
      if (t.spec.first_byte_timeout.count() > 0)
        finish(id, CURLE_OPERATION_TIMEDOUT, false, "no first token within the timeout");
      else
        queue_deadline(t, now + t.spec.idle_timeout); // the idle limit alone: wait on
      continue;
    }
    // The answer has begun: from now on only silence within a stream counts.
    if (!t.spec.stream || t.spec.idle_timeout.count() <= 0)
      continue;
    auto next = t.last_data + t.spec.idle_timeout;
    if (next <= now)
      finish(id, CURLE_OPERATION_TIMEDOUT, false,
             "no data from the upstream within the idle timeout");
    else
      queue_deadline(t, next);
  }
  if (deadlines_.empty())
    return longest;
  return std::min(longest, deadlines_.top().due - now);
}

void upstream_loop::run() {
  name_this_thread("tg-upstream");
  while (!stopping_) {
    std::vector<command> batch;
    {
      std::lock_guard<std::mutex> guard(mtx_);
      batch.swap(commands_);
    }
    for (auto& cmd : batch)
      apply(cmd);
    int running = 0;
    curl_multi_perform(multi_, &running);
    int queued = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi_, &queued)) {
      if (msg->msg != CURLMSG_DONE)
        continue;
      transfer* t = nullptr;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &t);
      finish(t->id, msg->data.result, false);
    }
    auto wait = expire_silent(std::chrono::seconds(1));
    // Rounded up: a deadline 0.3 ms away must not make the loop spin until it is due.
    auto wait_ms = std::chrono::ceil<std::chrono::milliseconds>(wait).count();
    curl_multi_poll(multi_, nullptr, 0, static_cast<int>(wait_ms), nullptr);
  }
}

} // namespace tollgate
