#pragma once

#include <cstdint>

namespace tollgate::test {

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, read, closed), and
/// that this process was not given before.
std::uint16_t free_loopback_port();

/// True if 127.0.0.1:`port` can be bound now (with SO_REUSEADDR, as servers do).
bool loopback_port_free(std::uint16_t port);

} // namespace tollgate::test
