#pragma once

#include <string_view>

namespace tollgate::test {

/// Voluntary thread switches (waits for work) that the threads of this process named `name`
/// (as /proc/self/task/*/comm shows it) have made so far.
long voluntary_switches_of(std::string_view name);

} // namespace tollgate::test
