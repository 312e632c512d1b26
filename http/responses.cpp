#include "http/responses.hpp"

namespace tollgate::http {

namespace {

const char* reason_phrase(int status) {
  switch (status) {
  case 200:
    return "OK";
  case 201:
    return "Created";
  case 204:
    return "No Content";
  case 400:
    return "Bad Request";
  case 401:
    return "Unauthorized";
  case 402:
    return "Payment Required";
  case 403:
    return "Forbidden";
  case 404:
    return "Not Found";
  case 405:
    return "Method Not Allowed";
  case 409:
    return "Conflict";
  case 413:
    return "Payload Too Large";
  case 415:
    return "Unsupported Media Type";
  case 429:
    return "Too Many Requests";
  case 500:
    return "Internal Server Error";
  case 502:
    return "Bad Gateway";
  case 503:
    return "Service Unavailable";
  case 504:
    return "Gateway Timeout";
  default:
    return "Unknown";
  }
}

} // namespace

void send_json(const request_handle& req, int status, std::string body, std::string_view request_id,
               const header_list& headers) {
  auto response = req->create_response(restinio::http_status_line_t{
      restinio::http_status_code_t{static_cast<std::uint16_t>(status)}, reason_phrase(status)});
  response.append_header(restinio::http_field::content_type, "application/json");
  response.append_header("x-request-id", std::string(request_id));
  for (const auto& [name, value] : headers)
    response.append_header(name, value);
  response.set_body(std::move(body));
  response.done();
}

void send_error(const request_handle& req, const schemas::api_error& err,
                std::string_view request_id, const header_list& headers) {
  send_json(req, err.status, err.body(), request_id, headers);
}

} // namespace tollgate::http
