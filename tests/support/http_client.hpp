#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tollgate::test {

/// Extra request headers, in order; a header given here replaces the client's default.
using header_list = std::vector<std::pair<std::string, std::string>>;

/// One complete HTTP response.
struct http_response {
  long status = 0;
  /// Header names are lower case; repeated headers are joined with ", ".
  std::map<std::string, std::string> headers{};
  std::string body{};

  /// Parses the body as JSON; throws with the status and body in the message if it is not.
  nlohmann::json json() const;

  /// The header's value ("" when absent); `name` is matched case-insensitively.
  std::string header(std::string_view name) const;
};

/// Blocking HTTP/1.1 client over one reused libcurl easy handle (keep-alive), no proxy.
/// Not thread-safe: use one client per thread.
class http_client {
public:
  /// `base_url` such as "http://127.0.0.1:8080"; request paths are appended to it, unless a
  /// path is itself an absolute http(s) URL.
  explicit http_client(std::string base_url);
  ~http_client();

  http_client(const http_client&) = delete;
  http_client& operator=(const http_client&) = delete;
  http_client(http_client&&) noexcept;
  http_client& operator=(http_client&&) noexcept;

  http_response get(const std::string& path, const header_list& headers = {});
  http_response post(const std::string& path, const std::string& body,
                     const header_list& headers = {});
  http_response patch(const std::string& path, const std::string& body,
                      const header_list& headers = {});
  http_response put(const std::string& path, const std::string& body,
                    const header_list& headers = {});
  http_response del(const std::string& path, const header_list& headers = {});

  /// Sends any method; a non-empty body goes with `Content-Type: application/json` unless
  /// `headers` names another. Throws std::runtime_error on transport errors (not on 4xx/5xx).
  http_response request(std::string_view method, const std::string& path, const std::string& body,
                        const header_list& headers);

  /// Sends `Authorization: Bearer <token>` on later calls; an empty token stops it.
  void bearer(std::string token);

  /// Connect and total timeouts (defaults 5 s and 60 s).
  void timeouts(std::chrono::milliseconds connect, std::chrono::milliseconds total);

  const std::string& base_url() const { return base_url_; }

private:
  struct handle_deleter {
    void operator()(void* handle) const;
  };

  std::string base_url_;
  std::string bearer_;
  std::chrono::milliseconds connect_timeout_{5000};
  std::chrono::milliseconds total_timeout_{60000};
  std::unique_ptr<void, handle_deleter> handle_;
};

} // namespace tollgate::test
