#include "config/config.hpp"
#include "config/postgres_url.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <set>
#include <span>
#include <sstream>
#include <utility>

#include <arpa/inet.h>
#include <nlohmann/json.hpp>

#ifndef TOLLGATE_VERSION
#define TOLLGATE_VERSION "0.0.0"
#endif

extern char** environ;

namespace tollgate::config {
namespace {

using json = nlohmann::json;

constexpr std::string_view default_config_path = "config/tollgate.json";

/// Longest duration accepted, so that later conversion to nanoseconds cannot overflow.
constexpr int64_t max_seconds = 365 * 24 * 3600;

constexpr std::array<std::string_view, 3> provider_kinds{"echo", "openai", "anthropic"};
constexpr std::array<std::string_view, 2> provider_http_versions{"auto", "1.1"};
constexpr std::array<std::string_view, 4> strategies{"weighted", "least-busy", "lowest-latency",
                                                     "priority"};
constexpr std::array<std::string_view, 6> log_levels{"trace", "debug", "info",
                                                     "warn",  "error", "off"};

[[noreturn]] void fail(std::string_view path, std::string_view what) {
  throw config_error(std::string(path) + ": " + std::string(what));
}

/// Runs `parse`, prefixing the message of any config_error it throws with `path`.
template <class F>
auto at_path(std::string_view path, F&& parse) -> decltype(parse()) {
  try {
    return parse();
  } catch (const config_error& e) {
    fail(path, e.what());
  }
}

std::string member_path(std::string_view path, std::string_view key) {
  return path.empty() ? std::string(key) : std::string(path) + "." + std::string(key);
}

std::string element_path(std::string_view path, std::size_t index) {
  return std::string(path) + "[" + std::to_string(index) + "]";
}

/// "in models[0]", or "at top level" for the root object.
std::string where(std::string_view path) {
  return path.empty() ? std::string("at top level") : "in " + std::string(path);
}

std::string in_quotes(std::string_view text) {
  return "\"" + std::string(text) + "\"";
}

template <std::size_t N>
std::string choice_list(const std::array<std::string_view, N>& choices) {
  std::string out;
  for (auto choice : choices)
    out += (out.empty() ? "" : ", ") + in_quotes(choice);
  return out;
}

template <std::size_t N>
bool is_one_of(std::string_view text, const std::array<std::string_view, N>& choices) {
  return std::find(choices.begin(), choices.end(), text) != choices.end();
}

/// Remembers where the parser is, so that a key given twice in one object is reported by path.
class duplicate_key_guard {
public:
  bool on_event(json::parse_event_t event, const json& parsed) {
    switch (event) {
    case json::parse_event_t::object_start:
      frames_.push_back({});
      break;
    case json::parse_event_t::array_start:
      frames_.emplace_back().array = true;
      break;
    case json::parse_event_t::key: {
      auto& top = frames_.back();
      top.key = parsed.get<std::string>();
      if (!top.keys.insert(top.key).second)
        throw config_error("duplicate key " + in_quotes(top.key) + " " + where(enclosing_path()));
      break;
    }
    case json::parse_event_t::object_end:
    case json::parse_event_t::array_end:
      frames_.pop_back();
      next_element();
      break;
    case json::parse_event_t::value:
      next_element();
      break;
    }
    return true;
  }

private:
  struct frame {
    bool array = false;
    std::size_t index = 0;
    std::string key;
    std::set<std::string> keys;
  };

  void next_element() {
    if (!frames_.empty() && frames_.back().array)
      ++frames_.back().index;
  }

  /// Path of the innermost open object or array.
  std::string enclosing_path() const {
    std::string path;
    for (std::size_t i = 0; i + 1 < frames_.size(); ++i)
      path = frames_[i].array ? element_path(path, frames_[i].index)
                              : member_path(path, frames_[i].key);
    return path;
  }

