#include "tests/support/mock_upstream_process.hpp"

#include "tests/support/ports.hpp"

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace tollgate::test {

namespace {

constexpr int start_attempts = 3;
constexpr std::size_t log_tail_lines = 40;

std::string mock_binary() {
  const char* from_env = std::getenv("TOLLGATE_MOCK_UPSTREAM");
  if (from_env == nullptr || *from_env == '\0')
    throw std::runtime_error("TOLLGATE_MOCK_UPSTREAM is not set: run this test through ctest "
                             "(it points at the built tollgate_mock_upstream)");
  return from_env;
}

std::string read_all(const std::filesystem::path& file) {
  std::ifstream in{file, std::ios::binary};
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

} // namespace

mock_upstream::mock_upstream(std::vector<std::string> extra_args)
    : work_dir_("tollgate-mock")
    , client_("http://127.0.0.1") {
  auto binary = mock_binary();
  std::string failure;
  for (int attempt = 1; attempt <= start_attempts; ++attempt) {
    port_ = free_loopback_port();
    std::vector<std::string> argv{binary, "--listen", "127.0.0.1:" + std::to_string(port_)};
    argv.insert(argv.end(), extra_args.begin(), extra_args.end());
    auto log_size =
        std::filesystem::exists(log_path()) ? std::filesystem::file_size(log_path()) : 0;
    child_.spawn({argv, {}, log_path(), work_dir_.path()});
    auto waited = wait_for_http_ok(child_, root_url() + "/health", std::chrono::seconds{20});
    if (waited.outcome == http_wait_outcome::ready) {
      client_ = http_client{root_url()};
      return;
    }
    child_.kill();
    failure = "tollgate_mock_upstream did not come up (" + waited.detail + ")";
    // Another process may have taken the port between the probe and the bind.
    if (waited.outcome == http_wait_outcome::child_exited &&
        read_all(log_path()).substr(log_size).find("in use") != std::string::npos)
      continue;
    break;
  }
  throw std::runtime_error(failure + "; last lines of " + log_path().string() + ":\n" +
                           tail_lines(log_path(), log_tail_lines));
}

mock_upstream::~mock_upstream() {
  try {
    child_.terminate(std::chrono::seconds{5});
  } catch (...) {
    // child_process's destructor kills it anyway.
  }
}

std::string mock_upstream::base_url() const {
  return root_url() + "/v1";
}

std::string mock_upstream::root_url() const {
  return "http://127.0.0.1:" + std::to_string(port_);
}

http_response mock_upstream::settings(const nlohmann::json& patch) {
  return client_.post("/mock/settings", patch.dump());
}

nlohmann::json mock_upstream::requests() {
  return client_.get("/mock/requests").json();
}

void mock_upstream::clear_requests() {
  auto response = client_.del("/mock/requests");
  if (response.status != 200)
    throw std::runtime_error("DELETE /mock/requests answered " + std::to_string(response.status));
}

nlohmann::json mock_upstream::stats() {
  return client_.get("/mock/stats").json();
}

} // namespace tollgate::test
