#pragma once

#include "tests/support/child_process.hpp"
#include "tests/support/temp_dir.hpp"
#include "tests/support/test_certificates.hpp"

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <set>
#include <string>

namespace tollgate::test {

/// nghttpx (Debian's nghttp2-proxy) in front of an HTTP/1.1 server on `backend_port`, as a
/// provider's edge: HTTPS on one free loopback port, where TLS (ALPN) chooses HTTP/2 unless
/// the client asks for HTTP/1.1, and plain HTTP/1.1 on another. It forwards every request to
/// the backend over HTTP/1.1 and adds `via: 2 nghttpx` to those that came over HTTP/2
/// (`via: 1.1 nghttpx` to the others). Its certificate is for 127.0.0.1, signed by a CA of
/// its own (ca_file()). Ready (GET /health through it answers 200) once constructed;
/// stopped by the destructor.
class h2_proxy {
public:
  explicit h2_proxy(std::uint16_t backend_port);
  ~h2_proxy();

  h2_proxy(const h2_proxy&) = delete;
  h2_proxy& operator=(const h2_proxy&) = delete;

  /// "https://127.0.0.1:<tls port>/v1": what a provider's base URL points at.
  std::string base_url() const;
  /// The CA that signed the proxy's certificate: what the provider's `tls_ca` names.
  const std::filesystem::path& ca_file() const { return certificates_.ca; }

  /// TCP connections accepted on the TLS port and not yet closed, from /proc/net/tcp.
  std::size_t client_connections() const { return client_ports().size(); }
  /// The client's port of each of them, each once: the kernel writes /proc/net/tcp a page per
  /// read, so a socket can be listed twice while connections open and close around it.
  std::set<unsigned> client_ports() const;

  std::filesystem::path log_path() const { return work_dir_.path() / "nghttpx.log"; }

private:
  temp_dir work_dir_;
  test_certificates certificates_;
  std::uint16_t tls_port_ = 0;
  child_process child_;
};

} // namespace tollgate::test
