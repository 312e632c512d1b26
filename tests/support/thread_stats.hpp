#pragma once

#include <map>
#include <string>
#include <string_view>

#include <sys/types.h>

namespace tollgate::test {

/// The threads of process `pid`, counted by name (as /proc/PID/task/*/comm shows it).
std::map<std::string, int> threads_by_name(pid_t pid);

/// The name of the calling thread (at most 15 characters).
std::string this_thread_name();

/// Voluntary thread switches (waits for work) that the threads of this process named `name`
/// have made so far.
long voluntary_switches_of(std::string_view name);

} // namespace tollgate::test
