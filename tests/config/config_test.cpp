#include "config/config.hpp"

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <boost/test/unit_test.hpp>
#include <nlohmann/json.hpp>

namespace cfg = tollgate::config;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

/// A config that sets every key the loader knows, valid as written.
constexpr std::string_view full_example = R"({
  "listen": "0.0.0.0:9090",
  "database": "postgresql://tollgate@db.internal:5432/tollgate",
  "redis": "redis://127.0.0.1:6379/2",
  "data_dir": "/var/lib/tollgate",
  "log_level": "debug",
  "http": { "threads": 4, "max_body_bytes": 1048576, "request_timeout_seconds": 120 },
  "actors": { "idle_seconds": 60, "hibernate_seconds": 10, "workers": 3 },
  "limits": { "rpm": 60, "tpm": null, "rpd": 1000 },
  "providers": [ { "name": "local-echo", "kind": "echo" },
                 { "name": "openai", "kind": "openai",
                   "base_url": "https://api.openai.com/v1/", "api_key_env": "OPENAI_API_KEY" },
                 { "name": "claude", "kind": "anthropic", "base_url": "http://127.0.0.1:9999" } ],
  "models": [ { "name": "echo-1", "strategy": "weighted",
                "deployments": [ { "provider": "local-echo", "model": "echo-1", "weight": 1, "priority": 1 } ],
                "input_price": 0, "output_price": 0 },
              { "name": "gpt-4o-mini", "strategy": "priority",
                "deployments": [ { "provider": "openai", "model": "gpt-4o-mini-2024-07-18", "weight": 3, "priority": 1 },
                                 { "provider": "local-echo", "priority": 2 } ],
                "input_price": 150000, "output_price": 600000 } ] })";

json example() {
  return json::parse(full_example);
}

/// The example with the value at JSON pointer `pointer` replaced (or added).
json with(const char* pointer, json value) {
  auto document = example();
  document[json::json_pointer(pointer)] = std::move(value);
  return document;
}

/// The example without the value at JSON pointer `pointer`.
json without(const char* pointer) {
  auto document = example();
  const json::json_pointer path(pointer);
  document[path.parent_pointer()].erase(path.back());
  return document;
}

bool contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

/// The config_error message `run` throws; fails the test if it throws none.
template <class F>
std::string error_of(F&& run) {
  try {
    run();
  } catch (const cfg::config_error& e) {
    return e.what();
  }
  BOOST_ERROR("no config_error thrown");
  return {};
}

/// Checks that parsing `text` fails with a message containing `expected`.
void check_rejected_text(std::string_view text, std::string_view expected) {
  const auto message = error_of([&] { cfg::parse_config(text, "test.json"); });
  BOOST_CHECK_MESSAGE(contains(message, expected), "for " << text << "\n  message \"" << message
                                                          << "\"\n  lacks \"" << expected << "\"");
}

void check_rejected(const json& document, std::string_view expected) {
  check_rejected_text(document.dump(), expected);
}

void check_accepted(const json& document) {
  BOOST_CHECK_NO_THROW(cfg::parse_config(document.dump(), "test.json"));
}

