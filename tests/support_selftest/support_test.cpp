#include "tests/support/child_process.hpp"
#include "tests/support/gateway_process.hpp"
#include "tests/support/http_client.hpp"
#include "tests/support/live_services.hpp"
#include "tests/support/ports.hpp"
#include "tests/support/random.hpp"
#include "tests/support/temp_dir.hpp"

#include <boost/test/unit_test.hpp>
#include <soci/postgresql/soci-postgresql.h>
#include <soci/soci.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

using namespace tollgate::test;
using namespace std::chrono_literals;

namespace {

/// One script, two roles. `echo`: answers every request with a JSON echo of it.
/// Otherwise it mimics the tollgate binary: takes --listen etc., serves /health and
/// /args (argv, cwd, admin key, config), and exits 0 on SIGTERM.
constexpr const char* fake_server_py = R"py(#!/usr/bin/env python3
import json, os, signal, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

echo_mode = sys.argv[1] == "echo"

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, status, payload, content_type="application/json"):
        data = payload.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("X-Echo", "one")
        self.send_header("X-Echo", "two")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def handle_any(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        if self.path.startswith("/status/"):
            self.reply(int(self.path.split("/")[2]), "plain text", "text/plain")
            return
        if not echo_mode:
            if self.path == "/health":
                self.reply(200, '{"status":"ok"}')
                return
            if self.path == "/args":
                config = None
                if "--config" in sys.argv:
                    with open(sys.argv[sys.argv.index("--config") + 1]) as f:
                        config = f.read()
                self.reply(200, json.dumps({
                    "argv": sys.argv[1:], "cwd": os.getcwd(), "config": config,
                    "admin_key": os.environ.get("TOLLGATE_ADMIN_KEY"),
                    "extra": os.environ.get("FAKE_EXTRA")}))
                return
        self.reply(200, json.dumps({
            "method": self.command, "path": self.path, "body": body,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "client_port": self.client_address[1]}))

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = handle_any

if echo_mode:
    host, port = "127.0.0.1", int(sys.argv[2])
else:
    host, port = sys.argv[sys.argv.index("--listen") + 1].rsplit(":", 1)
    port = int(port)
    if "--fail-start" in sys.argv:
        print("fatal: cannot open database", flush=True)
        sys.exit(2)
    if "--busy-once" in sys.argv:
        marker = sys.argv[sys.argv.index("--busy-once") + 1]
        if not os.path.exists(marker):
            open(marker, "w").close()
            print(f"listen on {host}:{port}: Address already in use", flush=True)
            sys.exit(1)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))

server = ThreadingHTTPServer((host, port), Handler)
print(f"fake server listening on {host}:{port}", flush=True)
server.serve_forever()
)py";

/// Writes the fake server script into `dir`, executable; returns its path.
std::filesystem::path write_fake_server(const temp_dir& dir) {
  auto path = dir / "fake_server.py";
  std::ofstream{path} << fake_server_py;
  std::filesystem::permissions(path, std::filesystem::perms::owner_all);
  return path;
}

/// The echo role of the fake server, running until destroyed.
struct echo_server {
  temp_dir dir{"tollgate-echo"};
  std::uint16_t port = free_loopback_port();
  child_process process;

  echo_server() {
    auto script = write_fake_server(dir);
    process.spawn({{"python3", script.string(), "echo", std::to_string(port)},
                   {},
                   dir / "server.log",
                   dir.path()});
    auto waited = wait_for_http_ok(process, base_url() + "/ready", 30s);
    BOOST_REQUIRE_MESSAGE(waited.outcome == http_wait_outcome::ready,
                          "echo server did not start: " << waited.detail << "\n"
                                                        << tail_lines(dir / "server.log", 40));
  }

  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port); }
};

std::string read_text(const std::filesystem::path& file) {
  std::ifstream in{file};
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

/// Sets an environment variable for one scope.
struct scoped_env {
  std::string name;
  scoped_env(std::string variable, const std::string& value)
      : name(std::move(variable)) {
    ::setenv(name.c_str(), value.c_str(), 1);
  }
  ~scoped_env() { ::unsetenv(name.c_str()); }
};

} // namespace

BOOST_AUTO_TEST_SUITE(test_support)

BOOST_AUTO_TEST_CASE(random_hex_has_the_asked_length_and_differs) {
  auto first = random_hex(16);
  BOOST_TEST(first.size() == 32u);
  BOOST_TEST(first.find_first_not_of("0123456789abcdef") == std::string::npos);
  BOOST_TEST(random_hex(16) != first);
  BOOST_TEST(random_hex(0).empty());
}

