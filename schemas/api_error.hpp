#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace tollgate::schemas {

/// An error in OpenAI's wire shape: {"error":{"message","type","param","code"}}.
struct api_error {
  int status = 500;
  std::string type;
  std::string code;
  std::string message;
  std::string param; ///< The offending field; empty renders as null.
  /// Headers the error response carries (name, value, name, value, ...), e.g. Retry-After.
  std::vector<std::string> headers;

  /// The JSON body for this error.
  std::string body() const;

  template <class Inspector>
  friend auto inspect(Inspector& f, api_error& x) {
    return f(x.status, x.type, x.code, x.message, x.param, x.headers);
  }
};

/// 400: the request is malformed or a field is invalid.
api_error invalid_request(std::string message, std::string param = {},
                          std::string code = "invalid_value");
/// 401: no key, an unknown key, a revoked or expired key.
api_error unauthenticated(std::string message, std::string code = "invalid_api_key");
/// 402: the balance cannot cover even a minimal call.
api_error insufficient_quota(std::string message);
/// 403: the key or user is not allowed to do this.
api_error forbidden(std::string message, std::string code);
/// 404: no such route or entity.
api_error not_found(std::string message, std::string code = "not_found");
/// 405: the route exists but not for this method.
api_error method_not_allowed(std::string_view method, std::string_view path);
/// 409: the request conflicts with the current state.
api_error conflict(std::string message, std::string code);
/// 413: the body is larger than the configured maximum.
api_error payload_too_large(std::size_t limit);
/// 415: a body that is not JSON.
api_error unsupported_media_type(std::string_view content_type);
/// 429: a rate window is exhausted.
api_error rate_limited(std::string message, std::string code = "rate_limit_exceeded");
/// 500: a bug or an unexpected failure; the message never leaks internals.
api_error internal_error(std::string message = "internal error");
/// 503: the gateway cannot serve right now (database down, draining).
api_error unavailable(std::string message, std::string code = "service_unavailable");

} // namespace tollgate::schemas