/// A fresh directory, removed with its contents at destruction.
class scratch_dir {
public:
  scratch_dir() {
    auto pattern = (fs::temp_directory_path() / "tollgate-config-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr)
      throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~scratch_dir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  scratch_dir(const scratch_dir&) = delete;
  scratch_dir& operator=(const scratch_dir&) = delete;

  const fs::path& path() const { return path_; }

  /// Writes `text` to `relative` (creating folders) and returns the full path as a string.
  std::string write(const fs::path& relative, std::string_view text) const {
    const auto file = path_ / relative;
    fs::create_directories(file.parent_path());
    std::ofstream(file) << text;
    return file.string();
  }

private:
  fs::path path_;
};

/// Makes `dir` the working directory for the object's lifetime.
class scoped_cwd {
public:
  explicit scoped_cwd(const fs::path& dir)
      : previous_(fs::current_path()) {
    fs::current_path(dir);
  }
  ~scoped_cwd() { fs::current_path(previous_); }
  scoped_cwd(const scoped_cwd&) = delete;
  scoped_cwd& operator=(const scoped_cwd&) = delete;

private:
  fs::path previous_;
};

using env_map = std::map<std::string, std::string>;

cfg::command_line load(std::vector<std::string> args, const env_map& env = {}) {
  args.insert(args.begin(), "tollgate");
  std::vector<const char*> argv;
  for (const auto& arg : args)
    argv.push_back(arg.c_str());
  return cfg::load_config(static_cast<int>(argv.size()), argv.data(), env);
}

std::string load_error(std::vector<std::string> args, const env_map& env = {}) {
  return error_of([&] { load(std::move(args), env); });
}

/// Asserts the built-in configuration in every field.
void check_defaults(const cfg::gateway_config& config) {
  BOOST_TEST(config.listen.host == "127.0.0.1");
  BOOST_TEST(config.listen.port == 8080);
  BOOST_TEST(config.database == "sqlite://data/tollgate.db");
  BOOST_TEST(!config.redis.has_value());
  BOOST_TEST(config.data_dir == "data");
  BOOST_TEST(config.admin_key.empty());
  BOOST_TEST(config.log_level == "info");
  BOOST_TEST(config.http.threads == 0u);
  BOOST_TEST(config.http.max_body_bytes == std::size_t{4} << 20);
  BOOST_TEST(config.http.request_timeout.count() == 600);
  BOOST_TEST(config.actors.idle.count() == 300);
  BOOST_TEST(config.actors.hibernate.count() == 30);
  BOOST_TEST(config.actors.workers == 0u);
  BOOST_TEST(!config.limits.rpm.has_value());
  BOOST_TEST(!config.limits.tpm.has_value());
  BOOST_TEST(!config.limits.rpd.has_value());
  BOOST_REQUIRE_EQUAL(config.providers.size(), 1u);
  BOOST_TEST(config.providers[0].name == "local-echo");
  BOOST_TEST(config.providers[0].kind == "echo");
  BOOST_TEST(config.providers[0].base_url.empty());
  BOOST_REQUIRE_EQUAL(config.models.size(), 1u);
  const auto& model = config.models[0];
  BOOST_TEST(model.name == "echo-1");
  BOOST_TEST(model.strategy == "weighted");
  BOOST_TEST(model.input_price == 0);
  BOOST_TEST(model.output_price == 0);
  BOOST_REQUIRE_EQUAL(model.deployments.size(), 1u);
  BOOST_TEST(model.deployments[0].provider == "local-echo");
  BOOST_TEST(model.deployments[0].model == "echo-1");
  BOOST_TEST(model.deployments[0].weight == 1u);
  BOOST_TEST(model.deployments[0].priority == 1u);
}

/// The example with `value` at `pointer` must be refused with a message containing `part`.
void reject(const char* pointer, json value, const char* part) {
  auto doc = with(pointer, std::move(value));
  try {
    cfg::parse_config(doc.dump(), "test.json");
    BOOST_ERROR("accepted " << pointer);
  } catch (const cfg::config_error& e) {
    BOOST_TEST(contains(e.what(), part), e.what());
  }
}

constexpr const char* minimal_file = R"({ "listen": "127.0.0.1:9000", "log_level": "warn" })";

} // namespace

BOOST_AUTO_TEST_SUITE(config_parse)

BOOST_AUTO_TEST_CASE(built_in_defaults) {
  const auto config = cfg::default_config();
  check_defaults(config);
  BOOST_TEST(config.source.empty());
  BOOST_TEST(config.find_model("echo-1") == &config.models[0]);
  BOOST_TEST(config.find_model("gpt-4") == nullptr);
  BOOST_TEST(config.find_provider("local-echo") == &config.providers[0]);
  BOOST_TEST(config.find_provider("openai") == nullptr);
}

BOOST_AUTO_TEST_CASE(empty_object_keeps_defaults) {
  const auto config = cfg::parse_config("{}", "empty.json");
  check_defaults(config);
  BOOST_TEST(config.source == "empty.json");
}

BOOST_AUTO_TEST_CASE(full_example_parses) {
  const auto config = cfg::parse_config(full_example, "example.json");
  BOOST_TEST(config.listen.host == "0.0.0.0");
  BOOST_TEST(config.listen.port == 9090);
  BOOST_TEST(config.database == "postgresql://tollgate@db.internal:5432/tollgate");
  BOOST_TEST(config.redis.value_or("") == "redis://127.0.0.1:6379/2");
  BOOST_TEST(config.data_dir == "/var/lib/tollgate");
  BOOST_TEST(config.log_level == "debug");
  BOOST_TEST(config.http.threads == 4u);
  BOOST_TEST(config.http.max_body_bytes == 1048576u);
  BOOST_TEST(config.http.request_timeout.count() == 120);
  BOOST_TEST(config.actors.idle.count() == 60);
  BOOST_TEST(config.actors.hibernate.count() == 10);
  BOOST_TEST(config.actors.workers == 3u);
  BOOST_TEST(config.limits.rpm.value_or(0) == 60);
  BOOST_TEST(!config.limits.tpm.has_value());
  BOOST_TEST(config.limits.rpd.value_or(0) == 1000);

  BOOST_REQUIRE_EQUAL(config.providers.size(), 3u);
  const auto* openai = config.find_provider("openai");
  BOOST_REQUIRE(openai != nullptr);
  BOOST_TEST(openai->kind == "openai");
  BOOST_TEST(openai->base_url == "https://api.openai.com/v1"); // trailing slash dropped
  BOOST_TEST(openai->api_key_env == "OPENAI_API_KEY");
  const auto* claude = config.find_provider("claude");
  BOOST_REQUIRE(claude != nullptr);
  BOOST_TEST(claude->kind == "anthropic");
  BOOST_TEST(claude->api_key_env.empty());

  BOOST_REQUIRE_EQUAL(config.models.size(), 2u);
  const auto* mini = config.find_model("gpt-4o-mini");
  BOOST_REQUIRE(mini != nullptr);
  BOOST_TEST(mini->strategy == "priority");
  BOOST_TEST(mini->input_price == 150000);
  BOOST_TEST(mini->output_price == 600000);
  BOOST_REQUIRE_EQUAL(mini->deployments.size(), 2u);
  BOOST_TEST(mini->deployments[0].provider == "openai");
  BOOST_TEST(mini->deployments[0].model == "gpt-4o-mini-2024-07-18");
  BOOST_TEST(mini->deployments[0].weight == 3u);
  BOOST_TEST(mini->deployments[1].provider == "local-echo");
  BOOST_TEST(mini->deployments[1].model == "gpt-4o-mini"); // defaults to the public name
  BOOST_TEST(mini->deployments[1].weight == 1u);
  BOOST_TEST(mini->deployments[1].priority == 2u);
}

BOOST_AUTO_TEST_CASE(comments_are_accepted) {
  const auto config = cfg::parse_config(R"(// leading comment
    {
      /* block
         comment */
      "listen": "localhost:7000", // trailing comment
      "log_level": "error"
    })",
                                        "commented.json");
  BOOST_TEST(config.listen.host == "localhost");
  BOOST_TEST(config.listen.port == 7000);
  BOOST_TEST(config.log_level == "error");
}