BOOST_AUTO_TEST_CASE(temp_dir_is_removed_unless_kept) {
  std::filesystem::path path;
  {
    temp_dir dir;
    path = dir.path();
    BOOST_TEST(std::filesystem::is_directory(path));
    std::filesystem::create_directories(dir / "a" / "b");
    std::ofstream{dir / "a" / "b" / "file"} << "x";
  }
  BOOST_TEST(!std::filesystem::exists(path));
  {
    scoped_env keep{"TOLLGATE_KEEP_TEST_DIRS", "1"};
    temp_dir dir;
    path = dir.path();
  }
  BOOST_TEST(std::filesystem::is_directory(path));
  std::filesystem::remove_all(path);
  {
    scoped_env keep{"TOLLGATE_KEEP_TEST_DIRS", "0"};
    temp_dir dir;
    path = dir.path();
  }
  BOOST_TEST(!std::filesystem::exists(path));
}

BOOST_AUTO_TEST_CASE(free_loopback_port_is_bindable) {
  auto port = free_loopback_port();
  BOOST_TEST(port > 0);
  BOOST_TEST(loopback_port_free(port));
  BOOST_TEST(!loopback_port_free(0));
}

BOOST_AUTO_TEST_CASE(child_process_captures_output_env_cwd_and_status) {
  temp_dir dir;
  auto log = dir / "child.log";
  child_process child{{{"sh", "-c", "echo out=$GREETING; echo err >&2; pwd; exit 3"},
                       {{"GREETING", "hello"}},
                       log,
                       dir.path()}};
  BOOST_TEST(child.pid() > 0);
  auto status = child.wait_for(10s);
  BOOST_REQUIRE(status.has_value());
  BOOST_TEST(*status == 3);
  BOOST_TEST(!child.running());
  auto text = read_text(log);
  BOOST_TEST(text.find("out=hello\n") != std::string::npos);
  BOOST_TEST(text.find("err\n") != std::string::npos);
  BOOST_TEST(text.find(std::filesystem::canonical(dir.path()).string()) != std::string::npos);
  BOOST_TEST(tail_lines(log, 1) == std::filesystem::canonical(dir.path()).string() + "\n");
}

BOOST_AUTO_TEST_CASE(child_process_terminate_and_kill) {
  child_process sleeper{{{"sleep", "30"}}};
  BOOST_TEST(sleeper.running());
  BOOST_TEST(sleeper.terminate(5s) == 128 + SIGTERM);
  BOOST_TEST(!sleeper.running());

  // Ignores SIGTERM, so terminate falls back to SIGKILL after the grace period.
  child_process stubborn{{{"sh", "-c", "trap '' TERM; while :; do sleep 1; done"}}};
  std::this_thread::sleep_for(200ms);
  auto started = std::chrono::steady_clock::now();
  BOOST_TEST(stubborn.terminate(300ms) == 128 + SIGKILL);
  BOOST_TEST((std::chrono::steady_clock::now() - started < 5s));

  child_process victim{{{"sleep", "30"}}};
  BOOST_TEST(victim.kill() == 128 + SIGKILL);
  BOOST_TEST(victim.kill() == 128 + SIGKILL);
  BOOST_TEST(child_process{}.kill() == -1);
}

BOOST_AUTO_TEST_CASE(child_process_reports_exec_failures) {
  BOOST_CHECK_THROW(child_process{{{"/nonexistent/program"}}}, std::runtime_error);
  BOOST_CHECK_THROW(child_process{{{"no-such-program-tollgate"}}}, std::runtime_error);
  temp_dir dir;
  BOOST_CHECK_THROW((child_process{{{"true"}, {}, {}, dir / "missing"}}), std::runtime_error);
}

BOOST_AUTO_TEST_CASE(child_process_started_from_a_short_lived_thread_survives_it) {
  child_process child;
  std::thread{[&] { child.spawn({{"sleep", "30"}}); }}.join();
  std::this_thread::sleep_for(100ms);
  BOOST_TEST(child.running());
  child.kill();
}

