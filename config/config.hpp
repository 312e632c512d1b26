#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace tollgate::config {

/// Where the HTTP front end listens; `host` holds an IPv6 address without its brackets.
struct listen_address {
  std::string host;
  uint16_t port = 8080;
};

/// Which HTTP version calls to a provider use.
enum class http_version {
  /// "auto": HTTP/2 where TLS negotiates it (ALPN), and then the calls in flight share a
  /// connection; HTTP/1.1 otherwise.
  automatic,
  http1_1, ///< "1.1": always HTTP/1.1, a connection per call in flight.
};

/// One upstream provider; `kind` is `echo`, `openai` or `anthropic`.
struct provider_config {
  std::string name;
  std::string kind;
  /// http:// or https:// URL without a trailing slash; empty for `echo`.
  std::string base_url;
  /// Name of the environment variable holding the upstream API key; empty if none.
  std::string api_key_env;
  http_version http = http_version::automatic;
  /// PEM file of the CAs that sign the upstream's certificate; empty: the system's CAs.
  std::string tls_ca;
  /// Connections to the upstream at most; 0: no cap. Calls beyond what they carry (one each
  /// over HTTP/1.1, up to the upstream's stream limit each over HTTP/2) wait for room.
  int64_t max_connections = 0;
};

/// One place a public model is served from: a provider and the model name it knows.
/// How long a call to a deployment may take, in milliseconds.
struct timeouts_config {
  int64_t connect_ms = 10'000;     ///< To connect (TCP and TLS).
  int64_t first_token_ms = 60'000; ///< From the request to the first byte of the answer.
  int64_t idle_ms = 120'000;       ///< Silence between two chunks of a stream.
  int64_t total_ms = 600'000;      ///< The whole call.
};

/// When a deployment's circuit breaker opens, and for how long.
struct breaker_config {
  int64_t failures = 5;              ///< Consecutive failures that open it...
  int64_t failure_rate_percent = 50; ///< ...or this share of failures in the window...
  int64_t min_calls = 10;            ///< ...once the window holds this many calls.
  int64_t window_seconds = 30;
  int64_t cooldown_ms = 5'000; ///< First open period; doubles on each trip.
  int64_t max_cooldown_ms = 300'000;
  int64_t half_open_probes = 2;
};

struct deployment_config {
  std::string provider;
  std::string model;
  uint32_t weight = 1;
  uint32_t priority = 1;
  int64_t max_concurrency = 0; ///< Calls in flight at once; 0: no limit.
  timeouts_config timeouts;
  breaker_config breaker;
};

/// A public model: its routing strategy, deployments and prices.
struct model_config {
  std::string name;
  /// One of `weighted`, `least-busy`, `lowest-latency`, `priority`.
  std::string strategy = "weighted";
  std::vector<deployment_config> deployments;
  /// Micro-credits per million input tokens.
  int64_t input_price = 0;
  /// Micro-credits per million output tokens.
  int64_t output_price = 0;
  /// The most completion tokens one call may produce: what a hold assumes when the caller
  /// sets no max_tokens.
  int64_t max_output_tokens = 4096;
};

/// Per-key request and token limits; an empty optional means unlimited.
struct rate_limits {
  std::optional<int64_t> rpm;
  std::optional<int64_t> tpm;
  std::optional<int64_t> rpd;
};

/// Settings of the RESTinio front end.
struct http_config {
  /// Threads of the front end's own; 0: its sockets are served by the actor workers between
  /// their jobs (no thread crossing between reading a request and its first actor hops).
  unsigned threads = 0;
  std::size_t max_body_bytes = 4 << 20;
  std::chrono::seconds request_timeout{600};
};

/// Settings of the actor system.
/// Retries and fallbacks while no byte has reached the caller.
struct routing_config {
  int64_t max_attempts = 3;          ///< Upstream attempts per call, fallbacks included.
  int64_t retry_budget_percent = 20; ///< Retries in flight, as a share of calls in flight.
  int64_t backoff_ms = 50;           ///< First backoff; doubles, with jitter.
  int64_t max_backoff_ms = 2'000;
  int64_t keepalive_seconds = 15; ///< SSE comment sent after this long without an event.
};