BOOST_AUTO_TEST_CASE(repository_default_file_parses) {
  const char* source_dir = std::getenv("TOLLGATE_SOURCE_DIR");
  BOOST_REQUIRE_MESSAGE(source_dir != nullptr, "TOLLGATE_SOURCE_DIR is not set (CTest sets it)");
  const auto path = fs::path(source_dir) / "config" / "tollgate.json";
  std::ifstream in(path);
  BOOST_REQUIRE_MESSAGE(in, "cannot open " << path);
  const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  const auto config = cfg::parse_config(text, path.string());
  BOOST_TEST(cfg::to_string(config.listen) == "127.0.0.1:8080");
  BOOST_TEST(config.database == "sqlite://data/tollgate.db");
  BOOST_TEST(!config.redis.has_value());
  BOOST_TEST(config.find_provider("local-echo") != nullptr);
  const auto* openai = config.find_provider("openai");
  BOOST_REQUIRE(openai != nullptr);
  BOOST_TEST(openai->base_url == "https://api.openai.com/v1");
  BOOST_TEST(openai->api_key_env == "OPENAI_API_KEY");
  const auto* echo = config.find_model("echo-1");
  BOOST_REQUIRE(echo != nullptr);
  BOOST_TEST(echo->deployments.at(0).provider == "local-echo");
  BOOST_TEST(echo->input_price == 0);
  BOOST_TEST(echo->output_price == 0);
}

BOOST_AUTO_TEST_CASE(listed_providers_replace_the_built_in_ones) {
  const auto config = cfg::parse_config(
      R"({ "providers": [ { "name": "up", "kind": "openai", "base_url": "http://up:1" } ] })",
      "t.json");
  BOOST_REQUIRE_EQUAL(config.providers.size(), 1u);
  BOOST_TEST(config.providers[0].name == "up");
  BOOST_TEST(config.models.empty());
}

BOOST_AUTO_TEST_CASE(listed_models_may_use_the_built_in_provider) {
  const auto config = cfg::parse_config(
      R"({ "models": [ { "name": "priced", "input_price": 1000000,
                         "deployments": [ { "provider": "local-echo" } ] } ] })",
      "t.json");
  BOOST_REQUIRE_EQUAL(config.models.size(), 1u);
  BOOST_TEST(config.models[0].deployments[0].model == "priced");
  BOOST_TEST(config.find_provider("local-echo") != nullptr);
  BOOST_TEST(config.find_model("echo-1") == nullptr);
}

