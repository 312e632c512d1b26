// tollgate_loadgen: the load generator of scripts/bench.sh (a tool, not a test).
//
//   tollgate_loadgen rate    --url URL --rate R --duration S [--warmup S] [--connections N]
//   tollgate_loadgen burst   --url URL --concurrency C [--connect-parallel P]
//   tollgate_loadgen keys    --url URL --count N --key-seed HEX40 [--start S] [--connections C]
//   tollgate_loadgen keys-db --db PATH --count N --key-seed HEX40
//
// Request options (rate, burst, keys): --header 'Name: value' (repeatable), --body TEXT
// (POST when given, else GET), --stream (the answer is server-sent events: it must end with
// `data: [DONE]`), --timeout S (per request, default 30), --max-errors N (stop sending once N
// calls failed: a wedged server ends the run instead of timing out every call),
// --quickack (diagnostic: ACK every read at once, so a server that writes small pieces
// without TCP_NODELAY is not held up by Nagle's algorithm waiting for delayed ACKs).
//
// rate is open loop: request i is due at start + i/R whatever happened before it, and its
// latency is measured from that due time, not from when it could be written. A server that
// stalls is charged for the queue it causes (no coordinated omission), as in wrk2. Requests
// go over keep-alive connections; when none is free a new one is opened (up to
// --max-connections), and meanwhile due requests wait in a queue, their clock running.
//
// burst opens C connections first (at most P connecting at once), then writes one request on
// each as fast as it can and waits for every answer: C calls in flight at once, if the server
// lets them. It reports the peak of calls in flight (written, not yet answered).
//
// keys is closed loop over C connections: GET URL with `Authorization: Bearer` key i for
// i in [S, S+N), key i = "tg-live-" + HEX40 + 8 hex digits of i. keys-db inserts keys 0..N-1,
// one user (and zero-balance account) each, straight into a migrated tollgate SQLite
// database: what activating a million keys needs without a million admin calls.
//
// Results go to stdout as `name=value` lines (times in microseconds), for the shell:
// requests, ok, errors, errors_<kind>, latency_{p50,p90,p99,p999,max,mean}_us, and for
// --stream ttft_* (first byte of the body), gap_* (between content events) and tail_*
// (last content event to [DONE]). A one-line summary goes to stderr. With --curve FILE, the
// whole distribution of the latencies goes to FILE as `percentile microseconds` lines, at
// percentiles spaced evenly on a log scale of 1 / (1 - p), up to the largest.

#include <openssl/evp.h>
#include <sqlite3.h>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <deque>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace {

using ns_t = std::int64_t;

ns_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<ns_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// ---------------------------------------------------------------------------------------
// Options

struct options {
  std::string mode;
  std::string url;
  double rate = 1000;
  double duration = 10;
  double warmup = 0;
  std::size_t connections = 32;
  std::size_t max_connections = 2048;
  std::size_t concurrency = 1000;
  std::size_t connect_parallel = 256;
  std::uint64_t count = 0;
  std::uint64_t start = 0;
  std::string key_seed;
  std::string db;
  std::vector<std::string> headers;
  std::string body;
  bool has_body = false;
  bool stream = false;
  bool quickack = false;
  double timeout = 30;
  std::uint64_t max_errors = 0; // 0: no limit
  std::string curve;            // file for the latency distribution; empty: none
};

[[noreturn]] void usage_error(const std::string& message) {
  std::cerr << "tollgate_loadgen: " << message
            << "\nusage: tollgate_loadgen rate|burst|keys|keys-db [options] "
               "(see the comment at the top of tests/support/loadgen.cpp)\n";
  std::exit(2);
}

options parse_options(int argc, char** argv) {
  if (argc < 2)
    usage_error("a mode is required");
  options o;
  o.mode = argv[1];
  if (o.mode != "rate" && o.mode != "burst" && o.mode != "keys" && o.mode != "keys-db")
    usage_error("unknown mode " + o.mode);
  for (int i = 2; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "--stream") {
      o.stream = true;
      continue;
    }
    if (flag == "--quickack") {
      o.quickack = true;
      continue;
    }
    if (i + 1 >= argc)
      usage_error(flag + " needs a value (or is unknown)");
    std::string value = argv[++i];
    try {
      if (flag == "--url")
        o.url = value;
      else if (flag == "--rate")
        o.rate = std::stod(value);
      else if (flag == "--duration")
        o.duration = std::stod(value);
      else if (flag == "--warmup")
        o.warmup = std::stod(value);
      else if (flag == "--connections")
        o.connections = std::stoul(value);
      else if (flag == "--max-connections")
        o.max_connections = std::stoul(value);
      else if (flag == "--concurrency")
        o.concurrency = std::stoul(value);
      else if (flag == "--connect-parallel")
        o.connect_parallel = std::stoul(value);
      else if (flag == "--count")
        o.count = std::stoull(value);
      else if (flag == "--start")
        o.start = std::stoull(value);
      else if (flag == "--key-seed")
        o.key_seed = value;
      else if (flag == "--db")
        o.db = value;
      else if (flag == "--header")
        o.headers.push_back(value);
      else if (flag == "--body") {
        o.body = value;
        o.has_body = true;
      } else if (flag == "--timeout")
        o.timeout = std::stod(value);
      else if (flag == "--max-errors")
        o.max_errors = std::stoull(value);
      else if (flag == "--curve")
        o.curve = value;
      else
        usage_error("unknown option " + flag);
    } catch (const std::logic_error&) {
      usage_error("bad value for " + flag + ": " + value);
    }
  }
  if (o.mode != "keys-db" && o.url.empty())
    usage_error("--url is required");
  if ((o.mode == "keys" || o.mode == "keys-db") &&
      (o.key_seed.size() != 40 ||
       o.key_seed.find_first_not_of("0123456789abcdef") != std::string::npos))
    usage_error("--key-seed must be 40 lowercase hex digits");
  if (o.mode == "keys-db" && o.db.empty())
    usage_error("--db is required");
  if (o.rate <= 0 || o.duration <= 0 || o.connections == 0 || o.concurrency == 0 ||
      o.connect_parallel == 0 || o.timeout <= 0)
    usage_error("rates, durations and counts must be positive");
  o.max_connections = std::max(o.max_connections, o.connections);
  return o;
}