  std::vector<frame> frames_;
};

json parse_json(std::string_view text) {
  duplicate_key_guard guard;
  try {
    return json::parse(
        text,
        [&guard](int, json::parse_event_t event, json& parsed) {
          return guard.on_event(event, parsed);
        },
        true, true);
  } catch (const json::exception& e) {
    throw config_error(std::string("invalid JSON: ") + e.what());
  }
}

/// Fails unless `value` is an object whose keys are all in `allowed`.
void check_keys(const json& value, std::string_view path,
                std::span<const std::string_view> allowed) {
  if (!value.is_object())
    fail(path, "must be an object");
  for (const auto& item : value.items())
    if (std::find(allowed.begin(), allowed.end(), item.key()) == allowed.end())
      throw config_error("unknown key " + in_quotes(item.key()) + " " + where(path));
}

void check_keys(const json& value, std::string_view path,
                std::initializer_list<std::string_view> allowed) {
  check_keys(value, path, std::span<const std::string_view>(allowed.begin(), allowed.size()));
}

const json* member(const json& object, std::string_view key) {
  auto it = object.find(std::string(key));
  return it == object.end() ? nullptr : &*it;
}

const json& required(const json& object, std::string_view path, std::string_view key) {
  if (const auto* value = member(object, key))
    return *value;
  fail(member_path(path, key), "is required");
}

std::string read_string(const json& value, std::string_view path) {
  if (!value.is_string())
    fail(path, "must be a string");
  return value.get<std::string>();
}

std::string read_name(const json& value, std::string_view path) {
  if (!value.is_string() || value.get_ref<const std::string&>().empty())
    fail(path, "must be a non-empty string");
  return value.get<std::string>();
}

template <std::size_t N>
std::string read_choice(const json& value, std::string_view path,
                        const std::array<std::string_view, N>& choices) {
  if (!value.is_string() || !is_one_of(value.get_ref<const std::string&>(), choices))
    fail(path, "must be one of " + choice_list(choices));
  return value.get<std::string>();
}

/// Reads a string and hands it to `parse`, which throws config_error without a path.
template <class F>
auto read_parsed(const json& value, std::string_view path, F&& parse) {
  auto text = read_string(value, path);
  return at_path(path, [&] { return parse(text); });
}

/// The value as int64 if it is a JSON integer that fits; floats and other types give nullopt.
std::optional<int64_t> as_int64(const json& value) {
  if (value.is_number_unsigned()) {
    auto n = value.get<uint64_t>();
    if (n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      return std::nullopt;
    return static_cast<int64_t>(n);
  }
  if (value.is_number_integer())
    return value.get<int64_t>();
  return std::nullopt;
}

int64_t read_integer(const json& value, std::string_view path, int64_t min,
                     int64_t max = std::numeric_limits<int64_t>::max()) {
  auto n = as_int64(value);
  if (n && *n >= min && *n <= max)
    return *n;
  if (max < std::numeric_limits<int64_t>::max())
    fail(path, "must be an integer from " + std::to_string(min) + " to " + std::to_string(max));
  if (min == 0)
    fail(path, "must be a non-negative integer");
  if (min == 1)
    fail(path, "must be a positive integer");
  fail(path, "must be an integer of at least " + std::to_string(min));
}

std::chrono::seconds read_seconds(const json& value, std::string_view path) {
  return std::chrono::seconds{read_integer(value, path, 1, max_seconds)};
}

std::optional<int64_t> read_limit(const json& value, std::string_view path) {
  if (value.is_null())
    return std::nullopt;
  auto n = as_int64(value);
  if (!n || *n < 1)
    fail(path, "must be null or a positive integer");
  return n;
}

std::optional<uint16_t> parse_port(std::string_view text) {
  if (text.empty() || text.size() > 5 ||
      !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  unsigned port = 0;
  std::from_chars(text.data(), text.data() + text.size(), port);
  if (port < 1 || port > 65535)
    return std::nullopt;
  return static_cast<uint16_t>(port);
}

bool is_address(int family, std::string_view text) {
  std::array<unsigned char, 16> buffer{};
  return inet_pton(family, std::string(text).c_str(), buffer.data()) == 1;
}

bool is_env_name(std::string_view text) {
  auto head = [](char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; };
  auto tail = [&](char c) { return head(c) || (c >= '0' && c <= '9'); };
  return !text.empty() && head(text.front()) && std::all_of(text.begin() + 1, text.end(), tail);
}

/// Checks an upstream base URL and drops trailing slashes, so paths can be appended.
std::string normalize_base_url(std::string_view url) {
  auto rest = url.starts_with("https://")  ? url.substr(8)
              : url.starts_with("http://") ? url.substr(7)
                                           : std::string_view{};
  const bool has_space =
      std::any_of(url.begin(), url.end(), [](unsigned char c) { return c <= ' '; });
  if (rest.empty() || rest.front() == '/' || has_space)
    throw config_error("must be an http:// or https:// URL, not " + in_quotes(url));
  while (url.ends_with('/'))
    url.remove_suffix(1);
  return std::string(url);
}

void check_database(std::string_view url) {
  parse_database_url(url);
}

void check_redis(std::string_view url) {
  parse_redis_url(url);
}

std::string check_log_level(std::string_view level) {
  if (!is_one_of(level, log_levels))
    throw config_error("must be one of " + choice_list(log_levels));
  return std::string(level);
}

std::string check_non_empty(std::string_view text) {
  if (text.empty())
    throw config_error("must not be empty");
  return std::string(text);
}

provider_config read_provider(const json& value, std::string_view path) {
  check_keys(
      value, path,
      {"name", "kind", "base_url", "api_key_env", "http_version", "tls_ca", "max_connections"});
  provider_config provider;
  provider.name = read_name(required(value, path, "name"), member_path(path, "name"));
  provider.kind =
      read_choice(required(value, path, "kind"), member_path(path, "kind"), provider_kinds);
  if (provider.kind == "echo") {
    for (std::string_view key :
         {"base_url", "api_key_env", "http_version", "tls_ca", "max_connections"})
      if (member(value, key))
        fail(member_path(path, key), "is not used by kind \"echo\"");
    return provider;
  }
  const auto url_path = member_path(path, "base_url");
  provider.base_url = read_parsed(required(value, path, "base_url"), url_path, normalize_base_url);
  if (const auto* env = member(value, "api_key_env")) {
    const auto env_path = member_path(path, "api_key_env");
    provider.api_key_env = read_string(*env, env_path);
    if (!is_env_name(provider.api_key_env))
      fail(env_path, "must be an environment variable name");
  }
  if (const auto* version = member(value, "http_version"))
    provider.http =
        read_choice(*version, member_path(path, "http_version"), provider_http_versions) == "1.1"
            ? http_version::http1_1
            : http_version::automatic;
  if (const auto* ca = member(value, "tls_ca")) {
    const auto ca_path = member_path(path, "tls_ca");
    provider.tls_ca = read_name(*ca, ca_path);
    if (!std::ifstream(provider.tls_ca))
      fail(ca_path, "cannot read " + in_quotes(provider.tls_ca));
  }
  if (const auto* cap = member(value, "max_connections"))
    provider.max_connections = read_integer(*cap, member_path(path, "max_connections"), 1, 65536);
  return provider;
}

/// One integer field of a settings object, with its bounds.
struct integer_field {
  const char* key;
  int64_t* target;
  int64_t min;
  int64_t max = std::numeric_limits<int64_t>::max();
};

/// Reads a settings object made only of bounded integers; unknown keys are errors.
void read_integer_fields(const json& value, std::string_view path,
                         std::initializer_list<integer_field> fields) {
  std::vector<std::string_view> keys;
  for (const auto& f : fields)
    keys.push_back(f.key);
  check_keys(value, path, std::span<const std::string_view>(keys));
  for (const auto& f : fields)
    if (const auto* v = member(value, f.key))
      *f.target = read_integer(*v, member_path(path, f.key), f.min, f.max);
}

deployment_config read_deployment(const json& value, std::string_view path,
                                  const model_config& model,
                                  const std::vector<provider_config>& providers) {
  check_keys(value, path,
             {"provider", "model", "weight", "priority", "max_concurrency", "timeouts", "breaker"});
  deployment_config deployment;
  const auto provider_path = member_path(path, "provider");
  deployment.provider = read_name(required(value, path, "provider"), provider_path);
  const auto known = std::any_of(providers.begin(), providers.end(), [&](const auto& provider) {
    return provider.name == deployment.provider;
  });
  if (!known)
    fail(provider_path, "unknown provider " + in_quotes(deployment.provider));
  // The upstream model name defaults to the public one.
  deployment.model = model.name;
  if (const auto* upstream = member(value, "model"))
    deployment.model = read_name(*upstream, member_path(path, "model"));
  constexpr int64_t max_u32 = std::numeric_limits<uint32_t>::max();
  if (const auto* weight = member(value, "weight"))
    deployment.weight =
        static_cast<uint32_t>(read_integer(*weight, member_path(path, "weight"), 1, max_u32));
  if (const auto* priority = member(value, "priority"))
    deployment.priority =
        static_cast<uint32_t>(read_integer(*priority, member_path(path, "priority"), 1, max_u32));
  if (const auto* limit = member(value, "max_concurrency"))
    deployment.max_concurrency = read_integer(*limit, member_path(path, "max_concurrency"), 0);
  if (const auto* timeouts = member(value, "timeouts")) {
    auto tpath = member_path(path, "timeouts");
    auto& t = deployment.timeouts;
    read_integer_fields(*timeouts, tpath,
                        {{"connect_ms", &t.connect_ms, 1},
                         {"first_token_ms", &t.first_token_ms, 1},
                         {"idle_ms", &t.idle_ms, 1},
                         {"total_ms", &t.total_ms, 1}});
  }
  if (const auto* breaker = member(value, "breaker")) {
    auto bpath = member_path(path, "breaker");
    auto& b = deployment.breaker;
    read_integer_fields(*breaker, bpath,
                        {{"failures", &b.failures, 1},
                         {"failure_rate_percent", &b.failure_rate_percent, 1, 100},
                         {"min_calls", &b.min_calls, 1},
                         {"window_seconds", &b.window_seconds, 1, 60},
                         {"cooldown_ms", &b.cooldown_ms, 1},
                         {"max_cooldown_ms", &b.max_cooldown_ms, 1},
                         {"half_open_probes", &b.half_open_probes, 1, 100}});
  }
  return deployment;
}

model_config read_model(const json& value, std::string_view path,
                        const std::vector<provider_config>& providers) {
  check_keys(
      value, path,
      {"name", "strategy", "deployments", "input_price", "output_price", "max_output_tokens"});
  model_config model;
  model.name = read_name(required(value, path, "name"), member_path(path, "name"));
  if (const auto* strategy = member(value, "strategy"))
    model.strategy = read_choice(*strategy, member_path(path, "strategy"), strategies);
  const auto deployments_path = member_path(path, "deployments");
  const auto& deployments = required(value, path, "deployments");
  if (!deployments.is_array() || deployments.empty())
    fail(deployments_path, "must be a non-empty array");
  for (std::size_t i = 0; i < deployments.size(); ++i)
    model.deployments.push_back(
        read_deployment(deployments[i], element_path(deployments_path, i), model, providers));
  if (const auto* price = member(value, "input_price"))
    model.input_price = read_integer(*price, member_path(path, "input_price"), 0);
  if (const auto* price = member(value, "output_price"))
    model.output_price = read_integer(*price, member_path(path, "output_price"), 0);
  if (const auto* tokens = member(value, "max_output_tokens"))
    model.max_output_tokens = read_integer(*tokens, member_path(path, "max_output_tokens"), 1);
  return model;
}

/// Reads each element of the array `key` with `read`, rejecting repeated names.
template <class T, class F>
std::vector<T> read_named_list(const json& root, std::string_view key, std::string_view what,
                               F&& read) {
  std::vector<T> out;
  const auto& list = root.at(std::string(key));
  if (!list.is_array())
    fail(key, "must be an array");
  for (std::size_t i = 0; i < list.size(); ++i) {
    const auto path = element_path(key, i);
    auto item = read(list[i], path);
    const auto clash = std::any_of(out.begin(), out.end(),
                                   [&](const T& other) { return other.name == item.name; });
    if (clash)
      fail(member_path(path, "name"),
           "duplicate " + std::string(what) + " " + in_quotes(item.name));
    out.push_back(std::move(item));
  }
  return out;
}

gateway_config read_config(const json& root) {
  if (!root.is_object())
    throw config_error("the top level must be a JSON object");
  if (root.contains("admin_key"))
    fail("admin_key", "is never read from the file; set TOLLGATE_ADMIN_KEY");
  check_keys(root, "",
             {"listen", "database", "redis", "data_dir", "log_level", "http", "actors", "limits",
              "routing", "providers", "models", "cluster"});
  auto config = default_config();
  if (const auto* listen = member(root, "listen"))
    config.listen = read_parsed(*listen, "listen", parse_listen_address);
  if (const auto* database = member(root, "database")) {
    read_parsed(*database, "database", check_database);
    config.database = database->get<std::string>();
  }
  if (const auto* redis = member(root, "redis"); redis && !redis->is_null()) {
    if (!redis->is_string())
      fail("redis", "must be null or a redis:// URL");
    read_parsed(*redis, "redis", check_redis);
    config.redis = redis->get<std::string>();
  }
  if (const auto* data_dir = member(root, "data_dir"))
    config.data_dir = read_name(*data_dir, "data_dir");
  if (const auto* level = member(root, "log_level"))
    config.log_level = read_choice(*level, "log_level", log_levels);
  if (const auto* http = member(root, "http")) {
    check_keys(*http, "http", {"threads", "max_body_bytes", "request_timeout_seconds"});
    if (const auto* threads = member(*http, "threads"))
      config.http.threads = static_cast<unsigned>(read_integer(*threads, "http.threads", 0, 256));
    if (const auto* bytes = member(*http, "max_body_bytes"))
      config.http.max_body_bytes =
          static_cast<std::size_t>(read_integer(*bytes, "http.max_body_bytes", 1024));
    if (const auto* timeout = member(*http, "request_timeout_seconds"))
      config.http.request_timeout = read_seconds(*timeout, "http.request_timeout_seconds");
  }
  if (const auto* actors = member(root, "actors")) {
    check_keys(*actors, "actors", {"idle_seconds", "hibernate_seconds", "workers"});
    if (const auto* idle = member(*actors, "idle_seconds"))
      config.actors.idle = read_seconds(*idle, "actors.idle_seconds");
    if (const auto* hibernate = member(*actors, "hibernate_seconds"))
      config.actors.hibernate = std::chrono::seconds{
          read_integer(*hibernate, "actors.hibernate_seconds", 0, max_seconds)};
    if (const auto* workers = member(*actors, "workers"))
      config.actors.workers =
          static_cast<unsigned>(read_integer(*workers, "actors.workers", 1, 256));
  }
  if (const auto* cluster = member(root, "cluster")) {
    auto& c = config.cluster;
    check_keys(*cluster, "cluster",
               {"listen", "seeds", "node_id", "shards", "lease_seconds", "tls_certificate",
                "tls_key", "tls_ca"});
    if (const auto* listen = member(*cluster, "listen"))
      c.listen = read_parsed(*listen, "cluster.listen", parse_listen_address);
    if (const auto* seeds = member(*cluster, "seeds")) {
      if (!seeds->is_array())
        fail("cluster.seeds", "must be a list of \"host:port\"");
      for (std::size_t i = 0; i < seeds->size(); ++i)
        c.seeds.push_back(read_parsed((*seeds)[i], "cluster.seeds[" + std::to_string(i) + "]",
                                      parse_listen_address));
    }
    if (const auto* id = member(*cluster, "node_id"))
      c.node_id = read_name(*id, "cluster.node_id");
    if (const auto* shards = member(*cluster, "shards"))
      c.shards = static_cast<int>(read_integer(*shards, "cluster.shards", 1, 65536));
    if (const auto* lease = member(*cluster, "lease_seconds"))
      c.lease = read_seconds(*lease, "cluster.lease_seconds");
    for (auto [key, field] : {std::pair{"tls_certificate", &cluster_config::tls_certificate},
                              std::pair{"tls_key", &cluster_config::tls_key},
                              std::pair{"tls_ca", &cluster_config::tls_ca}})
      if (const auto* path = member(*cluster, key))
        c.*field = read_name(*path, member_path("cluster", key));
  }
  if (const auto* routing = member(root, "routing")) {
    auto& r = config.routing;
    read_integer_fields(*routing, "routing",
                        {{"max_attempts", &r.max_attempts, 1, 10},
                         {"retry_budget_percent", &r.retry_budget_percent, 0, 100},
                         {"backoff_ms", &r.backoff_ms, 0},
                         {"max_backoff_ms", &r.max_backoff_ms, 0},
                         {"keepalive_seconds", &r.keepalive_seconds, 1}});
  }
  if (const auto* limits = member(root, "limits")) {
    check_keys(*limits, "limits", {"rpm", "tpm", "rpd"});
    for (auto [key, field] :
         {std::pair{"rpm", &rate_limits::rpm}, std::pair{"tpm", &rate_limits::tpm},
          std::pair{"rpd", &rate_limits::rpd}})
      if (const auto* limit = member(*limits, key))
        config.limits.*field = read_limit(*limit, member_path("limits", key));
  }
  // Without a "providers" list the built-in local-echo provider stays, so a file may list
  // only models; a file that lists providers gets no built-in model, which would need it.
  if (root.contains("providers")) {
    config.providers =
        read_named_list<provider_config>(root, "providers", "provider name", read_provider);
    config.models.clear();
  }
  if (root.contains("models"))
    config.models = read_named_list<model_config>(
        root, "models", "model name", [&](const json& value, std::string_view path) {
          return read_model(value, path, config.providers);
        });
  return config;
}

/// A setting that a flag, an environment variable or both can give.
struct override_setting {
  /// Flag name without the leading dashes; empty if there is no flag.
  std::string_view flag;
  /// Environment variable; empty if there is none.
  std::string_view env;
  std::string_view value_name;
  std::string_view help;
  /// Validates `value` (throwing config_error without a path) and stores it; null for --config.
  void (*apply)(gateway_config&, std::string_view value);
};

constexpr override_setting override_settings[] = {
    {"config", "TOLLGATE_CONFIG", "FILE",
     "configuration file (default config/tollgate.json, if present)", nullptr},
    {"listen", "TOLLGATE_LISTEN", "HOST:PORT", "address to serve HTTP on",
     [](gateway_config& c, std::string_view v) { c.listen = parse_listen_address(v); }},
    {"database", "TOLLGATE_DATABASE_URL", "URL", "sqlite://PATH or postgresql://USER@HOST:PORT/DB",
     [](gateway_config& c, std::string_view v) {
       check_database(v);
       c.database = std::string(v);
     }},
    {"redis", "TOLLGATE_REDIS_URL", "URL", "redis://HOST:PORT[/DB], or none to run without Redis",
     [](gateway_config& c, std::string_view v) {
       if (v == "none") {
         c.redis.reset();
         return;
       }
       check_redis(v);
       c.redis = std::string(v);
     }},
    {"cluster-listen", "TOLLGATE_CLUSTER_LISTEN", "HOST:PORT",
     "run as a cluster node; other nodes reach this one here (needs PostgreSQL)",
     [](gateway_config& c, std::string_view v) { c.cluster.listen = parse_listen_address(v); }},
    {"join", "TOLLGATE_JOIN", "HOST:PORT[,HOST:PORT]",
     "cluster nodes to connect to at start (members are also found in the database)",
     [](gateway_config& c, std::string_view v) {
       c.cluster.seeds.clear();
       while (!v.empty()) {
         auto comma = v.find(',');
         c.cluster.seeds.push_back(parse_listen_address(v.substr(0, comma)));
         v = comma == std::string_view::npos ? std::string_view() : v.substr(comma + 1);
       }
     }},
    {"node-id", "TOLLGATE_NODE_ID", "NAME", "this node's cluster id (default: its cluster address)",
     [](gateway_config& c, std::string_view v) { c.cluster.node_id = check_non_empty(v); }},
    {"data-dir", "TOLLGATE_DATA_DIR", "DIR", "directory for admin.key and other state",
     [](gateway_config& c, std::string_view v) { c.data_dir = check_non_empty(v); }},
    {"log-level", "TOLLGATE_LOG_LEVEL", "LEVEL", "trace, debug, info, warn, error or off",
     [](gateway_config& c, std::string_view v) { c.log_level = check_log_level(v); }},
    {"", "TOLLGATE_ADMIN_KEY", "KEY", "admin key for /admin (never read from the file)",
     [](gateway_config& c, std::string_view v) { c.admin_key = std::string(v); }},
};

const override_setting* find_flag(std::string_view name) {
  auto it = std::find_if(std::begin(override_settings), std::end(override_settings),
                         [&](const auto& s) { return !s.flag.empty() && s.flag == name; });
  return it == std::end(override_settings) ? nullptr : &*it;
}

/// What the command line says, before anything is applied.
struct parsed_flags {
  bool help = false;
  bool version = false;
  std::optional<std::string> config_path;
  std::vector<std::pair<const override_setting*, std::string>> values;
};

parsed_flags parse_flags(int argc, const char* const* argv) {
  parsed_flags flags;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "-h") {
      flags.help = true;
      continue;
    }
    if (!arg.starts_with("--") || arg.size() == 2)
      throw config_error("unexpected argument " + in_quotes(arg) + "; see --help");
    const auto eq = arg.find('=');
    const auto name = arg.substr(2, eq == std::string_view::npos ? std::string_view::npos : eq - 2);
    std::optional<std::string> value;
    if (eq != std::string_view::npos)
      value = std::string(arg.substr(eq + 1));
    if (name == "help" || name == "version") {
      if (value)
        throw config_error("--" + std::string(name) + ": takes no value");
      (name == "help" ? flags.help : flags.version) = true;
      continue;
    }
    const auto* setting = find_flag(name);
    if (!setting)
      throw config_error("unknown flag " + in_quotes("--" + std::string(name)) + "; see --help");
    if (!value) {
      if (i + 1 >= argc || std::string_view(argv[i + 1]).starts_with("--"))
        throw config_error("--" + std::string(name) + ": missing value");
      value = argv[++i];
    }
    if (setting->apply == nullptr)
      flags.config_path = std::move(*value);
    else
      flags.values.emplace_back(setting, std::move(*value));
  }
  return flags;
}

/// The file's text, or nullopt if it does not exist.
std::optional<std::string> read_text_file(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const auto status = fs::status(path, ec);
  if (!fs::exists(status))
    return std::nullopt;
  if (fs::is_directory(status))
    throw config_error(in_quotes(path) + " is a directory");
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  if (!in)
    throw config_error(in_quotes(path) + " cannot be read");
  return std::move(text).str();
}

} // namespace

const model_config* gateway_config::find_model(std::string_view name) const {
  auto it =
      std::find_if(models.begin(), models.end(), [&](const auto& m) { return m.name == name; });
  return it == models.end() ? nullptr : &*it;
}

const provider_config* gateway_config::find_provider(std::string_view name) const {
  auto it = std::find_if(providers.begin(), providers.end(),
                         [&](const auto& p) { return p.name == name; });
  return it == providers.end() ? nullptr : &*it;
}

database_url parse_database_url(std::string_view url) {
  database_url out;
  if (url.starts_with("sqlite://")) {
    out.backend = database_backend::sqlite;
    out.sqlite_path = std::string(url.substr(9));
    if (out.sqlite_path.empty())
      throw config_error("sqlite URL needs a file path, e.g. sqlite://data/tollgate.db");
    return out;
  }
  if (url.starts_with("postgresql://") || url.starts_with("postgres://")) {
    out.backend = database_backend::postgresql;
    out.connect = postgres_keywords(url);
    return out;
  }
  throw config_error("must be sqlite://PATH or postgresql://USER@HOST:PORT/DB, not " +
                     in_quotes(url));
}

redis_url parse_redis_url(std::string_view url) {
  const auto bad = [&] {
    return config_error("must be redis://HOST:PORT[/DB], not " + in_quotes(url));
  };
  if (!url.starts_with("redis://"))
    throw bad();
  redis_url out;
  auto authority = url.substr(8);
  std::string_view db;
  if (const auto slash = authority.find('/'); slash != std::string_view::npos) {
    db = authority.substr(slash + 1);
    authority = authority.substr(0, slash);
  }
  if (const auto at = authority.rfind('@'); at != std::string_view::npos) {
    const auto userinfo = authority.substr(0, at);
    const auto colon = userinfo.find(':');
    out.username = std::string(userinfo.substr(0, colon));
    if (colon != std::string_view::npos)
      out.password = std::string(userinfo.substr(colon + 1));
    authority = authority.substr(at + 1);
  }
  std::string_view port;
  if (authority.starts_with('[')) {
    const auto close = authority.find(']');
    if (close == std::string_view::npos)
      throw bad();
    out.host = std::string(authority.substr(1, close - 1));
    const auto after = authority.substr(close + 1);
    if (!after.empty() && !after.starts_with(':'))
      throw bad();
    if (!after.empty())
      port = after.substr(1);
    if (!is_address(AF_INET6, out.host))
      throw bad();
  } else {
    const auto colon = authority.rfind(':');
    out.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos)
      port = authority.substr(colon + 1);
    if (out.host.empty() || out.host.find(':') != std::string::npos)
      throw bad();
  }
  if (!port.empty() || authority.ends_with(':')) {
    const auto parsed = parse_port(port);
    if (!parsed)
      throw bad();
    out.port = *parsed;
  }
  if (!db.empty()) {
    const auto [end, ec] = std::from_chars(db.data(), db.data() + db.size(), out.db);
    if (ec != std::errc{} || end != db.data() + db.size() || out.db < 0)
      throw bad();
  }
  return out;
}

