#include "tests/support/child_process.hpp"

#include "tests/support/http_client.hpp"
#include "tests/support/ports.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <fstream>
#include <functional>
#include <future>
#include <iterator>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <utility>

extern char** environ;

namespace tollgate::test {

namespace {

using namespace std::chrono_literals;

/// Runs fork() on one thread that lives as long as the process: PR_SET_PDEATHSIG fires
/// when the forking *thread* ends, so forking from a short-lived test thread would kill
/// the child with it.
class fork_thread {
public:
  static fork_thread& instance() {
    // Leaked on purpose: the thread must outlive every child, until the process exits.
    static auto* self = new fork_thread;
    return *self;
  }

  template <class F>
  auto run(F task) {
    std::packaged_task<decltype(task())()> job{std::move(task)};
    auto result = job.get_future();
    {
      std::lock_guard guard{mutex_};
      jobs_.emplace_back([&job] { job(); });
    }
    ready_.notify_one();
    return result.get();
  }

private:
  fork_thread() {
    std::thread{[this] { loop(); }}.detach();
  }

  void loop() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock lock{mutex_};
        ready_.wait(lock, [this] { return !jobs_.empty(); });
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      job();
    }
  }

  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::function<void()>> jobs_;
};

/// Owns a file descriptor.
class unique_fd {
public:
  explicit unique_fd(int fd = -1)
      : fd_(fd) {}
  ~unique_fd() { reset(); }
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;

  int get() const { return fd_; }
  void reset() {
    if (fd_ >= 0)
      ::close(fd_);
    fd_ = -1;
  }

private:
  int fd_;
};

int shell_status(int wait_status) {
  if (WIFEXITED(wait_status))
    return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status))
    return 128 + WTERMSIG(wait_status);
  return -1;
}

std::string errno_text(int error) {
  return std::strerror(error);
}

std::string find_program(const std::string& name, const std::map<std::string, std::string>& env) {
  if (name.find('/') != std::string::npos)
    return name;
  std::string path = "/usr/local/bin:/usr/bin:/bin";
  if (auto it = env.find("PATH"); it != env.end())
    path = it->second;
  std::size_t start = 0;
  while (start <= path.size()) {
    auto end = path.find(':', start);
    if (end == std::string::npos)
      end = path.size();
    auto dir = path.substr(start, end - start);
    auto candidate = (dir.empty() ? std::string{"."} : dir) + "/" + name;
    struct stat info {};
    if (::stat(candidate.c_str(), &info) == 0 && S_ISREG(info.st_mode) &&
        ::access(candidate.c_str(), X_OK) == 0)
      return candidate;
    start = end + 1;
  }
  throw std::runtime_error("program not found in PATH: " + name);
}

/// The parent's environment with `overrides` applied.
std::map<std::string, std::string>
merged_environment(const std::map<std::string, std::string>& overrides) {
  std::map<std::string, std::string> result;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    std::string_view text{*entry};
    auto equals = text.find('=');
    if (equals == std::string_view::npos)
      continue;
    result.emplace(std::string{text.substr(0, equals)}, std::string{text.substr(equals + 1)});
  }
  for (const auto& [name, value] : overrides)
    result[name] = value;
  return result;
}

/// Everything the child needs after fork(), prepared before it: between fork and exec only
/// async-signal-safe calls are allowed.
struct exec_plan {
  std::string program;
  std::vector<std::string> argv_storage;
  std::vector<std::string> env_storage;
  std::vector<char*> argv;
  std::vector<char*> envp;
  std::string work_dir;
  int stdin_fd = -1;
  int log_fd = -1;
  int error_fd = -1;
  pid_t parent = 0;
};

/// Reports `error` to the parent through the exec-error pipe and ends the child.
[[noreturn]] void fail_exec(int error_fd, int error) {
  auto written = ::write(error_fd, &error, sizeof error);
  static_cast<void>(written);
  ::_exit(127);
}