// ---------------------------------------------------------------------------------------
// Keys

std::string hex8(std::uint64_t i) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%08" PRIx64, i & 0xffffffffu);
  return buf;
}

std::string scale_key(const std::string& seed, std::uint64_t i) {
  return "tg-live-" + seed + hex8(i);
}

std::string sha256_hex(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  if (EVP_Digest(data.data(), data.size(), digest, &size, EVP_sha256(), nullptr) != 1)
    throw std::runtime_error("SHA-256 failed");
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(size * 2);
  for (unsigned i = 0; i < size; ++i) {
    out.push_back(digits[digest[i] >> 4]);
    out.push_back(digits[digest[i] & 0x0f]);
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Statistics

struct samples {
  std::vector<ns_t> values;

  void add(ns_t value) { values.push_back(value); }

  void print(const std::string& name) {
    std::sort(values.begin(), values.end());
    auto at = [&](double p) -> double {
      if (values.empty())
        return 0;
      auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(values.size())));
      return static_cast<double>(values[std::min(values.size() - 1, rank == 0 ? 0 : rank - 1)]) /
             1000.0;
    };
    double sum = 0;
    for (auto v : values)
      sum += static_cast<double>(v);
    double mean = values.empty() ? 0 : sum / static_cast<double>(values.size()) / 1000.0;
    std::printf("%s_count=%zu\n", name.c_str(), values.size());
    std::printf("%s_p50_us=%.1f\n%s_p90_us=%.1f\n%s_p99_us=%.1f\n%s_p999_us=%.1f\n", name.c_str(),
                at(50), name.c_str(), at(90), name.c_str(), at(99), name.c_str(), at(99.9));
    std::printf("%s_max_us=%.1f\n%s_mean_us=%.1f\n", name.c_str(),
                values.empty() ? 0.0 : static_cast<double>(values.back()) / 1000.0, name.c_str(),
                mean);
  }

  /// The distribution, once print has sorted the values: four points per halving of the
  /// share above (0, 15.9, 29.3, 40.5, 50, 57.9, ... %) while that share holds at least one
  /// sample, then the largest at 100 %.
  void write_curve(const std::string& path) const {
    std::FILE* out = std::fopen(path.c_str(), "w");
    if (out == nullptr)
      throw std::runtime_error("cannot write " + path + ": " + std::strerror(errno));
    std::fprintf(out, "# percentile latency_us (%zu samples)\n", values.size());
    const auto n = static_cast<double>(values.size());
    for (int step = 0; !values.empty(); ++step) {
      double above = std::pow(0.5, step / 4.0); // share of the samples above this point
      if (above * n < 1)
        break;
      auto rank = static_cast<std::size_t>(std::ceil((1 - above) * n));
      std::fprintf(out, "%.4f %.1f\n", 100 * (1 - above),
                   static_cast<double>(values[rank == 0 ? 0 : rank - 1]) / 1000.0);
    }
    if (!values.empty())
      std::fprintf(out, "100 %.1f\n", static_cast<double>(values.back()) / 1000.0);
    std::fclose(out);
  }
};

// ---------------------------------------------------------------------------------------
// HTTP/1.1 response parser: head, then a Content-Length, chunked or read-until-close body.

class response_parser {
public:
  enum class state { head, length, until_close, chunk_size, chunk_data, chunk_end, trailer, done };

  void reset() {
    state_ = state::head;
    head_.clear();
    line_.clear();
    status_ = 0;
    close_ = false;
    remaining_ = 0;
  }

