#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace tollgate::test {

/// What to run and how.
struct child_options {
  /// argv[0] is the program: a path, or a name looked up in PATH.
  std::vector<std::string> argv{};
  /// Set on top of the parent's environment (replacing the parent's value of a name).
  std::map<std::string, std::string> env{};
  /// stdout and stderr are appended to this file; empty: shared with the parent.
  std::filesystem::path log_file{};
  /// The child's working directory; empty: the parent's.
  std::filesystem::path work_dir{};
};

/// A child process that cannot outlive the test: it gets SIGKILL when the test process dies
/// (PR_SET_PDEATHSIG) and when this object is destroyed while it still runs. It leads a
/// process group of its own, so stopping it (SIGSTOP) touches nothing else. stdin is
/// /dev/null. Exit statuses are shell-style: the exit code, or 128 + the signal number.
class child_process {
public:
  child_process() = default;
  /// Spawns at once; throws std::runtime_error if the program cannot be started.
  explicit child_process(const child_options& options);
  ~child_process();

  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;
  child_process(child_process&& other) noexcept;
  child_process& operator=(child_process&& other) noexcept;

  /// Starts the program; throws if this object already runs one or exec fails.
  void spawn(const child_options& options);

  /// Process id of the current or last child; 0 before the first spawn.
  pid_t pid() const { return pid_; }

  /// True while the child runs; reaps it when it has exited.
  bool running();

  /// The exit status once the child has been reaped.
  std::optional<int> exit_status() const { return status_; }

  /// Waits up to `timeout` for the child to end; its exit status, or nullopt if it still runs.
  std::optional<int> wait_for(std::chrono::milliseconds timeout);

  /// SIGTERM, then SIGKILL if it has not ended after `grace`; returns the exit status
  /// (-1 if nothing was ever spawned).
  int terminate(std::chrono::milliseconds grace = std::chrono::seconds{15});

  /// SIGKILL and reap; returns the exit status (-1 if nothing was ever spawned).
  int kill();

  /// Sends `signal` if the child runs.
  void send_signal(int signal);

private:
  void reap_or_kill() noexcept;

  pid_t pid_ = 0;
  bool reaped_ = true;
  std::optional<int> status_;
};

/// The last `count` lines of a text file ("" when it cannot be read).
std::string tail_lines(const std::filesystem::path& file, std::size_t count);

/// How wait_for_http_ok ended.
enum class http_wait_outcome { ready, child_exited, timed_out };

/// wait_for_http_ok's outcome and, unless ready, the last error seen.
struct http_wait_result {
  http_wait_outcome outcome = http_wait_outcome::timed_out;
  std::string detail;
};

/// Polls GET `url` every 20 ms until it answers 200, `child` exits or `timeout` passes.
http_wait_result wait_for_http_ok(child_process& child, const std::string& url,
                                  std::chrono::milliseconds timeout);

/// Starts the HTTP server `options` (its argv made by `argv_for(port)`) on a free loopback
/// port and waits until GET http://127.0.0.1:<port>`health_path` answers 200. If the child
/// exits saying its port is in use (another process took it between the probe and the
/// bind), it tries another port, three times in all. Returns the port; throws naming `what`,
/// with the last lines of the log, if the server does not come up.
std::uint16_t
spawn_on_free_port(child_process& child, child_options options,
                   const std::function<std::vector<std::string>(std::uint16_t port)>& argv_for,
                   const std::string& health_path, const std::string& what);

} // namespace tollgate::test
