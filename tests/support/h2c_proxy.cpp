#include "tests/support/h2c_proxy.hpp"

#include <chrono>
#include <fstream>
#include <sstream>
#include <vector>

namespace tollgate::test {

namespace {

/// Debian installs nghttpx in /usr/sbin, which a non-root PATH may lack.
std::string nghttpx_binary() {
  const std::filesystem::path installed{"/usr/sbin/nghttpx"};
  return std::filesystem::exists(installed) ? installed.string() : "nghttpx";
}

} // namespace

h2c_proxy::h2c_proxy(std::uint16_t backend_port)
    : work_dir_("tollgate-h2c") {
  auto backend = "--backend=127.0.0.1," + std::to_string(backend_port);
  port_ = spawn_on_free_port(
      child_, {{}, {}, log_path(), work_dir_.path()},
      [&](std::uint16_t port) {
        return std::vector<std::string>{
            nghttpx_binary(),
            // Not the machine's /etc/nghttpx/nghttpx.conf.
            "--conf=/dev/null", "--frontend=127.0.0.1," + std::to_string(port) + ";no-tls", backend,
            "--workers=1", "--backend-read-timeout=10m", "--frontend-read-timeout=10m",
            "--frontend-http2-read-timeout=10m"};
      },
      "/health", "nghttpx");
}

h2c_proxy::~h2c_proxy() {
  try {
    child_.terminate(std::chrono::seconds{5});
  } catch (...) {
    // child_process's destructor kills it anyway.
  }
}

std::string h2c_proxy::base_url() const {
  return "http://127.0.0.1:" + std::to_string(port_) + "/v1";
}

std::size_t h2c_proxy::client_connections() const {
  // Lines: "sl local_address rem_address st ...", addresses as HEXIP:HEXPORT; st 01 is
  // ESTABLISHED. The proxy's end of an accepted connection has our port as its local port.
  std::ifstream table{"/proc/net/tcp"};
  std::string line;
  std::getline(table, line); // the header
  std::size_t count = 0;
  while (std::getline(table, line)) {
    std::istringstream fields{line};
    std::string slot, local, remote, state;
    fields >> slot >> local >> remote >> state;
    auto colon = local.find(':');
    if (colon == std::string::npos || state != "01")
      continue;
    if (std::stoul(local.substr(colon + 1), nullptr, 16) == port_)
      ++count;
  }
  return count;
}

} // namespace tollgate::test