  /// Feeds bytes; decoded body bytes go to `body`. Returns false on a protocol error.
  template <typename Body>
  bool feed(const char* data, std::size_t size, Body&& body) {
    std::size_t i = 0;
    while (i < size && state_ != state::done) {
      switch (state_) {
      case state::head: {
        std::size_t from = head_.size() >= 3 ? head_.size() - 3 : 0;
        head_.append(data + i, size - i);
        auto end = head_.find("\r\n\r\n", from);
        if (end == std::string::npos) {
          if (head_.size() > 65536)
            return false;
          i = size;
          break;
        }
        std::size_t consumed = end + 4 - (head_.size() - (size - i));
        i += consumed;
        head_.resize(end + 2);
        if (!parse_head())
          return false;
        break;
      }
      case state::length: {
        auto n = static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, size - i));
        body(data + i, n);
        i += n;
        remaining_ -= n;
        if (remaining_ == 0)
          state_ = state::done;
        break;
      }
      case state::until_close:
        body(data + i, size - i);
        i = size;
        break;
      case state::chunk_size:
      case state::chunk_end:
      case state::trailer: {
        char c = data[i++];
        line_.push_back(c);
        if (line_.size() > 1024)
          return false;
        if (line_.size() < 2 || line_[line_.size() - 2] != '\r' || c != '\n')
          break;
        line_.resize(line_.size() - 2);
        if (state_ == state::chunk_end) {
          if (!line_.empty())
            return false;
          state_ = state::chunk_size;
        } else if (state_ == state::trailer) {
          if (line_.empty())
            state_ = state::done;
        } else {
          char* end = nullptr;
          errno = 0;
          unsigned long long n = std::strtoull(line_.c_str(), &end, 16);
          if (end == line_.c_str() || errno != 0)
            return false;
          remaining_ = n;
          state_ = n == 0 ? state::trailer : state::chunk_data;
        }
        line_.clear();
        break;
      }
      case state::chunk_data: {
        auto n = static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, size - i));
        body(data + i, n);
        i += n;
        remaining_ -= n;
        if (remaining_ == 0)
          state_ = state::chunk_end;
        break;
      }
      case state::done:
        break;
      }
    }
    return true;
  }

  /// The peer closed the connection: ends a read-until-close body.
  bool finish_on_close() {
    if (state_ == state::until_close) {
      state_ = state::done;
      return true;
    }
    return false;
  }

  bool done() const { return state_ == state::done; }
  bool started() const { return state_ != state::head || !head_.empty(); }
  int status() const { return status_; }
  bool close() const { return close_; }

private:
  static bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
             return std::tolower(static_cast<unsigned char>(x)) ==
                    std::tolower(static_cast<unsigned char>(y));
           });
  }

  static bool icontains(std::string_view haystack, std::string_view needle) {
    if (needle.size() > haystack.size())
      return false;
    for (std::size_t i = 0; i + needle.size() <= haystack.size(); ++i)
      if (iequals(haystack.substr(i, needle.size()), needle))
        return true;
    return false;
  }

  bool parse_head() {
    std::string_view head{head_};
    auto eol = head.find("\r\n");
    auto status_line = head.substr(0, eol);
    if (!status_line.starts_with("HTTP/1.") || status_line.size() < 12)
      return false;
    status_ = std::atoi(std::string(status_line.substr(9, 3)).c_str());
    bool http10 = status_line.starts_with("HTTP/1.0");
    bool chunked = false;
    bool keep_alive = false;
    std::int64_t length = -1;
    std::size_t pos = eol + 2;
    while (pos < head.size()) {
      auto end = head.find("\r\n", pos);
      auto line = head.substr(pos, end - pos);
      pos = end + 2;
      auto colon = line.find(':');
      if (colon == std::string_view::npos)
        continue;
      auto name = line.substr(0, colon);
      auto value = line.substr(colon + 1);
      while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
        value.remove_prefix(1);
      if (iequals(name, "content-length"))
        length = std::atoll(std::string(value).c_str());
      else if (iequals(name, "transfer-encoding") && icontains(value, "chunked"))
        chunked = true;
      else if (iequals(name, "connection")) {
        if (icontains(value, "close"))
          close_ = true;
        if (icontains(value, "keep-alive"))
          keep_alive = true;
      }
    }
    if (http10 && !keep_alive)
      close_ = true;
    if (status_ == 204 || status_ == 304 || (status_ >= 100 && status_ < 200))
      state_ = state::done;
    else if (chunked)
      state_ = state::chunk_size;
    else if (length >= 0) {
      remaining_ = static_cast<std::uint64_t>(length);
      state_ = length == 0 ? state::done : state::length;
    } else {
      close_ = true;
      state_ = state::until_close;
    }
    return true;
  }

  state state_ = state::head;
  std::string head_;
  std::string line_;
  int status_ = 0;
  bool close_ = false;
  std::uint64_t remaining_ = 0;
};

// ---------------------------------------------------------------------------------------
// The client: non-blocking keep-alive connections on one epoll loop.

struct target {
  sockaddr_storage address{};
  socklen_t address_size = 0;
  std::string host_header;
  std::string path;
};