BOOST_AUTO_TEST_CASE(http_client_methods_bodies_and_headers) {
  echo_server server;
  http_client client{server.base_url()};

  auto got = client.get("/items?x=1");
  BOOST_TEST(got.status == 200);
  BOOST_TEST(got.header("Content-Type") == "application/json");
  BOOST_TEST(got.headers.count("content-type") == 1u);
  BOOST_TEST(got.header("x-echo") == "one, two");
  BOOST_TEST(got.header("x-missing") == "");
  auto echo = got.json();
  BOOST_TEST(echo["method"] == "GET");
  BOOST_TEST(echo["path"] == "/items?x=1");
  BOOST_TEST(!echo["headers"].contains("content-type"));
  BOOST_TEST(!echo["headers"].contains("authorization"));

  echo = client.post("/v1/things", R"({"a":1})").json();
  BOOST_TEST(echo["method"] == "POST");
  BOOST_TEST(echo["body"] == R"({"a":1})");
  BOOST_TEST(echo["headers"]["content-type"] == "application/json");
  BOOST_TEST(!echo["headers"].contains("expect"));

  echo = client.post("/empty", "").json();
  BOOST_TEST(echo["body"] == "");
  BOOST_TEST(!echo["headers"].contains("content-type"));

  echo = client.post("/text", "plain", {{"Content-Type", "text/plain"}, {"X-Extra", "1"}}).json();
  BOOST_TEST(echo["headers"]["content-type"] == "text/plain");
  BOOST_TEST(echo["headers"]["x-extra"] == "1");

  echo = client.patch("/p", R"({"b":2})").json();
  BOOST_TEST(echo["method"] == "PATCH");
  BOOST_TEST(echo["body"] == R"({"b":2})");
  echo = client.put("/p", "{}").json();
  BOOST_TEST(echo["method"] == "PUT");
  echo = client.del("/d/1").json();
  BOOST_TEST(echo["method"] == "DELETE");
  echo = client.request("OPTIONS", "/o", "", {}).json();
  BOOST_TEST(echo["method"] == "OPTIONS");

  auto head = client.request("HEAD", "/h", "", {});
  BOOST_TEST(head.status == 200);
  BOOST_TEST(head.body.empty());

  echo = client.get(server.base_url() + "/absolute").json();
  BOOST_TEST(echo["path"] == "/absolute");
}

BOOST_AUTO_TEST_CASE(http_client_bearer_and_status_codes) {
  echo_server server;
  http_client client{server.base_url() + "/"};
  client.bearer("sk-test");
  auto echo = client.get("/me").json();
  BOOST_TEST(echo["headers"]["authorization"] == "Bearer sk-test");
  echo = client.get("/me", {{"authorization", "Bearer other"}}).json();
  BOOST_TEST(echo["headers"]["authorization"] == "Bearer other");
  client.bearer("");
  echo = client.get("/me").json();
  BOOST_TEST(!echo["headers"].contains("authorization"));

  auto missing = client.get("/status/404");
  BOOST_TEST(missing.status == 404);
  BOOST_TEST(missing.body == "plain text");
  try {
    static_cast<void>(missing.json());
    BOOST_FAIL("json() should throw on a non-JSON body");
  } catch (const std::runtime_error& error) {
    std::string message = error.what();
    BOOST_TEST(message.find("404") != std::string::npos);
    BOOST_TEST(message.find("plain text") != std::string::npos);
  }
  BOOST_TEST(client.post("/status/503", "{}").status == 503);
}

BOOST_AUTO_TEST_CASE(http_client_keeps_the_connection_alive) {
  echo_server server;
  http_client client{server.base_url()};
  auto first = client.get("/one").json()["client_port"];
  auto second = client.post("/two", "{}").json()["client_port"];
  BOOST_TEST(client.get("/status/404").status == 404);
  auto fourth = client.get("/four").json()["client_port"];
  BOOST_TEST(first == second);
  BOOST_TEST(first == fourth);
  BOOST_TEST(http_client{server.base_url()}.get("/x").json()["client_port"] != first);
}

BOOST_AUTO_TEST_CASE(http_client_one_per_thread) {
  echo_server server;
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      http_client client{server.base_url()};
      for (int i = 0; i < 20; ++i) {
        auto body = std::to_string(t * 100 + i);
        if (client.post("/n", body).json()["body"] == body)
          ++ok;
      }
    });
  for (auto& thread : threads)
    thread.join();
  BOOST_TEST(ok.load() == 80);
}

BOOST_AUTO_TEST_CASE(http_client_transport_errors_throw_with_curls_message) {
  http_client client{"http://127.0.0.1:" + std::to_string(free_loopback_port())};
  try {
    client.get("/health");
    BOOST_FAIL("expected a connection error");
  } catch (const std::runtime_error& error) {
    std::string message = error.what();
    BOOST_TEST_MESSAGE(message);
    BOOST_TEST(message.find("GET http://127.0.0.1:") != std::string::npos);
    BOOST_TEST(message.find("failed: ") != std::string::npos);
  }
}

