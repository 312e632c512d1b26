#include "tests/support/thread_stats.hpp"

#include <filesystem>
#include <fstream>

#include <pthread.h>
#include <unistd.h>

namespace tollgate::test {

namespace {

/// Calls `f(name, task_dir)` for each thread of `pid`.
template <class F>
void each_thread(pid_t pid, F f) {
  auto tasks = std::filesystem::path("/proc") / std::to_string(pid) / "task";
  for (const auto& task : std::filesystem::directory_iterator(tasks)) {
    std::ifstream comm(task.path() / "comm");
    std::string name;
    std::getline(comm, name);
    f(name, task.path());
  }
}

} // namespace

std::map<std::string, int> threads_by_name(pid_t pid) {
  std::map<std::string, int> names;
  each_thread(pid, [&](const std::string& name, const std::filesystem::path&) { ++names[name]; });
  return names;
}

std::string this_thread_name() {
  char name[16] = {};
  pthread_getname_np(pthread_self(), name, sizeof name);
  return name;
}

long voluntary_switches_of(std::string_view name) {
  long total = 0;
  each_thread(getpid(), [&](const std::string& thread, const std::filesystem::path& dir) {
    if (thread != name)
      return;
    std::ifstream status(dir / "status");
    for (std::string line; std::getline(status, line);)
      if (line.rfind("voluntary_ctxt_switches:", 0) == 0)
        total += std::stol(line.substr(line.find(':') + 1));
  });
  return total;
}

} // namespace tollgate::test