listen_address parse_listen_address(std::string_view text) {
  const auto bad = [&] {
    return config_error(
        "must be HOST:PORT with an IPv4 address, localhost or [IPv6] and a port from 1 to "
        "65535, not " +
        in_quotes(text));
  };
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos)
    throw bad();
  auto host = text.substr(0, colon);
  const auto port = parse_port(text.substr(colon + 1));
  if (!port)
    throw bad();
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
    if (!is_address(AF_INET6, host))
      throw bad();
  } else if (host != "localhost" && !is_address(AF_INET, host)) {
    throw bad();
  }
  return {std::string(host), *port};
}

std::string to_string(const listen_address& address) {
  const auto port = std::to_string(address.port);
  if (address.host.find(':') != std::string::npos)
    return "[" + address.host + "]:" + port;
  return address.host + ":" + port;
}

gateway_config parse_config(std::string_view json_text, std::string_view origin) {
  try {
    auto config = read_config(parse_json(json_text));
    config.source = std::string(origin);
    return config;
  } catch (const config_error& e) {
    fail(origin, e.what());
  }
}

gateway_config default_config() {
  gateway_config config;
  auto& echo_provider = config.providers.emplace_back();
  echo_provider.name = "local-echo";
  echo_provider.kind = "echo";
  auto& echo_model = config.models.emplace_back();
  echo_model.name = "echo-1";
  auto& deployment = echo_model.deployments.emplace_back();
  deployment.provider = "local-echo";
  deployment.model = "echo-1";
  return config;
}