BOOST_AUTO_TEST_CASE(boundary_values_are_accepted) {
  check_accepted(with("/http/threads", 0));
  check_accepted(with("/http/threads", 256));
  check_accepted(with("/http/max_body_bytes", 1024));
  check_accepted(with("/http/request_timeout_seconds", 1));
  check_accepted(with("/actors/idle_seconds", 1));
  check_accepted(with("/actors/hibernate_seconds", 0));
  check_accepted(with("/actors/hibernate_seconds", 600)); // not less than idle: never
  check_accepted(with("/actors/workers", 1));
  check_accepted(with("/actors/workers", 256));
  check_accepted(with("/models/0/input_price", std::numeric_limits<int64_t>::max()));
  check_accepted(with("/limits/tpm", 1));
  check_accepted(with("/listen", "[::1]:1"));
  check_accepted(with("/listen", "localhost:65535"));
  check_accepted(with("/database", "postgres://u@h/db"));
  check_accepted(with("/database", "sqlite:///abs/tollgate.db"));
  check_accepted(with("/redis", nullptr));
  check_accepted(with("/models/1/strategy", "least-busy"));
  check_accepted(with("/models/1/strategy", "lowest-latency"));
  check_accepted(with("/log_level", "off"));
  check_accepted(without("/providers/1/api_key_env"));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(config_routing)

BOOST_AUTO_TEST_CASE(routing_and_deployment_settings_are_read) {
  auto doc = example();
  doc["routing"] = {{"max_attempts", 2}, {"retry_budget_percent", 10}, {"keepalive_seconds", 5}};
  doc["models"][1]["deployments"][0]["max_concurrency"] = 50;
  doc["models"][1]["deployments"][0]["timeouts"] = {{"first_token_ms", 2000}, {"idle_ms", 3000}};
  doc["models"][1]["deployments"][0]["breaker"] = {{"failures", 3}, {"cooldown_ms", 250}};
  doc["models"][1]["max_output_tokens"] = 16384;
  auto c = cfg::parse_config(doc.dump(), "test.json");
  BOOST_TEST(c.routing.max_attempts == 2);
  BOOST_TEST(c.routing.retry_budget_percent == 10);
  BOOST_TEST(c.routing.backoff_ms == 50); // default kept
  BOOST_TEST(c.routing.keepalive_seconds == 5);
  const auto& d = c.models[1].deployments[0];
  BOOST_TEST(d.max_concurrency == 50);
  BOOST_TEST(d.timeouts.first_token_ms == 2000);
  BOOST_TEST(d.timeouts.idle_ms == 3000);
  BOOST_TEST(d.timeouts.connect_ms == 10'000); // default kept
  BOOST_TEST(d.breaker.failures == 3);
  BOOST_TEST(d.breaker.cooldown_ms == 250);
  BOOST_TEST(d.breaker.half_open_probes == 2);
  BOOST_TEST(c.models[1].max_output_tokens == 16384);
  BOOST_TEST(c.models[0].max_output_tokens == 4096);
}

BOOST_AUTO_TEST_CASE(bad_routing_values_name_the_key) {
  reject("/routing/max_attempts", 0, "routing.max_attempts");
  reject("/routing/retry_budget_percent", 101, "routing.retry_budget_percent");
  reject("/routing/retries", 1, "unknown key \"retries\" in routing");
  reject("/models/1/deployments/0/timeouts/first_token_ms", 0,
         "models[1].deployments[0].timeouts.first_token_ms");
  reject("/models/1/deployments/0/timeouts/ttft", 5, "unknown key \"ttft\"");
  reject("/models/1/deployments/0/breaker/failure_rate_percent", 150,
         "models[1].deployments[0].breaker.failure_rate_percent");
  reject("/models/1/deployments/0/breaker/window_seconds", 61, "breaker.window_seconds");
  reject("/models/1/deployments/0/max_concurrency", -1, "max_concurrency");
  reject("/models/1/max_output_tokens", 0, "max_output_tokens");
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(config_validation)

BOOST_AUTO_TEST_CASE(invalid_json_names_file_and_position) {
  const auto message = error_of([] { cfg::parse_config("{\n  \"listen\": ,\n}", "broken.json"); });
  BOOST_TEST(contains(message, "broken.json"), message);
  BOOST_TEST(contains(message, "line 2"), message);
  check_rejected_text("", "invalid JSON");
  check_rejected_text("[]", "top level must be a JSON object");
  check_rejected_text("\"x\"", "top level must be a JSON object");
}

BOOST_AUTO_TEST_CASE(unknown_keys_are_named_with_their_path) {
  check_rejected(with("/foo", 1), "test.json: unknown key \"foo\" at top level");
  check_rejected(with("/providers/1/foo", 1), "unknown key \"foo\" in providers[1]");
  check_rejected(with("/http/thread", 1), "unknown key \"thread\" in http");
  check_rejected(with("/actors/idle", 1), "unknown key \"idle\" in actors");
  check_rejected(with("/limits/rph", 1), "unknown key \"rph\" in limits");
  check_rejected(with("/models/1/price", 1), "unknown key \"price\" in models[1]");
  check_rejected(with("/models/1/deployments/1/url", "x"),
                 "unknown key \"url\" in models[1].deployments[1]");
  check_rejected(with("/admin_key", "secret"), "admin_key: is never read from the file");
}

BOOST_AUTO_TEST_CASE(duplicate_keys_are_named_with_their_path) {
  check_rejected_text(R"({ "listen": "127.0.0.1:1", "listen": "127.0.0.1:2" })",
                      "duplicate key \"listen\" at top level");
  check_rejected_text(R"({ "http": { "threads": 1, "threads": 2 } })",
                      "duplicate key \"threads\" in http");
  check_rejected_text(R"({ "providers": [ { "name": "e", "kind": "echo" } ],
      "models": [ { "name": "a", "deployments": [ { "provider": "e" } ] },
                  { "name": "b", "deployments": [ [1, {"x": 1}], { "provider": "e", "weight": 1, "weight": 2 } ] } ] })",
                      "duplicate key \"weight\" in models[1].deployments[1]");
}

BOOST_AUTO_TEST_CASE(wrong_types_are_named) {
  check_rejected(with("/listen", 5), "listen: must be a string");
  check_rejected(with("/database", 5), "database: must be a string");
  check_rejected(with("/redis", 5), "redis: must be null or a redis:// URL");
  check_rejected(with("/data_dir", ""), "data_dir: must be a non-empty string");
  check_rejected(with("/data_dir", nullptr), "data_dir: must be a non-empty string");
  check_rejected(with("/log_level", "verbose"), "log_level: must be one of");
  check_rejected(with("/log_level", 3), "log_level: must be one of");
  check_rejected(with("/http", "fast"), "http: must be an object");
  check_rejected(with("/actors", json::array()), "actors: must be an object");
  check_rejected(with("/limits", nullptr), "limits: must be an object");
  check_rejected(with("/providers", json::object()), "providers: must be an array");
  check_rejected(with("/models", "echo-1"), "models: must be an array");
  check_rejected(with("/providers/0", "local-echo"), "providers[0]: must be an object");
  check_rejected(with("/models/1/deployments/0", 1), "models[1].deployments[0]: must be an object");
}

BOOST_AUTO_TEST_CASE(bad_listen_addresses) {
  for (const char* listen : {"127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536",
                             "127.0.0.1:80x", "127.0.0.1:-1", ":8080", "example.com:80", "1.2.3:80",
                             "::1:8080", "[::1]", "[zz]:80", "[::1]:0", ""})
    check_rejected(with("/listen", listen), "test.json: listen: must be HOST:PORT");
}

BOOST_AUTO_TEST_CASE(bad_urls) {
  for (const char* url : {"mysql://h/db", "data/tollgate.db", ""})
    check_rejected(with("/database", url), "database: must be");
  check_rejected(with("/database", "sqlite://"), "database: sqlite URL needs a file path");
  for (const char* url : {"http://h:6379", "redis://", "redis://h:0",
                          "redis://h:", "redis://h:6379/x", "redis://:6379", ""})
    check_rejected(with("/redis", url), "redis: must be");
}

BOOST_AUTO_TEST_CASE(prices_must_be_non_negative_integers) {
  for (const json& price : {json(1.5), json(1.0), json("10"), json(-1), json(true), json(nullptr),
                            json::parse("9223372036854775808"), json::parse("1e3")}) {
    check_rejected(with("/models/1/input_price", price),
                   "models[1].input_price: must be a non-negative integer");
    check_rejected(with("/models/0/output_price", price),
                   "models[0].output_price: must be a non-negative integer");
  }
}

BOOST_AUTO_TEST_CASE(numeric_ranges) {
  for (const json& threads : {json(-1), json(257), json(2.0), json("2")})
    check_rejected(with("/http/threads", threads),
                   "http.threads: must be an integer from 0 to 256");
  check_rejected(with("/http/max_body_bytes", 1023), "http.max_body_bytes:");
  check_rejected(with("/http/request_timeout_seconds", 0), "http.request_timeout_seconds:");
  check_rejected(with("/http/request_timeout_seconds", 1.5), "http.request_timeout_seconds:");
  check_rejected(with("/actors/idle_seconds", 0), "actors.idle_seconds:");
  check_rejected(with("/actors/idle_seconds", -300), "actors.idle_seconds:");
  for (const json& hibernate : {json(-1), json(1.5), json("30"), json(nullptr)})
    check_rejected(with("/actors/hibernate_seconds", hibernate), "actors.hibernate_seconds:");
  for (const json& workers : {json(0), json(257), json(1.5), json("2")})
    check_rejected(with("/actors/workers", workers),
                   "actors.workers: must be an integer from 1 to 256");
  for (const json& limit : {json(0), json(-5), json(1.5), json("10"), json(false)})
    check_rejected(with("/limits/rpm", limit), "limits.rpm: must be null or a positive integer");
  check_rejected(with("/limits/rpd", 0), "limits.rpd:");
}

BOOST_AUTO_TEST_CASE(provider_rules) {
  check_rejected(without("/providers/1/name"), "providers[1].name: is required");
  check_rejected(with("/providers/1/name", ""), "providers[1].name: must be a non-empty string");
  check_rejected(with("/providers/1/name", "local-echo"),
                 "providers[1].name: duplicate provider name \"local-echo\"");
  check_rejected(without("/providers/0/kind"), "providers[0].kind: is required");
  check_rejected(with("/providers/1/kind", "azure"), "providers[1].kind: must be one of");
  check_rejected(without("/providers/1/base_url"), "providers[1].base_url: is required");
  for (const char* url : {"ftp://x", "https://", "http:///v1", "api.openai.com", "https://a b"})
    check_rejected(with("/providers/2/base_url", url), "providers[2].base_url: must be an http");
  check_rejected(with("/providers/1/base_url", 1), "providers[1].base_url: must be a string");
  check_rejected(with("/providers/0/base_url", "http://x"),
                 "providers[0].base_url: is not used by kind \"echo\"");
  check_rejected(with("/providers/0/api_key_env", "KEY"),
                 "providers[0].api_key_env: is not used by kind \"echo\"");
  for (const json& env : {json("1KEY"), json(""), json("MY-KEY"), json(7)})
    check_rejected(with("/providers/1/api_key_env", env), "providers[1].api_key_env: must be");
  for (const json& version : {json("2"), json("HTTP/2"), json(2), json(nullptr)})
    check_rejected(with("/providers/1/http_version", version),
                   "providers[1].http_version: must be one of \"auto\", \"1.1\"");
  check_rejected(with("/providers/0/http_version", "1.1"),
                 "providers[0].http_version: is not used by kind \"echo\"");
  check_rejected(with("/providers/1/tls_ca", "/nonexistent/ca.pem"),
                 "providers[1].tls_ca: cannot read \"/nonexistent/ca.pem\"");
  for (const json& ca : {json(""), json(7)})
    check_rejected(with("/providers/1/tls_ca", ca), "providers[1].tls_ca: must be a non-empty");
  check_rejected(with("/providers/0/tls_ca", "/etc/hostname"),
                 "providers[0].tls_ca: is not used by kind \"echo\"");
  for (const json& cap : {json(0), json(-1), json(70000), json(1.5), json("2")})
    check_rejected(with("/providers/1/max_connections", cap), "providers[1].max_connections:");
  check_rejected(with("/providers/0/max_connections", 4),
                 "providers[0].max_connections: is not used by kind \"echo\"");
}

BOOST_AUTO_TEST_CASE(provider_http_versions_and_cas) {
  auto provider_1 = [](const json& document) {
    return cfg::parse_config(document.dump(), "test.json").providers[1];
  };
  BOOST_TEST((provider_1(example()).http == cfg::http_version::automatic));
  BOOST_TEST(
      (provider_1(with("/providers/1/http_version", "auto")).http == cfg::http_version::automatic));
  BOOST_TEST(
      (provider_1(with("/providers/1/http_version", "1.1")).http == cfg::http_version::http1_1));
  BOOST_TEST(provider_1(example()).tls_ca.empty());
  scratch_dir dir;
  auto ca = dir.write("ca.pem", "-----BEGIN CERTIFICATE-----\n");
  BOOST_TEST(provider_1(with("/providers/1/tls_ca", ca)).tls_ca == ca);
  BOOST_TEST(provider_1(example()).max_connections == 0);
  BOOST_TEST(provider_1(with("/providers/1/max_connections", 64)).max_connections == 64);
}

BOOST_AUTO_TEST_CASE(model_rules) {
  check_rejected(without("/models/1/name"), "models[1].name: is required");
  check_rejected(with("/models/1/name", ""), "models[1].name: must be a non-empty string");
  check_rejected(with("/models/1/name", "echo-1"),
                 "models[1].name: duplicate model name \"echo-1\"");
  check_rejected(with("/models/1/strategy", "random"), "models[1].strategy: must be one of");
  check_rejected(without("/models/0/deployments"), "models[0].deployments: is required");
  check_rejected(with("/models/0/deployments", json::array()),
                 "models[0].deployments: must be a non-empty array");
  check_rejected(with("/models/1/deployments/1/provider", "nope"),
                 "models[1].deployments[1].provider: unknown provider \"nope\"");
  check_rejected(without("/models/1/deployments/0/provider"),
                 "models[1].deployments[0].provider: is required");
  check_rejected(with("/models/1/deployments/0/model", ""),
                 "models[1].deployments[0].model: must be a non-empty string");
  for (const json& n : {json(0), json(-1), json(1.5), json("1")}) {
    check_rejected(with("/models/1/deployments/0/weight", n), "models[1].deployments[0].weight:");
    check_rejected(with("/models/1/deployments/1/priority", n),
                   "models[1].deployments[1].priority:");
  }
  check_rejected(with("/models/0/deployments/0/weight", 4294967296LL),
                 "models[0].deployments[0].weight:");
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(config_addresses)

BOOST_AUTO_TEST_CASE(database_urls) {
  auto sqlite = cfg::parse_database_url("sqlite://data/x.db");
  BOOST_TEST((sqlite.backend == cfg::database_backend::sqlite));
  BOOST_TEST(sqlite.sqlite_path == "data/x.db");
  BOOST_TEST(cfg::parse_database_url("sqlite:///abs/x.db").sqlite_path == "/abs/x.db");
  BOOST_TEST(cfg::parse_database_url("sqlite://:memory:").sqlite_path == ":memory:");
  auto pg = cfg::parse_database_url("postgresql://user@host:5432/db");
  BOOST_TEST((pg.backend == cfg::database_backend::postgresql));
  BOOST_TEST(pg.connect == "host=host user=user port=5432 dbname=db");
  BOOST_TEST(pg.sqlite_path.empty());
  auto full = cfg::parse_database_url("postgres://us%40r:p%20w@[::1]/db?sslmode=require");
  BOOST_TEST(full.connect == "host=::1 user=us@r password='p w' dbname=db sslmode=require");
  for (const char* url : {"", "sqlite://", "sqlite:data.db", "mysql://h/db", "data/x.db"})
    BOOST_CHECK_THROW(cfg::parse_database_url(url), cfg::config_error);
}

BOOST_AUTO_TEST_CASE(redis_urls) {
  auto plain = cfg::parse_redis_url("redis://cache.internal");
  BOOST_TEST(plain.host == "cache.internal");
  BOOST_TEST(plain.port == 6379);
  BOOST_TEST(plain.db == 0);
  auto full = cfg::parse_redis_url("redis://user:secret@10.0.0.5:6380/3");
  BOOST_TEST(full.host == "10.0.0.5");
  BOOST_TEST(full.port == 6380);
  BOOST_TEST(full.db == 3);
  BOOST_TEST(full.username == "user");
  BOOST_TEST(full.password == "secret");
  auto v6 = cfg::parse_redis_url("redis://[::1]:7000/");
  BOOST_TEST(v6.host == "::1");
  BOOST_TEST(v6.port == 7000);
  BOOST_TEST(v6.db == 0);
  for (const char* url :
       {"", "redis://", "redis://h:0", "redis://h:70000", "redis://h:x", "redis://h/-1",
        "redis://h/1x", "redis://[::1", "redis://[zz]:1", "rediss://h", "redis://a:b:1"})
    BOOST_CHECK_THROW(cfg::parse_redis_url(url), cfg::config_error);
}

BOOST_AUTO_TEST_CASE(listen_addresses) {
  auto v4 = cfg::parse_listen_address("0.0.0.0:443");
  BOOST_TEST(v4.host == "0.0.0.0");
  BOOST_TEST(v4.port == 443);
  auto v6 = cfg::parse_listen_address("[::]:8080");
  BOOST_TEST(v6.host == "::");
  BOOST_TEST(cfg::to_string(v6) == "[::]:8080");
  BOOST_TEST(cfg::to_string(cfg::parse_listen_address("localhost:1")) == "localhost:1");
  BOOST_CHECK_THROW(cfg::parse_listen_address("host:80"), cfg::config_error);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(config_loader)

BOOST_AUTO_TEST_CASE(no_file_gives_built_in_defaults) {
  scratch_dir dir;
  scoped_cwd cwd(dir.path());
  const auto line = load({});
  BOOST_TEST(!line.help);
  BOOST_TEST(!line.version);
  check_defaults(line.config);
  BOOST_TEST(line.config.source.empty());
}

BOOST_AUTO_TEST_CASE(default_file_in_working_directory_is_loaded) {
  scratch_dir dir;
  dir.write("config/tollgate.json", minimal_file);
  scoped_cwd cwd(dir.path());
  const auto line = load({});
  BOOST_TEST(line.config.source == "config/tollgate.json");
  BOOST_TEST(line.config.listen.port == 9000);
  BOOST_TEST(line.config.log_level == "warn");
}

BOOST_AUTO_TEST_CASE(config_flag_and_variable_select_the_file) {
  scratch_dir dir;
  const auto from_flag = dir.write("flag.json", R"({ "listen": "127.0.0.1:1001" })");
  const auto from_env = dir.write("env.json", R"({ "listen": "127.0.0.1:1002" })");
  BOOST_TEST(load({"--config", from_flag}).config.listen.port == 1001);
  BOOST_TEST(load({"--config=" + from_flag}).config.source == from_flag);
  BOOST_TEST(load({}, {{"TOLLGATE_CONFIG", from_env}}).config.listen.port == 1002);
  BOOST_TEST(load({"--config", from_flag}, {{"TOLLGATE_CONFIG", from_env}}).config.listen.port ==
             1001);
}

BOOST_AUTO_TEST_CASE(missing_explicit_file_is_an_error) {
  scratch_dir dir;
  const auto missing = (dir.path() / "missing.json").string();
  auto message = load_error({"--config", missing});
  BOOST_TEST(contains(message, "--config"), message);
  BOOST_TEST(contains(message, "missing.json"), message);
  message = load_error({}, {{"TOLLGATE_CONFIG", missing}});
  BOOST_TEST(contains(message, "TOLLGATE_CONFIG"), message);
  message = load_error({"--config", dir.path().string()});
  BOOST_TEST(contains(message, "is a directory"), message);
}

BOOST_AUTO_TEST_CASE(errors_in_a_loaded_file_name_it) {
  scratch_dir dir;
  const auto bad = dir.write("bad.json", R"({ "http": { "threads": 300 } })");
  const auto message = load_error({"--config", bad});
  BOOST_TEST(contains(message, bad + ": http.threads:"), message);
}

BOOST_AUTO_TEST_CASE(environment_overrides_the_file) {
  scratch_dir dir;
  const auto file = dir.write("t.json", full_example);
  const env_map env{{"TOLLGATE_LISTEN", "127.0.0.1:9100"},
                    {"TOLLGATE_DATABASE_URL", "sqlite://other.db"},
                    {"TOLLGATE_REDIS_URL", "redis://cache:6390/1"},
                    {"TOLLGATE_ADMIN_KEY", "admin-secret"},
                    {"TOLLGATE_DATA_DIR", "state"},
                    {"TOLLGATE_LOG_LEVEL", "trace"},
                    {"TOLLGATE_SOURCE_DIR", "/ignored"}};
  const auto config = load({"--config", file}, env).config;
  BOOST_TEST(cfg::to_string(config.listen) == "127.0.0.1:9100");
  BOOST_TEST(config.database == "sqlite://other.db");
  BOOST_TEST(config.redis.value_or("") == "redis://cache:6390/1");
  BOOST_TEST(config.admin_key == "admin-secret");
  BOOST_TEST(config.data_dir == "state");
  BOOST_TEST(config.log_level == "trace");
  BOOST_TEST(config.http.threads == 4u); // untouched file values stay
  BOOST_TEST(config.source == file);
}

BOOST_AUTO_TEST_CASE(empty_variables_count_as_unset) {
  scratch_dir dir;
  const auto file = dir.write("t.json", minimal_file);
  const auto config =
      load({"--config", file}, {{"TOLLGATE_LISTEN", ""}, {"TOLLGATE_ADMIN_KEY", ""}}).config;
  BOOST_TEST(config.listen.port == 9000);
  BOOST_TEST(config.admin_key.empty());
}

BOOST_AUTO_TEST_CASE(flags_override_the_environment) {
  scratch_dir dir;
  const auto file = dir.write("t.json", full_example);
  const env_map env{{"TOLLGATE_LISTEN", "127.0.0.1:9100"},
                    {"TOLLGATE_DATABASE_URL", "sqlite://env.db"},
                    {"TOLLGATE_REDIS_URL", "redis://env:1"},
                    {"TOLLGATE_DATA_DIR", "env-data"},
                    {"TOLLGATE_LOG_LEVEL", "trace"}};
  const auto config =
      load({"--config", file, "--listen", "[::1]:9200", "--database=postgresql://flag@h/db",
            "--redis", "redis://flag:2", "--data-dir=flag-data", "--log-level", "error"},
           env)
          .config;
  BOOST_TEST(cfg::to_string(config.listen) == "[::1]:9200");
  BOOST_TEST(config.database == "postgresql://flag@h/db");
  BOOST_TEST(config.redis.value_or("") == "redis://flag:2");
  BOOST_TEST(config.data_dir == "flag-data");
  BOOST_TEST(config.log_level == "error");
}

BOOST_AUTO_TEST_CASE(cluster_settings_from_file_variables_and_flags) {
  scratch_dir dir;
  auto doc = example();
  doc["cluster"] = {{"listen", "10.0.0.1:7100"},
                    {"seeds", {"10.0.0.2:7100", "[::1]:7101"}},
                    {"node_id", "gw-1"},
                    {"shards", 64},
                    {"lease_seconds", 4},
                    {"tls_certificate", "/etc/t/node.pem"},
                    {"tls_key", "/etc/t/node.key"},
                    {"tls_ca", "/etc/t/ca.pem"}};
  const auto file = dir.write("c.json", doc.dump());
  auto from_file = load({"--config", file}).config.cluster;
  BOOST_TEST(from_file.enabled());
  BOOST_TEST(cfg::to_string(*from_file.listen) == "10.0.0.1:7100");
  BOOST_TEST_REQUIRE(from_file.seeds.size() == 2u);
  BOOST_TEST(cfg::to_string(from_file.seeds[1]) == "[::1]:7101");
  BOOST_TEST(from_file.node_id == "gw-1");
  BOOST_TEST(from_file.shards == 64);
  BOOST_TEST(from_file.lease.count() == 4000);
  BOOST_TEST(from_file.tls_ca == "/etc/t/ca.pem");

  auto flagged = load({"--config", file, "--cluster-listen", "127.0.0.1:7200", "--join",
                       "127.0.0.1:7201,127.0.0.1:7202", "--node-id", "n9"},
                      {{"TOLLGATE_NODE_ID", "from-env"}})
                     .config.cluster;
  BOOST_TEST(cfg::to_string(*flagged.listen) == "127.0.0.1:7200");
  BOOST_TEST_REQUIRE(flagged.seeds.size() == 2u);
  BOOST_TEST(cfg::to_string(flagged.seeds[0]) == "127.0.0.1:7201");
  BOOST_TEST(flagged.node_id == "n9");
  BOOST_TEST(load({}, {{"TOLLGATE_CLUSTER_LISTEN", "127.0.0.1:7300"}}).config.cluster.enabled());
  // A single node by default.
  BOOST_TEST(!load({}).config.cluster.enabled());

  BOOST_TEST(contains(load_error({"--join", "nowhere"}), "--join"));
  reject("/cluster/shards", 0, "cluster.shards");
  reject("/cluster/listen", "no-port", "cluster.listen");
  reject("/cluster/seeds", "10.0.0.2:7100", "cluster.seeds");
  reject("/cluster/seeds", json::array({"bad"}), "cluster.seeds[0]");
  reject("/cluster/lease_seconds", 0, "cluster.lease_seconds");
  reject("/cluster/peers", 1, "unknown key \"peers\" in cluster");
}

BOOST_AUTO_TEST_CASE(redis_none_disables_redis) {
  scratch_dir dir;
  const auto file = dir.write("t.json", full_example);
  BOOST_TEST(!load({"--config", file, "--redis=none"}).config.redis.has_value());
  BOOST_TEST(!load({"--config", file}, {{"TOLLGATE_REDIS_URL", "none"}}).config.redis.has_value());
}

BOOST_AUTO_TEST_CASE(the_last_repeated_flag_wins) {
  scratch_dir dir;
  scoped_cwd cwd(dir.path());
  BOOST_TEST(load({"--log-level", "debug", "--log-level", "warn"}).config.log_level == "warn");
}

BOOST_AUTO_TEST_CASE(bad_override_values_name_their_source) {
  scratch_dir dir;
  scoped_cwd cwd(dir.path());
  BOOST_TEST(contains(load_error({}, {{"TOLLGATE_LISTEN", "nope"}}), "TOLLGATE_LISTEN: must be"));
  BOOST_TEST(
      contains(load_error({}, {{"TOLLGATE_LOG_LEVEL", "loud"}}), "TOLLGATE_LOG_LEVEL: must"));
  BOOST_TEST(
      contains(load_error({}, {{"TOLLGATE_DATABASE_URL", "mysql://x"}}), "TOLLGATE_DATABASE_URL:"));
  BOOST_TEST(contains(load_error({}, {{"TOLLGATE_REDIS_URL", "x"}}), "TOLLGATE_REDIS_URL:"));
  BOOST_TEST(contains(load_error({"--listen", "1.2.3.4:0"}), "--listen: must be"));
  BOOST_TEST(contains(load_error({"--data-dir="}), "--data-dir: must not be empty"));
  BOOST_TEST(contains(load_error({"--log-level=chatty"}), "--log-level: must be one of"));
  BOOST_TEST(contains(load_error({"--redis", "http://x"}), "--redis: must be"));
}

BOOST_AUTO_TEST_CASE(malformed_command_lines) {
  BOOST_TEST(contains(load_error({"--frobnicate"}), "unknown flag \"--frobnicate\""));
  BOOST_TEST(contains(load_error({"--frobnicate=1"}), "unknown flag \"--frobnicate\""));
  BOOST_TEST(contains(load_error({"--listen"}), "--listen: missing value"));
  BOOST_TEST(
      contains(load_error({"--listen", "--database", "sqlite://x.db"}), "--listen: missing value"));
  BOOST_TEST(contains(load_error({"--config"}), "--config: missing value"));
  BOOST_TEST(contains(load_error({"serve"}), "unexpected argument \"serve\""));
  BOOST_TEST(contains(load_error({"--"}), "unexpected argument \"--\""));
  BOOST_TEST(contains(load_error({"--help=yes"}), "--help: takes no value"));
}

BOOST_AUTO_TEST_CASE(help_and_version_skip_loading) {
  const auto help = load({"--help", "--config", "/nonexistent/tollgate.json"});
  BOOST_TEST(help.help);
  BOOST_TEST(load({"-h"}).help);
  const auto version = load({"--version"}, {{"TOLLGATE_CONFIG", "/nonexistent.json"}});
  BOOST_TEST(version.version);
  BOOST_TEST(!version.help);
  BOOST_TEST(!cfg::version().empty());
}

BOOST_AUTO_TEST_CASE(usage_lists_every_flag_and_variable) {
  const auto text = cfg::usage();
  for (const char* part :
       {"--config FILE", "--listen HOST:PORT", "--database URL", "--redis URL", "--data-dir DIR",
        "--log-level", "--help", "--version", "TOLLGATE_CONFIG", "TOLLGATE_LISTEN",
        "TOLLGATE_DATABASE_URL", "TOLLGATE_REDIS_URL", "TOLLGATE_ADMIN_KEY", "TOLLGATE_DATA_DIR",
        "TOLLGATE_LOG_LEVEL"})
    BOOST_TEST(contains(text, part), part);
}

BOOST_AUTO_TEST_CASE(environment_snapshot_has_only_tollgate_variables) {
  setenv("TOLLGATE_CONFIG_TEST_PROBE", "a=b", 1);
  setenv("NOT_TOLLGATE_CONFIG_TEST_PROBE", "1", 1);
  const auto env = cfg::environment();
  unsetenv("TOLLGATE_CONFIG_TEST_PROBE");
  unsetenv("NOT_TOLLGATE_CONFIG_TEST_PROBE");
  BOOST_TEST(env.count("TOLLGATE_CONFIG_TEST_PROBE") == 1u);
  BOOST_TEST(env.at("TOLLGATE_CONFIG_TEST_PROBE") == "a=b");
  BOOST_TEST(env.count("NOT_TOLLGATE_CONFIG_TEST_PROBE") == 0u);
  for (const auto& [name, value] : env)
    BOOST_TEST(name.starts_with("TOLLGATE_"), name);
}

BOOST_AUTO_TEST_SUITE_END()
