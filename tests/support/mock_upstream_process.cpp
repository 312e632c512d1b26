#include "tests/support/mock_upstream_process.hpp"

#include <cstdlib>
#include <stdexcept>

namespace tollgate::test {

namespace {

std::string mock_binary() {
  const char* from_env = std::getenv("TOLLGATE_MOCK_UPSTREAM");
  if (from_env == nullptr || *from_env == '\0')
    throw std::runtime_error("TOLLGATE_MOCK_UPSTREAM is not set: run this test through ctest "
                             "(it points at the built tollgate_mock_upstream)");
  return from_env;
}

} // namespace

mock_upstream::mock_upstream(std::vector<std::string> extra_args)
    : work_dir_("tollgate-mock")
    , client_("http://127.0.0.1") {
  auto binary = mock_binary();
  port_ = spawn_on_free_port(
      child_, {{}, {}, log_path(), work_dir_.path()},
      [&](std::uint16_t port) {
        std::vector<std::string> argv{binary, "--listen", "127.0.0.1:" + std::to_string(port)};
        argv.insert(argv.end(), extra_args.begin(), extra_args.end());
        return argv;
      },
      "/health", "tollgate_mock_upstream");
  client_ = http_client{root_url()};
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