command_line load_config(int argc, const char* const* argv,
                         const std::map<std::string, std::string>& env) {
  auto flags = parse_flags(argc, argv);
  command_line out;
  out.help = flags.help;
  out.version = flags.version;
  if (out.help || out.version) {
    out.config = default_config();
    return out;
  }
  const auto env_value = [&](std::string_view name) -> std::optional<std::string> {
    // A variable set to the empty string counts as unset, as in most shells' `VAR=` idiom.
    auto it = env.find(std::string(name));
    if (it == env.end() || it->second.empty())
      return std::nullopt;
    return it->second;
  };
  std::string origin;
  std::string path(default_config_path);
  if (flags.config_path) {
    origin = "--config";
    path = *flags.config_path;
  } else if (auto from_env = env_value("TOLLGATE_CONFIG")) {
    origin = "TOLLGATE_CONFIG";
    path = *from_env;
  }
  const auto text =
      origin.empty() ? read_text_file(path) : at_path(origin, [&] { return read_text_file(path); });
  if (text)
    out.config = parse_config(*text, path);
  else if (origin.empty())
    out.config = default_config();
  else
    fail(origin, in_quotes(path) + " does not exist");

  for (const auto& setting : override_settings)
    if (setting.apply && !setting.env.empty())
      if (auto value = env_value(setting.env))
        at_path(setting.env, [&] { setting.apply(out.config, *value); });
  for (const auto& [setting, value] : flags.values)
    at_path("--" + std::string(setting->flag), [&] { setting->apply(out.config, value); });
  return out;
}