struct actors_config {
  /// Idle users and keys are passivated after this long: the next call loads them from
  /// storage.
  std::chrono::seconds idle{300};
  /// Idle user and key actors end after this long, leaving a record of a few hundred bytes
  /// with the directory, from which the next call starts them again without a storage read
  /// (until `idle` is up). Zero, or not less than `idle`: actors stay until passivated.
  std::chrono::seconds hibernate{30};
  /// Scheduler threads that run the actors; 0: one per core. Actors never block, so more
  /// threads than cores only add thread switches.
  unsigned workers = 0;
};

/// A cluster of nodes sharing one PostgreSQL (see docs and DESIGN "Cluster").
struct cluster_config {
  /// Where this node's middleman listens for the other nodes; unset: a single node.
  std::optional<listen_address> listen;
  /// Middleman addresses of nodes to connect to at start (optional: members are also
  /// learned from the database).
  std::vector<listen_address> seeds;
  /// Unique per node; default: the cluster listen address as host:port.
  std::string node_id;
  /// Users and keys hash to this many shards; every node must use the same number.
  int shards = 256;
  /// A node's membership and shard leases last this long without renewal.
  std::chrono::milliseconds lease{6000};
  /// TLS between nodes when set (PEM files).
  std::string tls_certificate;
  std::string tls_key;
  std::string tls_ca;

  bool enabled() const noexcept { return listen.has_value(); }
};

enum class database_backend { sqlite, postgresql };

/// A database URL taken apart.
struct database_url {
  database_backend backend = database_backend::sqlite;
  /// File path for sqlite (relative to the working directory unless absolute).
  std::string sqlite_path;
  /// For postgresql: the URL as libpq keywords, the form SOCI reads.
  std::string connect;
};

/// A redis:// URL taken apart.
struct redis_url {
  std::string host;
  uint16_t port = 6379;
  int db = 0;
  /// Empty when the URL carries none.
  std::string username;
  /// Empty when the URL carries none.
  std::string password;
};

/// The whole gateway configuration, validated; parsed once and then shared read-only.
struct gateway_config {
  listen_address listen{"127.0.0.1", 8080};
  std::string database = "sqlite://data/tollgate.db";
  std::optional<std::string> redis;
  std::string data_dir = "data";
  /// Only ever set from TOLLGATE_ADMIN_KEY, never from the file.
  std::string admin_key;
  std::string log_level = "info";
  http_config http;
  actors_config actors;
  cluster_config cluster;
  routing_config routing;
  /// Defaults for keys that set no limits of their own.
  rate_limits limits;
  std::vector<provider_config> providers;
  std::vector<model_config> models;
  /// The file loaded; empty for the built-in defaults.
  std::string source;

  /// The model with this public name, or nullptr.
  const model_config* find_model(std::string_view name) const;
  /// The provider with this name, or nullptr.
  const provider_config* find_provider(std::string_view name) const;
};

/// A configuration that cannot be used; the message names the offending key or flag.
class config_error : public std::runtime_error {
public:
  using runtime_error::runtime_error;
};

/// Takes apart `sqlite://PATH`, `postgresql://...` or `postgres://...`; throws config_error.
database_url parse_database_url(std::string_view url);

/// Takes apart `redis://[[user]:password@]host[:port][/db]`; throws config_error.
redis_url parse_redis_url(std::string_view url);

/// Takes apart `host:port` (IPv4 address, `localhost` or `[ipv6]`); throws config_error.
listen_address parse_listen_address(std::string_view text);

/// `host:port`, with brackets around an IPv6 host.
std::string to_string(const listen_address& address);

/// Parses and validates a JSON config (comments allowed); errors name `origin` and the key.
gateway_config parse_config(std::string_view json_text, std::string_view origin);

/// The built-in configuration: provider "local-echo" (kind echo) serving model "echo-1" free.
gateway_config default_config();

/// What the command line asks for, with the configuration it selects.
struct command_line {
  bool help = false;
  bool version = false;
  gateway_config config;
};

/// Loads the config file, then applies TOLLGATE_* variables from `env`, then flags.
command_line load_config(int argc, const char* const* argv,
                         const std::map<std::string, std::string>& env);

/// A snapshot of the TOLLGATE_* variables of the process environment.
std::map<std::string, std::string> environment();

/// The --help text.
std::string usage();

/// The gateway's version, e.g. "0.1.0".
std::string_view version();

} // namespace tollgate::config