[[noreturn]] void exec_child(const exec_plan& plan) {
  auto fail = [&](int error) { fail_exec(plan.error_fd, error); };
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
    fail(errno);
  if (::getppid() != plan.parent)
    ::_exit(127);
  // A process group of its own. A test may stop a child (SIGSTOP); in the test's group, a
  // stopped member makes the kernel send the whole group SIGHUP and SIGCONT when the group
  // is orphaned, which ends the other children and wakes the stopped one early.
  if (::setpgid(0, 0) != 0)
    fail(errno);
  for (int sig = 1; sig < NSIG; ++sig)
    if (sig != SIGKILL && sig != SIGSTOP)
      ::signal(sig, SIG_DFL);
  sigset_t none;
  ::sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  if (::dup2(plan.stdin_fd, STDIN_FILENO) < 0)
    fail(errno);
  if (plan.log_fd >= 0 &&
      (::dup2(plan.log_fd, STDOUT_FILENO) < 0 || ::dup2(plan.log_fd, STDERR_FILENO) < 0))
    fail(errno);
  if (!plan.work_dir.empty() && ::chdir(plan.work_dir.c_str()) != 0)
    fail(errno);
  ::execve(plan.program.c_str(), plan.argv.data(), plan.envp.data());
  fail_exec(plan.error_fd, errno);
}

} // namespace

child_process::child_process(const child_options& options) {
  spawn(options);
}

child_process::~child_process() {
  reap_or_kill();
}

child_process::child_process(child_process&& other) noexcept
    : pid_(std::exchange(other.pid_, 0))
    , reaped_(std::exchange(other.reaped_, true))
    , status_(std::exchange(other.status_, std::nullopt)) {}

child_process& child_process::operator=(child_process&& other) noexcept {
  if (this != &other) {
    reap_or_kill();
    pid_ = std::exchange(other.pid_, 0);
    reaped_ = std::exchange(other.reaped_, true);
    status_ = std::exchange(other.status_, std::nullopt);
  }
  return *this;
}

void child_process::spawn(const child_options& options) {
  if (running())
    throw std::logic_error("child_process::spawn: a child is still running");
  if (options.argv.empty())
    throw std::invalid_argument("child_process::spawn: empty argv");

  exec_plan plan;
  auto env = merged_environment(options.env);
  plan.program = find_program(options.argv.front(), env);
  plan.argv_storage = options.argv;
  for (const auto& [name, value] : env)
    plan.env_storage.push_back(name + "=" + value);
  for (auto& arg : plan.argv_storage)
    plan.argv.push_back(arg.data());
  plan.argv.push_back(nullptr);
  for (auto& entry : plan.env_storage)
    plan.envp.push_back(entry.data());
  plan.envp.push_back(nullptr);
  plan.work_dir = options.work_dir.string();
  plan.parent = ::getpid();

  unique_fd stdin_fd{::open("/dev/null", O_RDONLY | O_CLOEXEC)};
  if (stdin_fd.get() < 0)
    throw std::runtime_error("cannot open /dev/null: " + errno_text(errno));
  plan.stdin_fd = stdin_fd.get();
  unique_fd log_fd{
      options.log_file.empty()
          ? -1
          : ::open(options.log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)};
  if (!options.log_file.empty() && log_fd.get() < 0)
    throw std::runtime_error("cannot open " + options.log_file.string() + ": " + errno_text(errno));
  plan.log_fd = log_fd.get();
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0)
    throw std::runtime_error("pipe2 failed: " + errno_text(errno));
  unique_fd error_read{pipe_fds[0]};
  unique_fd error_write{pipe_fds[1]};
  plan.error_fd = error_write.get();

  auto [child, fork_error] = fork_thread::instance().run([&plan]() -> std::pair<pid_t, int> {
    auto pid = ::fork();
    if (pid == 0)
      exec_child(plan);
    return {pid, errno};
  });
  if (child < 0)
    throw std::runtime_error("fork failed: " + errno_text(fork_error));
  error_write.reset();

  // The pipe closes on a successful exec (O_CLOEXEC), or carries errno when it failed.
  int exec_error = 0;
  ssize_t got = 0;
  do {
    got = ::read(error_read.get(), &exec_error, sizeof exec_error);
  } while (got < 0 && errno == EINTR);
  if (got > 0) {
    int ignored = 0;
    ::waitpid(child, &ignored, 0);
    throw std::runtime_error("cannot start " + plan.program + ": " + errno_text(exec_error));
  }
  pid_ = child;
  reaped_ = false;
  status_.reset();
}

