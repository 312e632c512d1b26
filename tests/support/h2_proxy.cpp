#include "tests/support/h2_proxy.hpp"

#include "tests/support/ports.hpp"

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

h2_proxy::h2_proxy(std::uint16_t backend_port)
    : work_dir_("tollgate-h2")
    , certificates_(make_test_certificates(work_dir_.path())) {
  // The plain port is the one spawn_on_free_port probes and retries on.
  spawn_on_free_port(
      child_, {{}, {}, log_path(), work_dir_.path()},
      [&](std::uint16_t plain_port) {
        tls_port_ = free_loopback_port();
        return std::vector<std::string>{
            nghttpx_binary(),
            "--conf=/dev/null", // not the machine's /etc/nghttpx/nghttpx.conf
            "--frontend=127.0.0.1," + std::to_string(tls_port_),
            "--frontend=127.0.0.1," + std::to_string(plain_port) + ";no-tls",
            "--backend=127.0.0.1," + std::to_string(backend_port),
            "--workers=1",
            "--no-ocsp",
            "--backend-read-timeout=10m",
            "--frontend-read-timeout=10m",
            "--frontend-http2-read-timeout=10m",
            certificates_.key.string(),
            certificates_.certificate.string()};
      },
      "/health", "nghttpx");
}

h2_proxy::~h2_proxy() {
  try {
    child_.terminate(std::chrono::seconds{5});
  } catch (...) {
    // child_process's destructor kills it anyway.
  }
}

std::string h2_proxy::base_url() const {
  return "https://127.0.0.1:" + std::to_string(tls_port_) + "/v1";
}

std::set<unsigned> h2_proxy::client_ports() const {
  // Lines: "sl local_address rem_address st ...", addresses as HEXIP:HEXPORT; st 01 is
  // ESTABLISHED. The proxy's end of an accepted connection has the TLS port as its local port.
  std::ifstream table{"/proc/net/tcp"};
  std::string line;
  std::getline(table, line); // the header
  std::set<unsigned> ports;
  while (std::getline(table, line)) {
    std::istringstream fields{line};
    std::string slot, local, remote, state;
    fields >> slot >> local >> remote >> state;
    auto colon = local.find(':');
    auto remote_colon = remote.find(':');
    if (colon == std::string::npos || remote_colon == std::string::npos || state != "01")
      continue;
    if (std::stoul(local.substr(colon + 1), nullptr, 16) == tls_port_)
      ports.insert(static_cast<unsigned>(std::stoul(remote.substr(remote_colon + 1), nullptr, 16)));
  }
  return ports;
}

} // namespace tollgate::test