target resolve(const std::string& url) {
  std::string_view rest{url};
  if (!rest.starts_with("http://"))
    usage_error("only http:// URLs are supported: " + url);
  rest.remove_prefix(7);
  auto slash = rest.find('/');
  std::string authority{rest.substr(0, slash)};
  target t;
  t.path = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  t.host_header = authority;
  std::string host = authority;
  std::string port = "80";
  if (!authority.empty() && authority.front() == '[') {
    auto close = authority.find(']');
    host = authority.substr(1, close - 1);
    if (close + 1 < authority.size() && authority[close + 1] == ':')
      port = authority.substr(close + 2);
  } else if (auto colon = authority.rfind(':'); colon != std::string::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &found); rc != 0 || !found)
    usage_error("cannot resolve " + host + ": " + gai_strerror(rc));
  std::memcpy(&t.address, found->ai_addr, found->ai_addrlen);
  t.address_size = found->ai_addrlen;
  freeaddrinfo(found);
  return t;
}

struct connection {
  enum class phase { connecting, idle, busy, closed };

  int fd = -1;
  phase ph = phase::closed;
  std::string out;
  std::size_t out_off = 0;
  response_parser parser;
  // The request in flight.
  ns_t due = 0;
  ns_t deadline = 0;
  ns_t first_body = -1;
  ns_t last_event = -1;
  ns_t done_event = -1;
  bool record = true;
  std::string event; // the start of the SSE event being read
  bool prev_newline = false;
  std::vector<ns_t> gaps;
};

class client {
public:
  std::function<void(std::size_t)> on_ready;  // a connection is free for a request
  std::function<void(std::size_t)> on_closed; // a connection went away

  samples latency, ttft, gap, tail;
  std::uint64_t ok = 0;
  std::uint64_t errors = 0;
  std::map<std::string, std::uint64_t> error_kinds;
  std::uint64_t in_flight = 0;
  std::uint64_t peak_in_flight = 0;
  std::size_t open = 0;
  std::size_t connecting = 0;

  client(const options& opts, target t)
      : opts_(opts)
      , target_(std::move(t)) {
    epoll_ = epoll_create1(EPOLL_CLOEXEC);
    if (epoll_ < 0)
      throw std::runtime_error(std::string("epoll_create1: ") + std::strerror(errno));
    std::string head;
    head += "Host: " + target_.host_header + "\r\n";
    for (const auto& h : opts_.headers)
      head += h + "\r\n";
    if (opts_.has_body) {
      head += "Content-Length: " + std::to_string(opts_.body.size()) + "\r\n";
      bool typed = false;
      for (const auto& h : opts_.headers)
        if (h.size() > 13 && strncasecmp(h.c_str(), "content-type:", 13) == 0)
          typed = true;
      if (!typed)
        head += "Content-Type: application/json\r\n";
    }
    fixed_headers_ = head;
  }

  ~client() {
    for (auto& c : conns_)
      if (c.fd >= 0)
        ::close(c.fd);
    ::close(epoll_);
  }

  const target& where() const { return target_; }

  /// The request bytes, with an extra header line (e.g. a per-request Authorization).
  std::string request_bytes(const std::string& extra_header = {}) const {
    std::string r = (opts_.has_body ? "POST " : "GET ") + target_.path + " HTTP/1.1\r\n";
    r += fixed_headers_;
    if (!extra_header.empty())
      r += extra_header + "\r\n";
    r += "\r\n";
    if (opts_.has_body)
      r += opts_.body;
    return r;
  }