std::map<std::string, std::string> environment() {
  std::map<std::string, std::string> out;
  for (char** entry = environ; entry && *entry; ++entry) {
    const std::string_view text = *entry;
    const auto eq = text.find('=');
    if (text.starts_with("TOLLGATE_") && eq != std::string_view::npos)
      out.emplace(text.substr(0, eq), text.substr(eq + 1));
  }
  return out;
}

std::string usage() {
  std::string out = "Usage: tollgate [options]\n\nOptions:\n";
  const auto line = [&](std::string left, std::string_view help, std::string_view env) {
    left.resize(std::max<std::size_t>(left.size() + 2, 24), ' ');
    out += "  " + left + std::string(help);
    if (!env.empty())
      out += " [" + std::string(env) + "]";
    out += "\n";
  };
  for (const auto& setting : override_settings)
    if (!setting.flag.empty())
      line("--" + std::string(setting.flag) + " " + std::string(setting.value_name), setting.help,
           setting.env);
  line("--help", "show this help and exit", "");
  line("--version", "show the version and exit", "");
  out += "\nEnvironment only:\n";
  for (const auto& setting : override_settings)
    if (setting.flag.empty() && !setting.env.empty())
      line(std::string(setting.env), setting.help, "");
  out += "\nFlags take --flag VALUE or --flag=VALUE. Environment variables override the file\n"
         "and flags override both; a variable set to the empty string counts as unset.\n";
  return out;
}

std::string_view version() {
  return TOLLGATE_VERSION;
}

} // namespace tollgate::config