bool child_process::running() {
  if (reaped_)
    return false;
  int wait_status = 0;
  auto result = ::waitpid(pid_, &wait_status, WNOHANG);
  if (result == 0)
    return true;
  reaped_ = true;
  status_ = result == pid_ ? shell_status(wait_status) : -1;
  return false;
}

std::optional<int> child_process::wait_for(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (running()) {
    if (std::chrono::steady_clock::now() >= deadline)
      return std::nullopt;
    std::this_thread::sleep_for(5ms);
  }
  return status_;
}

int child_process::terminate(std::chrono::milliseconds grace) {
  send_signal(SIGTERM);
  if (auto status = wait_for(grace))
    return *status;
  return kill();
}

int child_process::kill() {
  if (!reaped_) {
    ::kill(pid_, SIGKILL);
    int wait_status = 0;
    pid_t result = 0;
    do {
      result = ::waitpid(pid_, &wait_status, 0);
    } while (result < 0 && errno == EINTR);
    reaped_ = true;
    status_ = result == pid_ ? shell_status(wait_status) : -1;
  }
  return status_.value_or(-1);
}

void child_process::send_signal(int signal) {
  if (running())
    ::kill(pid_, signal);
}

void child_process::reap_or_kill() noexcept {
  if (!reaped_)
    kill();
}

std::string tail_lines(const std::filesystem::path& file, std::size_t count) {
  std::ifstream in{file, std::ios::binary};
  if (!in)
    return {};
  std::deque<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    lines.push_back(std::move(line));
    if (lines.size() > count)
      lines.pop_front();
  }
  std::string out;
  for (const auto& line : lines)
    out += line + "\n";
  return out;
}

http_wait_result wait_for_http_ok(child_process& child, const std::string& url,
                                  std::chrono::milliseconds timeout) {
  http_client client{url};
  client.timeouts(1s, 5s);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string last_error = "no attempt";
  for (;;) {
    if (!child.running())
      return {http_wait_outcome::child_exited,
              "exited with status " + std::to_string(child.exit_status().value_or(-1))};
    try {
      auto response = client.get("");
      if (response.status == 200)
        return {http_wait_outcome::ready, {}};
      last_error = "status " + std::to_string(response.status) + ": " + response.body;
    } catch (const std::exception& error) {
      last_error = error.what();
    }
    if (std::chrono::steady_clock::now() >= deadline)
      return {http_wait_outcome::timed_out, last_error};
    std::this_thread::sleep_for(20ms);
  }
}

std::uint16_t
spawn_on_free_port(child_process& child, child_options options,
                   const std::function<std::vector<std::string>(std::uint16_t port)>& argv_for,
                   const std::string& health_path, const std::string& what) {
  constexpr int attempts = 3;
  constexpr std::size_t log_tail = 40;
  const auto& log = options.log_file;
  std::string failure;
  for (int attempt = 1; attempt <= attempts; ++attempt) {
    auto port = free_loopback_port();
    options.argv = argv_for(port);
    auto log_size = std::filesystem::exists(log) ? std::filesystem::file_size(log) : 0;
    child.spawn(options);
    auto waited = wait_for_http_ok(child, "http://127.0.0.1:" + std::to_string(port) + health_path,
                                   std::chrono::seconds{20});
    if (waited.outcome == http_wait_outcome::ready)
      return port;
    child.kill();
    failure = what + " did not come up (" + waited.detail + ")";
    if (waited.outcome != http_wait_outcome::child_exited)
      break;
    std::ifstream in{log, std::ios::binary};
    in.seekg(static_cast<std::streamoff>(log_size));
    std::string added{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    if (added.find("in use") == std::string::npos)
      break;
  }
  throw std::runtime_error(failure + "; last lines of " + log.string() + ":\n" +
                           tail_lines(log, log_tail));
}

} // namespace tollgate::test