  /// Starts a connection; on_ready(slot) follows once it is established.
  void open_connection() {
    int fd = ::socket(target_.address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      error("socket");
      return;
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&target_.address),
                       target_.address_size);
    if (rc < 0 && errno != EINPROGRESS) {
      ::close(fd);
      error("connect");
      return;
    }
    std::size_t slot;
    if (!free_slots_.empty()) {
      slot = free_slots_.back();
      free_slots_.pop_back();
    } else {
      slot = conns_.size();
      conns_.emplace_back();
    }
    auto& c = conns_[slot];
    c = connection{};
    c.fd = fd;
    c.ph = connection::phase::connecting;
    c.deadline = now_ns() + static_cast<ns_t>(opts_.timeout * 1e9);
    ++open;
    ++connecting;
    epoll_event ev{};
    ev.events = EPOLLOUT;
    ev.data.u64 = slot;
    ::epoll_ctl(epoll_, EPOLL_CTL_ADD, fd, &ev);
  }

  /// Writes a request on an idle connection. Latency counts from `due`.
  void send(std::size_t slot, std::string bytes, ns_t due, bool record) {
    auto& c = conns_[slot];
    c.ph = connection::phase::busy;
    c.out = std::move(bytes);
    c.out_off = 0;
    c.parser.reset();
    c.due = due;
    c.deadline = now_ns() + static_cast<ns_t>(opts_.timeout * 1e9);
    c.first_body = c.last_event = c.done_event = -1;
    c.record = record;
    c.event.clear();
    c.prev_newline = false;
    c.gaps.clear();
    ++in_flight;
    peak_in_flight = std::max(peak_in_flight, in_flight);
    flush(slot);
  }

  /// Closes an idle connection for good (no on_closed).
  void retire(std::size_t slot) { drop(slot, false); }

  /// Waits for I/O until `until` (or 50 ms, whichever is first) and handles it.
  void poll(ns_t until) {
    ns_t wait = std::clamp<ns_t>(until - now_ns(), 0, 50'000'000);
    timespec ts{static_cast<time_t>(wait / 1'000'000'000), static_cast<long>(wait % 1'000'000'000)};
    epoll_event events[256];
    int n = ::epoll_pwait2(epoll_, events, 256, &ts, nullptr);
    if (n < 0 && errno == ENOSYS)
      n = ::epoll_wait(epoll_, events, 256, static_cast<int>((wait + 999'999) / 1'000'000));
    for (int i = 0; i < n; ++i)
      handle(static_cast<std::size_t>(events[i].data.u64), events[i].events);
    ns_t now = now_ns();
    if (now - last_sweep_ > 100'000'000) {
      last_sweep_ = now;
      for (std::size_t slot = 0; slot < conns_.size(); ++slot) {
        auto& c = conns_[slot];
        if ((c.ph == connection::phase::busy || c.ph == connection::phase::connecting) &&
            c.deadline > 0 && now > c.deadline) {
          if (c.ph == connection::phase::busy)
            fail(slot, "timeout");
          else {
            error("connect_timeout");
            drop(slot, true);
          }
        }
      }
    }
  }

  void error(const std::string& kind) {
    ++errors;
    ++error_kinds[kind];
  }

private:
  void handle(std::size_t slot, std::uint32_t events) {
    auto& c = conns_[slot];
    if (c.ph == connection::phase::closed)
      return;
    if (c.ph == connection::phase::connecting) {
      int err = 0;
      socklen_t len = sizeof err;
      ::getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0 || (events & (EPOLLERR | EPOLLHUP))) {
        error("connect");
        drop(slot, true);
        return;
      }
      --connecting;
      c.ph = connection::phase::idle;
      c.deadline = 0;
      watch(slot, false);
      on_ready(slot);
      return;
    }
    if (events & EPOLLOUT)
      flush(slot);
    if (c.ph != connection::phase::closed && (events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
      read(slot);
  }

  void watch(std::size_t slot, bool writable) {
    epoll_event ev{};
    ev.events = EPOLLIN | (writable ? EPOLLOUT : 0u);
    ev.data.u64 = slot;
    ::epoll_ctl(epoll_, EPOLL_CTL_MOD, conns_[slot].fd, &ev);
  }

  void flush(std::size_t slot) {
    auto& c = conns_[slot];
    while (c.out_off < c.out.size()) {
      ssize_t n = ::send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
      if (n > 0) {
        c.out_off += static_cast<std::size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        watch(slot, true);
        return;
      }
      fail(slot, "write");
      return;
    }
    watch(slot, false);
  }

  void read(std::size_t slot) {
    char buf[65536];
    for (;;) {
      auto& c = conns_[slot];
      ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
      if (n > 0 && opts_.quickack) {
        int one = 1;
        ::setsockopt(c.fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
      }
      if (n > 0) {
        if (c.ph != connection::phase::busy) {
          // Bytes nobody asked for: the connection is unusable.
          error("unexpected_data");
          drop(slot, true);
          return;
        }
        ns_t now = now_ns();
        bool good = c.parser.feed(buf, static_cast<std::size_t>(n),
                                  [&](const char* p, std::size_t size) { body(c, p, size, now); });
        if (!good) {
          fail(slot, "bad_response");
          return;
        }
        if (c.parser.done()) {
          complete(slot, now);
          if (conns_[slot].ph != connection::phase::idle)
            return;
        }
        continue;
      }
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
      // EOF or error.
      if (c.ph == connection::phase::busy) {
        if (n == 0 && c.parser.finish_on_close()) {
          complete(slot, now_ns());
          if (conns_[slot].ph == connection::phase::idle)
            drop(slot, true);
        } else {
          fail(slot, n == 0 ? (c.parser.started() ? "eof_mid_response" : "eof") : "reset");
        }
      } else {
        drop(slot, true); // the server closed an idle keep-alive connection
      }
      return;
    }
  }

  void body(connection& c, const char* p, std::size_t size, ns_t now) {
    if (size == 0)
      return;
    if (c.first_body < 0)
      c.first_body = now;
    if (!opts_.stream)
      return;
    for (std::size_t i = 0; i < size; ++i) {
      char ch = p[i];
      if (ch == '\r')
        continue;
      if (ch == '\n' && c.prev_newline) {
        // An event ended.
        if (c.event.starts_with("data: [DONE]") || c.event.starts_with("data:[DONE]")) {
          c.done_event = now;
        } else if (!c.event.empty()) {
          if (c.last_event >= 0)
            c.gaps.push_back(now - c.last_event);
          c.last_event = now;
        }
        c.event.clear();
        c.prev_newline = false;
        continue;
      }
      c.prev_newline = ch == '\n';
      if (c.event.size() < 16)
        c.event.push_back(ch);
    }
  }

  void complete(std::size_t slot, ns_t now) {
    auto& c = conns_[slot];
    --in_flight;
    bool good = c.parser.status() >= 200 && c.parser.status() < 300;
    if (!good) {
      error("status_" + std::to_string(c.parser.status()));
    } else if (opts_.stream && (c.done_event < 0 || c.last_event < 0)) {
      error("stream_without_done");
    } else {
      ++ok;
      if (c.record) {
        latency.add(now - c.due);
        if (c.first_body >= 0)
          ttft.add(c.first_body - c.due);
        for (auto g : c.gaps)
          gap.add(g);
        if (opts_.stream)
          tail.add(c.done_event - c.last_event);
      }
    }
    c.deadline = 0;
    if (c.parser.close()) {
      drop(slot, true);
      return;
    }
    c.ph = connection::phase::idle;
    on_ready(slot);
  }

  void fail(std::size_t slot, const std::string& kind) {
    auto& c = conns_[slot];
    if (c.ph == connection::phase::busy)
      --in_flight;
    error(kind);
    drop(slot, true);
  }

  void drop(std::size_t slot, bool notify) {
    auto& c = conns_[slot];
    if (c.ph == connection::phase::closed)
      return;
    if (c.ph == connection::phase::connecting)
      --connecting;
    // A busy connection's request was accounted for by the caller (fail or complete).
    ::epoll_ctl(epoll_, EPOLL_CTL_DEL, c.fd, nullptr);
    ::close(c.fd);
    c.fd = -1;
    c.ph = connection::phase::closed;
    c.out.clear();
    c.out.shrink_to_fit();
    --open;
    free_slots_.push_back(slot);
    if (notify && on_closed)
      on_closed(slot);
  }

  const options& opts_;
  target target_;
  int epoll_ = -1;
  std::string fixed_headers_;
  std::deque<connection> conns_; // a deque: references survive growth
  std::vector<std::size_t> free_slots_;
  ns_t last_sweep_ = 0;
};

void print_common(client& c, double seconds) {
  std::uint64_t requests = c.ok + c.errors;
  std::printf("requests=%" PRIu64 "\nok=%" PRIu64 "\nerrors=%" PRIu64 "\n", requests, c.ok,
              c.errors);
  for (const auto& [kind, n] : c.error_kinds)
    std::printf("errors_%s=%" PRIu64 "\n", kind.c_str(), n);
  std::printf("seconds=%.3f\nthroughput=%.1f\npeak_in_flight=%" PRIu64 "\n", seconds,
              seconds > 0 ? static_cast<double>(c.ok) / seconds : 0.0, c.peak_in_flight);
}

void print_samples(client& c, bool stream, const std::string& curve = {}) {
  c.latency.print("latency");
  if (!curve.empty())
    c.latency.write_curve(curve);
  if (stream) {
    c.ttft.print("ttft");
    c.gap.print("gap");
    c.tail.print("tail");
  }
}

std::string error_summary(const client& c) {
  std::string s;
  for (const auto& [kind, n] : c.error_kinds)
    s += " " + kind + "=" + std::to_string(n);
  return s;
}

// ---------------------------------------------------------------------------------------
// Modes

int run_rate(const options& o) {
  client cl{o, resolve(o.url)};
  const std::string request = cl.request_bytes();
  std::deque<ns_t> due_queue;
  std::vector<std::size_t> idle;
  ns_t start = 0;
  ns_t record_from = 0;

  cl.on_ready = [&](std::size_t slot) {
    if (!due_queue.empty() && start > 0) {
      ns_t due = due_queue.front();
      due_queue.pop_front();
      cl.send(slot, request, due, due >= record_from);
    } else {
      idle.push_back(slot);
    }
  };
  cl.on_closed = [&](std::size_t slot) { std::erase(idle, slot); };

  // Open the initial connections before the clock starts.
  for (std::size_t i = 0; i < o.connections; ++i)
    cl.open_connection();
  ns_t setup_deadline = now_ns() + 10'000'000'000;
  while (cl.connecting > 0 && now_ns() < setup_deadline)
    cl.poll(now_ns() + 10'000'000);
  if (idle.empty()) {
    std::fprintf(stderr, "tollgate_loadgen: could not connect to %s\n", o.url.c_str());
    print_common(cl, 0);
    return 1;
  }

  const double interval = 1e9 / o.rate;
  const auto total = static_cast<std::uint64_t>(std::llround((o.warmup + o.duration) * o.rate));
  start = now_ns();
  record_from = start + static_cast<ns_t>(o.warmup * 1e9);
  std::uint64_t next = 0;
  auto due_of = [&](std::uint64_t i) { return start + static_cast<ns_t>(static_cast<double>(i) * interval); };

  while (next < total || !due_queue.empty() || cl.in_flight > 0) {
    ns_t now = now_ns();
    if (o.max_errors > 0 && cl.errors >= o.max_errors && next < total) {
      std::fprintf(stderr, "tollgate_loadgen: %" PRIu64 " errors, giving up\n", cl.errors);
      cl.error("aborted");
      next = total;
      due_queue.clear();
    }
    while (next < total && due_of(next) <= now)
      due_queue.push_back(due_of(next++));
    while (!due_queue.empty() && !idle.empty()) {
      std::size_t slot = idle.back();
      idle.pop_back();
      ns_t due = due_queue.front();
      due_queue.pop_front();
      cl.send(slot, request, due, due >= record_from);
    }
    // Queue left over: open connections, one per waiting request, up to the cap.
    while (due_queue.size() > cl.connecting && cl.open < o.max_connections)
      cl.open_connection();
    if (next >= total && cl.open == cl.connecting && !due_queue.empty()) {
      // Every connection failed and none can be made: give up on what waits.
      for (std::size_t i = 0; i < due_queue.size(); ++i)
        cl.error("no_connection");
      due_queue.clear();
    }
    if (next >= total && now - due_of(total) > static_cast<ns_t>(o.timeout * 1e9) + 1'000'000'000)
      break; // the sweep has timed everything out by now
    cl.poll(next < total ? due_of(next) : now + 50'000'000);
  }
  double seconds = static_cast<double>(now_ns() - record_from) / 1e9;
  print_common(cl, o.warmup + o.duration);
  std::printf("rate_target=%.1f\n", o.rate);
  print_samples(cl, o.stream, o.curve);
  std::fprintf(stderr,
               "rate %.0f/s for %.0fs: %" PRIu64 " ok, %" PRIu64 " errors%s; p50 %.0f us "
               "(%.1fs incl. drain)\n",
               o.rate, o.duration, cl.ok, cl.errors, error_summary(cl).c_str(),
               cl.latency.values.empty() ? 0.0 : static_cast<double>(cl.latency.values[cl.latency.values.size() / 2]) / 1000.0,
               seconds);
  return 0;
}

int run_burst(const options& o) {
  client cl{o, resolve(o.url)};
  const std::string request = cl.request_bytes();
  std::vector<std::size_t> ready;
  bool sending = false;
  std::size_t started = 0;

  cl.on_ready = [&](std::size_t slot) {
    if (!sending)
      ready.push_back(slot);
    else
      cl.retire(slot); // its one call is answered
  };
  cl.on_closed = [&](std::size_t) {};

  // Phase 1: connect C sockets, at most P at a time.
  ns_t t0 = now_ns();
  std::size_t attempted = 0;
  ns_t connect_deadline = t0 + static_cast<ns_t>(o.timeout * 1e9);
  while ((attempted < o.concurrency || cl.connecting > 0) && now_ns() < connect_deadline) {
    while (attempted < o.concurrency && cl.connecting < o.connect_parallel) {
      cl.open_connection();
      ++attempted;
    }
    cl.poll(now_ns() + 5'000'000);
  }
  double connect_seconds = static_cast<double>(now_ns() - t0) / 1e9;
  std::size_t connected = ready.size();

  // Phase 2: one request on each, as fast as the loop writes them.
  sending = true;
  ns_t t1 = now_ns();
  for (auto slot : ready) {
    cl.send(slot, request, now_ns(), true);
    ++started;
  }
  ready.clear();
  double send_seconds = static_cast<double>(now_ns() - t1) / 1e9;
  ns_t end_deadline = now_ns() + static_cast<ns_t>(o.timeout * 1e9) + 1'000'000'000;
  while (cl.in_flight > 0 && now_ns() < end_deadline)
    cl.poll(now_ns() + 50'000'000);
  double seconds = static_cast<double>(now_ns() - t1) / 1e9;

  print_common(cl, seconds);
  std::printf("concurrency=%zu\nconnected=%zu\nstarted=%zu\nconnect_seconds=%.3f\n"
              "send_seconds=%.3f\n",
              o.concurrency, connected, started, connect_seconds, send_seconds);
  print_samples(cl, o.stream);
  std::fprintf(stderr,
               "burst of %zu: %zu connected in %.2fs, peak in flight %" PRIu64 ", %" PRIu64
               " ok, %" PRIu64 " errors%s, all answered in %.2fs\n",
               o.concurrency, connected, connect_seconds, cl.peak_in_flight, cl.ok, cl.errors,
               error_summary(cl).c_str(), seconds);
  return 0;
}

int run_keys(const options& o) {
  client cl{o, resolve(o.url)};
  std::uint64_t next = 0;
  auto send_next = [&](std::size_t slot) {
    if (next >= o.count || (o.max_errors > 0 && cl.errors >= o.max_errors)) {
      cl.retire(slot);
      return;
    }
    auto key = scale_key(o.key_seed, o.start + next++);
    cl.send(slot, cl.request_bytes("Authorization: Bearer " + key), now_ns(), true);
  };
  cl.on_ready = send_next;
  std::uint64_t reconnects = 0;
  cl.on_closed = [&](std::size_t) {
    if (next < o.count && reconnects++ < o.count &&
        (o.max_errors == 0 || cl.errors < o.max_errors))
      cl.open_connection();
  };
  ns_t t0 = now_ns();
  for (std::size_t i = 0; i < o.connections; ++i)
    cl.open_connection();
  while ((next < o.count || cl.in_flight > 0) && cl.open > 0)
    cl.poll(now_ns() + 50'000'000);
  double seconds = static_cast<double>(now_ns() - t0) / 1e9;
  if (next < o.count)
    cl.error("not_sent");
  print_common(cl, seconds);
  std::printf("sent=%" PRIu64 "\n", next);
  print_samples(cl, false);
  std::fprintf(stderr, "keys: %" PRIu64 " ok, %" PRIu64 " errors%s in %.1fs (%.0f/s)\n", cl.ok,
               cl.errors, error_summary(cl).c_str(), seconds,
               static_cast<double>(cl.ok) / seconds);
  return 0;
}

void check(int rc, sqlite3* db, const char* what) {
  if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW)
    throw std::runtime_error(std::string(what) + ": " + sqlite3_errmsg(db));
}

int run_keys_db(const options& o) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(o.db.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK)
    throw std::runtime_error("cannot open " + o.db + ": " + sqlite3_errmsg(db));
  sqlite3_busy_timeout(db, 10000);
  check(sqlite3_exec(db, "PRAGMA synchronous=OFF; BEGIN IMMEDIATE", nullptr, nullptr, nullptr), db,
        "begin");
  sqlite3_stmt* users = nullptr;
  sqlite3_stmt* accounts = nullptr;
  sqlite3_stmt* keys = nullptr;
  check(sqlite3_prepare_v2(db,
                           "INSERT INTO users (id, name, email, suspended, rpm, tpm, rpd, "
                           "created_at, updated_at) VALUES (?1, ?2, ?3, 0, 0, 0, 0, ?4, ?4)",
                           -1, &users, nullptr),
        db, "prepare users");
  check(sqlite3_prepare_v2(
            db, "INSERT INTO accounts (user_id, balance, updated_at) VALUES (?1, 0, ?2)", -1,
            &accounts, nullptr),
        db, "prepare accounts");
  check(sqlite3_prepare_v2(db,
                           "INSERT INTO api_keys (id, user_id, name, environment, prefix, "
                           "key_hash, rpm, tpm, rpd, models, allowed_ips, expires_at, "
                           "revoked_at, created_at) VALUES (?1, ?2, 'scale', 'live', ?3, ?4, 0, "
                           "0, 0, '[]', '[]', 0, 0, ?5)",
                           -1, &keys, nullptr),
        db, "prepare keys");
  const auto now = static_cast<sqlite3_int64>(std::time(nullptr));
  const std::string tag = o.key_seed.substr(0, 16);
  const std::string prefix = "tg-live-" + o.key_seed.substr(0, 6);
  ns_t t0 = now_ns();
  for (std::uint64_t i = 0; i < o.count; ++i) {
    auto suffix = hex8(i);
    auto user_id = "usr_" + tag + suffix;
    auto key_id = "key_" + tag + suffix;
    auto name = "scale " + suffix;
    auto email = "scale-" + tag + "-" + suffix + "@bench.invalid";
    auto hash = sha256_hex(scale_key(o.key_seed, i));
    sqlite3_bind_text(users, 1, user_id.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(users, 2, name.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(users, 3, email.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(users, 4, now);
    check(sqlite3_step(users), db, "insert user");
    sqlite3_reset(users);
    sqlite3_bind_text(accounts, 1, user_id.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(accounts, 2, now);
    check(sqlite3_step(accounts), db, "insert account");
    sqlite3_reset(accounts);
    sqlite3_bind_text(keys, 1, key_id.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(keys, 2, user_id.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(keys, 3, prefix.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(keys, 4, hash.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(keys, 5, now);
    check(sqlite3_step(keys), db, "insert key");
    sqlite3_reset(keys);
  }
  sqlite3_finalize(users);
  sqlite3_finalize(accounts);
  sqlite3_finalize(keys);
  check(sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr), db, "commit");
  check(sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", nullptr, nullptr, nullptr), db,
        "checkpoint");
  sqlite3_close(db);
  double seconds = static_cast<double>(now_ns() - t0) / 1e9;
  std::printf("inserted=%" PRIu64 "\nseconds=%.3f\n", o.count, seconds);
  std::fprintf(stderr, "keys-db: %" PRIu64 " users and keys inserted in %.1fs\n", o.count,
               seconds);
  return 0;
}

void raise_descriptor_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &limit);
  }
}

} // namespace

int main(int argc, char** argv) {
  auto opts = parse_options(argc, argv);
  raise_descriptor_limit();
  ::prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL); // wake on time for the schedule
  try {
    if (opts.mode == "rate")
      return run_rate(opts);
    if (opts.mode == "burst")
      return run_burst(opts);
    if (opts.mode == "keys")
      return run_keys(opts);
    return run_keys_db(opts);
  } catch (const std::exception& error) {
    std::cerr << "tollgate_loadgen: " << error.what() << std::endl;
    return 1;
  }
}
