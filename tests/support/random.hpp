#pragma once

#include <cstddef>
#include <string>

namespace tollgate::test {

/// Returns `bytes` random bytes as lower-case hex (2 * bytes characters).
std::string random_hex(std::size_t bytes);

} // namespace tollgate::test
