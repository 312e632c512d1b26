#include "tests/support/ports.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>

namespace tollgate::test {

namespace {

/// Binds a fresh socket to 127.0.0.1:`port`; returns the bound port, or 0 if bind failed.
std::uint16_t bind_loopback(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    throw std::runtime_error(std::string{"socket failed: "} + std::strerror(errno));
  int on = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(port);
  std::uint16_t bound = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) {
    socklen_t length = sizeof address;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0)
      bound = ntohs(address.sin_port);
  }
  ::close(fd);
  return bound;
}

} // namespace

std::uint16_t free_loopback_port() {
  // The kernel may hand the same port to two binds in a row once the first socket is
  // closed: a gateway's HTTP and cluster ports once came out equal. No port is given twice.
  static std::mutex mutex;
  static std::set<std::uint16_t> given;
  std::lock_guard lock(mutex);
  for (int attempt = 0; attempt < 1000; ++attempt) {
    auto port = bind_loopback(0);
    if (port == 0)
      throw std::runtime_error("cannot bind 127.0.0.1:0");
    if (given.insert(port).second)
      return port;
  }
  throw std::runtime_error("no loopback port that was not handed out before");
}

bool loopback_port_free(std::uint16_t port) {
  return port != 0 && bind_loopback(port) == port;
}

} // namespace tollgate::test