BOOST_AUTO_TEST_CASE(gateway_process_runs_the_binary_with_the_harness_flags) {
  temp_dir scripts;
  auto script = write_fake_server(scripts);
  std::filesystem::path work;
  {
    gateway_process gateway{{.args = {"--log-level", "debug"},
                             .env = {{"FAKE_EXTRA", "yes"}},
                             .config_json = R"({"models":[]})",
                             .binary = script.string()}};
    work = gateway.work_dir();
    BOOST_TEST(std::filesystem::is_directory(work / "data"));
    BOOST_TEST(gateway.admin_key().starts_with("tg-admin-"));
    BOOST_TEST(!gateway.running());
    gateway.start();
    BOOST_TEST(gateway.running());
    BOOST_TEST(gateway.pid() > 0);
    BOOST_TEST(gateway.port() > 0);
    BOOST_TEST(gateway.base_url() == "http://127.0.0.1:" + std::to_string(gateway.port()));

    auto args = gateway.client().get("/args").json();
    std::vector<std::string> argv = args["argv"];
    std::vector<std::string> expected{
        "--listen",    "127.0.0.1:" + std::to_string(gateway.port()),
        "--data-dir",  (work / "data").string(),
        "--database",  "sqlite://" + (work / "data" / "tollgate.db").string(),
        "--config",    (work / "tollgate.json").string(),
        "--log-level", "debug"};
    BOOST_TEST(argv == expected, boost::test_tools::per_element());
    BOOST_TEST(args["cwd"] == std::filesystem::canonical(work).string());
    BOOST_TEST(args["config"] == R"({"models":[]})");
    BOOST_TEST(args["admin_key"] == gateway.admin_key());
    BOOST_TEST(args["extra"] == "yes");
    BOOST_TEST(gateway.log().find("fake server listening") != std::string::npos);

    auto port = gateway.port();
    auto first_pid = gateway.pid();
    gateway.restart();
    BOOST_TEST(gateway.port() == port);
    BOOST_TEST(gateway.pid() != first_pid);
    BOOST_TEST(gateway.client().get("/health").status == 200);

    BOOST_TEST(gateway.stop() == 0);
    BOOST_TEST(!gateway.running());
    gateway.start();
    BOOST_TEST(gateway.kill() == 128 + SIGKILL);
    gateway.start();
  }
  BOOST_TEST(!std::filesystem::exists(work));
}

BOOST_AUTO_TEST_CASE(gateway_process_given_admin_key_and_database) {
  temp_dir scripts;
  auto script = write_fake_server(scripts);
  gateway_process gateway{{.env = {{"TOLLGATE_ADMIN_KEY", "tg-admin-fixed"}},
                           .database_url = "postgresql://u@127.0.0.1:1/db",
                           .binary = script.string()}};
  gateway.start();
  BOOST_TEST(gateway.admin_key() == "tg-admin-fixed");
  auto args = gateway.client().get("/args").json();
  BOOST_TEST(args["admin_key"] == "tg-admin-fixed");
  BOOST_TEST(args["config"].is_null());
  std::vector<std::string> argv = args["argv"];
  BOOST_REQUIRE(argv.size() == 6u);
  BOOST_TEST(argv[5] == "postgresql://u@127.0.0.1:1/db");
}

