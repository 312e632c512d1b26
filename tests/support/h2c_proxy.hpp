#pragma once

#include "tests/support/child_process.hpp"
#include "tests/support/temp_dir.hpp"

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

namespace tollgate::test {

/// nghttpx (Debian's nghttp2-proxy) on a free loopback port in front of an HTTP/1.1 server
/// on `backend_port`: it accepts HTTP/2 without TLS (h2c, prior knowledge) as well as
/// HTTP/1.1, and forwards every request to the backend over HTTP/1.1, adding `via: 2 nghttpx`
/// to those that came over HTTP/2 (`via: 1.1 nghttpx` to the others). It stands for an
/// upstream that speaks HTTP/2, as providers' edges do. Ready (GET /health through it
/// answers 200) once constructed; stopped by the destructor.
class h2c_proxy {
public:
  explicit h2c_proxy(std::uint16_t backend_port);
  ~h2c_proxy();

  h2c_proxy(const h2c_proxy&) = delete;
  h2c_proxy& operator=(const h2c_proxy&) = delete;

  /// "http://127.0.0.1:<port>/v1": what a provider's base URL points at.
  std::string base_url() const;
  std::uint16_t port() const { return port_; }

  /// TCP connections the proxy has accepted and not yet closed, from /proc/net/tcp.
  std::size_t client_connections() const;

  std::filesystem::path log_path() const { return work_dir_.path() / "nghttpx.log"; }

private:
  temp_dir work_dir_;
  std::uint16_t port_ = 0;
  child_process child_;
};

} // namespace tollgate::test
