#include "tests/support/test_certificates.hpp"

#include <cstdlib>
#include <stdexcept>
#include <string>

namespace tollgate::test {

test_certificates make_test_certificates(const std::filesystem::path& dir) {
  auto run = [&](const std::string& command) {
    auto full = "cd '" + dir.string() + "' && " + command + " >/dev/null 2>&1";
    if (std::system(full.c_str()) != 0)
      throw std::runtime_error("failed: " + command);
  };
  run("openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 "
      "-subj /CN=tollgate-test-ca");
  run("openssl req -x509 -newkey rsa:2048 -nodes -keyout server.key -out server.pem -days 2 "
      "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 "
      "-addext basicConstraints=critical,CA:FALSE -CA ca.pem -CAkey ca.key");
  return {dir / "ca.pem", dir / "server.pem", dir / "server.key"};
}

} // namespace tollgate::test
