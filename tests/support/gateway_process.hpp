#pragma once

#include "tests/support/child_process.hpp"
#include "tests/support/http_client.hpp"
#include "tests/support/temp_dir.hpp"

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace tollgate::test {

/// How to run the gateway under test.
struct gateway_options {
  /// Extra command-line flags, passed after the harness's own.
  std::vector<std::string> args{};
  /// Added to the parent's environment (TOLLGATE_ADMIN_KEY here replaces the random one).
  std::map<std::string, std::string> env{};
  /// If non-empty: written to <work_dir>/tollgate.json and passed with --config.
  std::string config_json{};
  /// --database; empty: sqlite://<work_dir>/data/tollgate.db.
  std::string database_url{};
  /// The executable; empty: env TOLLGATE_BINARY (set by CTest).
  std::string binary{};
  /// How long start() waits for GET /health to answer 200.
  std::chrono::milliseconds start_timeout{std::chrono::seconds{30}};
};

/// The real tollgate binary as a child process, in a fresh work dir, on a free loopback
/// port: `tollgate --listen 127.0.0.1:<port> --data-dir <work_dir>/data --database <url>
/// [--config <work_dir>/tollgate.json] <args...>`, output in <work_dir>/tollgate.log.
/// The destructor stops it (and prints the log's tail if the current test failed).
class gateway_process {
public:
  /// Prepares the work dir; does not start the process.
  explicit gateway_process(gateway_options options = {});
  ~gateway_process();

  gateway_process(const gateway_process&) = delete;
  gateway_process& operator=(const gateway_process&) = delete;

  /// Launches and waits until GET /health answers 200; throws with the log's tail if not.
  void start();
  /// SIGTERM, SIGKILL after 15 s; returns the shell-style exit status (-1 if never started).
  int stop();
  /// SIGKILL; returns the exit status.
  int kill();
  /// stop() then start() with the same port, work dir and data (a new port if it was taken).
  void restart();

  /// "http://127.0.0.1:<port>".
  std::string base_url() const;
  std::uint16_t port() const { return port_; }
  const std::string& admin_key() const { return admin_key_; }
  const std::string& database_url() const { return database_url_; }
  const std::filesystem::path& work_dir() const { return work_dir_.path(); }
  std::filesystem::path log_path() const { return work_dir() / "tollgate.log"; }
  /// The whole log so far (all starts).
  std::string log() const;
  pid_t pid() const { return child_.pid(); }
  bool running() { return child_.running(); }

  /// A new client for base_url() (no credentials set).
  http_client client() const { return http_client{base_url()}; }

private:
  std::vector<std::string> command_line() const;
  std::string log_since(std::uintmax_t offset) const;

  gateway_options options_;
  temp_dir work_dir_;
  std::string binary_;
  std::string admin_key_;
  std::string database_url_;
  std::map<std::string, std::string> env_;
  std::uint16_t port_ = 0;
  child_process child_;
  int uncaught_at_construction_ = 0;
};

} // namespace tollgate::test
