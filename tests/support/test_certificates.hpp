#pragma once

#include <filesystem>

namespace tollgate::test {

/// A throwaway CA and a server certificate it signed for 127.0.0.1 (as its common name and
/// its subject alternative name), valid for two days, as PEM files.
struct test_certificates {
  std::filesystem::path ca;          ///< The CA's certificate.
  std::filesystem::path certificate; ///< The server's certificate.
  std::filesystem::path key;         ///< The server's private key.
};

/// Makes them in `dir` with the openssl tool (ca.pem, server.pem, server.key); throws
/// std::runtime_error naming the command that failed.
test_certificates make_test_certificates(const std::filesystem::path& dir);

} // namespace tollgate::test