BOOST_AUTO_TEST_CASE(gateway_process_restart_moves_off_a_taken_port) {
  temp_dir scripts;
  auto script = write_fake_server(scripts);
  gateway_process gateway{{.binary = script.string()}};
  gateway.start();
  auto port = gateway.port();
  gateway.stop();

  int squatter = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(port);
  int on = 1;
  ::setsockopt(squatter, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  BOOST_REQUIRE(::bind(squatter, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
  BOOST_REQUIRE(::listen(squatter, 1) == 0);
  gateway.start();
  ::close(squatter);
  BOOST_TEST(gateway.port() != port);
  BOOST_TEST(gateway.client().get("/health").status == 200);
}

BOOST_AUTO_TEST_CASE(gateway_process_retries_when_the_binary_reports_address_in_use) {
  temp_dir scripts;
  auto script = write_fake_server(scripts);
  gateway_process gateway{
      {.args = {"--busy-once", (scripts / "busy").string()}, .binary = script.string()}};
  gateway.start();
  BOOST_TEST(gateway.client().get("/health").status == 200);
  BOOST_TEST(gateway.log().find("Address already in use") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(gateway_process_start_failure_shows_the_log) {
  temp_dir scripts;
  auto script = write_fake_server(scripts);
  gateway_process gateway{{.args = {"--fail-start"}, .binary = script.string()}};
  try {
    gateway.start();
    BOOST_FAIL("start should throw");
  } catch (const std::runtime_error& error) {
    std::string message = error.what();
    BOOST_TEST_MESSAGE(message);
    BOOST_TEST(message.find("exited with status 2") != std::string::npos);
    BOOST_TEST(message.find("fatal: cannot open database") != std::string::npos);
  }
  BOOST_TEST(!gateway.running());
}

BOOST_AUTO_TEST_CASE(gateway_process_needs_a_binary) {
  if (std::getenv("TOLLGATE_BINARY") == nullptr)
    BOOST_CHECK_THROW(gateway_process{}, std::runtime_error);
}

BOOST_AUTO_TEST_CASE(pg_url_with_database_rewrites_the_name) {
  BOOST_TEST(pg_url_with_database("postgresql://postgres@127.0.0.1:54329/postgres", "x") ==
             "postgresql://postgres@127.0.0.1:54329/x");
  BOOST_TEST(pg_url_with_database("postgres://u:p@h", "x") == "postgres://u:p@h/x");
  BOOST_TEST(pg_url_with_database("postgresql://h:5432/db?sslmode=disable", "x") ==
             "postgresql://h:5432/x?sslmode=disable");
  BOOST_TEST(pg_url_with_database("postgresql://h?sslmode=disable", "x") ==
             "postgresql://h/x?sslmode=disable");
  BOOST_TEST(pg_url_with_database("host=h port=5 dbname=postgres user=u", "x") ==
             "host=h port=5 user=u dbname=x");
  BOOST_TEST(pg_url_with_database("host=h", "x") == "host=h dbname=x");
  BOOST_TEST(pg_url_with_database("dbname=a host=h", "x") == "host=h dbname=x");
}

BOOST_AUTO_TEST_CASE(pg_connection_string_turns_uris_into_keywords) {
  BOOST_TEST(pg_connection_string("postgresql://postgres@127.0.0.1:54329/postgres") ==
             "host=127.0.0.1 user=postgres port=54329 dbname=postgres");
  BOOST_TEST(pg_connection_string("postgres://u%40x:p%20w@[::1]:5/d?sslmode=disable") ==
             "host=::1 user=u@x password='p w' port=5 dbname=d sslmode=disable");
  BOOST_TEST(pg_connection_string("postgresql://h") == "host=h");
  BOOST_TEST(pg_connection_string("postgresql://%2Ftmp/db") == "host=/tmp dbname=db");
  BOOST_TEST(pg_connection_string("host=h dbname=d") == "host=h dbname=d");
}

BOOST_AUTO_TEST_CASE(make_pg_database_creates_a_fresh_database) {
  auto server = pg_url();
  if (!server) {
    BOOST_TEST_MESSAGE("TOLLGATE_TEST_PG_URL not set: make_pg_database not exercised");
    return;
  }
  auto url = make_pg_database(*server);
  BOOST_TEST_MESSAGE("created " << url);
  std::string name;
  {
    soci::session sql{soci::postgresql, pg_connection_string(url)};
    sql << "SELECT current_database()", soci::into(name);
    BOOST_TEST(name.starts_with("tollgate_test_"));
    BOOST_TEST(url.ends_with("/" + name));
    sql << "CREATE TABLE t (x int)";
    // Dropping must work while a session is still connected.
    drop_pg_database(*server, url);
  }
  auto count_named = [&](const std::string& database) {
    soci::session sql{soci::postgresql, pg_connection_string(*server)};
    int count = -1;
    sql << "SELECT count(*) FROM pg_database WHERE datname = :n", soci::use(database),
        soci::into(count);
    return count;
  };
  BOOST_TEST(count_named(name) == 0);

  std::string scoped_name;
  {
    scoped_pg_database database{*server};
    soci::session sql{soci::postgresql, pg_connection_string(database.url())};
    sql << "SELECT current_database()", soci::into(scoped_name);
    BOOST_TEST(count_named(scoped_name) == 1);
  }
  BOOST_TEST(count_named(scoped_name) == 0);
}

BOOST_AUTO_TEST_SUITE_END()
