#include "tests/support/gateway_process.hpp"

#include "tests/support/ports.hpp"
#include "tests/support/random.hpp"

#include <boost/test/results_collector.hpp>
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>

namespace tollgate::test {

namespace {

constexpr std::size_t log_tail_lines = 40;
constexpr int start_attempts = 3;

std::string read_file(const std::filesystem::path& file, std::uintmax_t offset = 0) {
  std::ifstream in{file, std::ios::binary};
  if (!in)
    return {};
  in.seekg(static_cast<std::streamoff>(offset));
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

/// True if the Boost test running now has failed (or is unwinding an exception).
bool current_test_failed(int uncaught_at_construction) {
  if (std::uncaught_exceptions() > uncaught_at_construction)
    return true;
  try {
    namespace ut = boost::unit_test;
    if (!ut::framework::test_in_progress())
      return false;
    return !ut::results_collector.results(ut::framework::current_test_case().p_id).passed();
  } catch (...) {
    return false;
  }
}

} // namespace

gateway_process::gateway_process(gateway_options options)
    : options_(std::move(options))
    , work_dir_("tollgate-gw")
    , uncaught_at_construction_(std::uncaught_exceptions()) {
  binary_ = options_.binary;
  if (binary_.empty()) {
    const char* from_env = std::getenv("TOLLGATE_BINARY");
    if (from_env == nullptr || *from_env == '\0')
      throw std::runtime_error("TOLLGATE_BINARY is not set: run this test through ctest "
                               "(it points at the built tollgate binary)");
    binary_ = from_env;
  }
  std::filesystem::create_directories(work_dir() / "data");

  env_ = options_.env;
  if (auto it = env_.find("TOLLGATE_ADMIN_KEY"); it != env_.end())
    admin_key_ = it->second;
  else
    env_["TOLLGATE_ADMIN_KEY"] = admin_key_ = "tg-admin-" + random_hex(16);

  database_url_ = options_.database_url.empty()
                      ? "sqlite://" + (work_dir() / "data" / "tollgate.db").string()
                      : options_.database_url;

  if (!options_.config_json.empty()) {
    std::ofstream out{work_dir() / "tollgate.json", std::ios::binary};
    out << options_.config_json;
    if (!out)
      throw std::runtime_error("cannot write " + (work_dir() / "tollgate.json").string());
  }
}

gateway_process::~gateway_process() {
  try {
    if (child_.running())
      stop();
    if (child_.pid() != 0 && current_test_failed(uncaught_at_construction_))
      std::cerr << "[tollgate-test] test failed; last " << log_tail_lines << " lines of "
                << log_path().string() << ":\n"
                << tail_lines(log_path(), log_tail_lines) << std::flush;
  } catch (...) {
    // Never throw from a destructor; the child is killed by child_process's destructor.
  }
}

std::vector<std::string> gateway_process::command_line() const {
  std::vector<std::string> argv{binary_,
                                "--listen",
                                "127.0.0.1:" + std::to_string(port_),
                                "--data-dir",
                                (work_dir() / "data").string(),
                                "--database",
                                database_url_};
  if (!options_.config_json.empty()) {
    argv.emplace_back("--config");
    argv.push_back((work_dir() / "tollgate.json").string());
  }
  argv.insert(argv.end(), options_.args.begin(), options_.args.end());
  return argv;
}

std::string gateway_process::log_since(std::uintmax_t offset) const {
  return read_file(log_path(), offset);
}

void gateway_process::start() {
  if (child_.running())
    throw std::logic_error("gateway_process::start: already running (pid " +
                           std::to_string(child_.pid()) + ")");
  std::string failure;
  for (int attempt = 1; attempt <= start_attempts; ++attempt) {
    if (!loopback_port_free(port_))
      port_ = free_loopback_port();
    auto argv = command_line();
    std::uintmax_t log_offset = 0;
    {
      std::ofstream marker{log_path(), std::ios::app | std::ios::binary};
      marker.seekp(0, std::ios::end);
      log_offset = static_cast<std::uintmax_t>(marker.tellp());
      marker << "=== tollgate-test: starting:";
      for (const auto& arg : argv)
        marker << ' ' << arg;
      marker << '\n';
    }
    child_.spawn({argv, env_, log_path(), work_dir()});
    auto waited = wait_for_http_ok(child_, base_url() + "/health", options_.start_timeout);
    if (waited.outcome == http_wait_outcome::ready)
      return;
    child_.kill();
    failure = waited.outcome == http_wait_outcome::child_exited
                  ? "tollgate " + waited.detail + " before GET /health answered 200"
                  : "GET " + base_url() + "/health did not answer 200 within " +
                        std::to_string(options_.start_timeout.count()) + " ms (" + waited.detail +
                        "); killed it";
    // Someone else may have taken the port between the probe and the bind: try another.
    if (waited.outcome == http_wait_outcome::child_exited &&
        lower(log_since(log_offset)).find("address already in use") != std::string::npos) {
      port_ = 0;
      continue;
    }
    break;
  }
  throw std::runtime_error(failure + "; last " + std::to_string(log_tail_lines) + " lines of " +
                           log_path().string() + ":\n" + tail_lines(log_path(), log_tail_lines));
}

int gateway_process::stop() {
  return child_.terminate(std::chrono::seconds{15});
}

int gateway_process::kill() {
  return child_.kill();
}

void gateway_process::restart() {
  stop();
  start();
}

std::string gateway_process::base_url() const {
  return "http://127.0.0.1:" + std::to_string(port_);
}

std::string gateway_process::log() const {
  return read_file(log_path());
}

} // namespace tollgate::test
