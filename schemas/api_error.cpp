#include "schemas/api_error.hpp"

#include <nlohmann/json.hpp>

namespace tollgate::schemas {

std::string api_error::body() const {
  nlohmann::json error{{"message", message},
                       {"type", type},
                       {"param", param.empty() ? nlohmann::json() : nlohmann::json(param)},
                       {"code", code}};
  return nlohmann::json{{"error", std::move(error)}}.dump();
}

namespace {

api_error make(int status, std::string type, std::string code, std::string message,
               std::string param = {}) {
  return api_error{status, std::move(type), std::move(code), std::move(message), std::move(param),
                   {}};
}

} // namespace

api_error invalid_request(std::string message, std::string param, std::string code) {
  return make(400, "invalid_request_error", std::move(code), std::move(message), std::move(param));
}

api_error unauthenticated(std::string message, std::string code) {
  return make(401, "authentication_error", std::move(code), std::move(message));
}

api_error insufficient_quota(std::string message) {
  return make(402, "insufficient_quota", "insufficient_quota", std::move(message));
}

api_error forbidden(std::string message, std::string code) {
  return make(403, "permission_error", std::move(code), std::move(message));
}

api_error not_found(std::string message, std::string code) {
  return make(404, "not_found_error", std::move(code), std::move(message));
}

api_error method_not_allowed(std::string_view method, std::string_view path) {
  return make(405, "invalid_request_error", "method_not_allowed",
              "method " + std::string(method) + " is not allowed on " + std::string(path));
}

api_error conflict(std::string message, std::string code) {
  return make(409, "conflict_error", std::move(code), std::move(message));
}

api_error payload_too_large(std::size_t limit) {
  return make(413, "invalid_request_error", "request_too_large",
              "request body exceeds the limit of " + std::to_string(limit) + " bytes");
}

api_error unsupported_media_type(std::string_view content_type) {
  return make(415, "invalid_request_error", "unsupported_media_type",
              "expected Content-Type application/json, got '" + std::string(content_type) + "'");
}

api_error rate_limited(std::string message, std::string code) {
  return make(429, "rate_limit_exceeded", std::move(code), std::move(message));
}

api_error internal_error(std::string message) {
  return make(500, "server_error", "internal_error", std::move(message));
}

api_error unavailable(std::string message, std::string code) {
  return make(503, "server_error", std::move(code), std::move(message));
}

} // namespace tollgate::schemas
