#pragma once

#include "tests/support/child_process.hpp"
#include "tests/support/http_client.hpp"
#include "tests/support/temp_dir.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace tollgate::test {

/// tollgate_mock_upstream (env TOLLGATE_MOCK_UPSTREAM, set by CTest) as a child process on a
/// free loopback port, output in a temp dir. Ready (GET /health answers 200) once constructed;
/// stopped by the destructor.
class mock_upstream {
public:
  /// Starts `tollgate_mock_upstream --listen 127.0.0.1:<port> <extra_args...>`; throws with
  /// the log's tail if it does not come up.
  explicit mock_upstream(std::vector<std::string> extra_args = {});
  ~mock_upstream();

  mock_upstream(const mock_upstream&) = delete;
  mock_upstream& operator=(const mock_upstream&) = delete;

  /// "http://127.0.0.1:<port>/v1": what a provider's base URL points at.
  std::string base_url() const;
  /// "http://127.0.0.1:<port>".
  std::string root_url() const;
  std::uint16_t port() const { return port_; }

  /// POST /mock/settings: changes the process defaults (partial update).
  http_response settings(const nlohmann::json& patch);
  /// GET /mock/requests: the last 100 /v1 requests, newest last.
  nlohmann::json requests();
  /// DELETE /mock/requests: forgets them and zeroes the request and cancel counters.
  void clear_requests();
  /// GET /mock/stats: {"requests":N,"in_flight":M,"cancelled":K}.
  nlohmann::json stats();

  std::filesystem::path log_path() const { return work_dir_.path() / "mock_upstream.log"; }

private:
  temp_dir work_dir_;
  std::uint16_t port_ = 0;
  child_process child_;
  http_client client_;
};

} // namespace tollgate::test
