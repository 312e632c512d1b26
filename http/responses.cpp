#include "http/responses.hpp"

#include "actors/metrics/metrics.hpp"

namespace tollgate::http {

namespace {

/// The path with ids folded into ":id", so that label values stay few.
std::string endpoint_label(std::string_view path) {
  if (!(path.starts_with("/v1/") || path.starts_with("/admin/") || path == "/health" ||
        path == "/ready" || path == "/metrics"))
    return "other";
  std::string out;
  std::size_t i = 0;
  while (i < path.size()) {
    auto next = path.find('/', i + 1);
    auto segment = path.substr(i, next == std::string_view::npos ? path.size() - i : next - i);
    bool id = segment.starts_with("/usr_") || segment.starts_with("/key_");
    out += id ? std::string("/:id") : std::string(segment);
    i = next == std::string_view::npos ? path.size() : next;
  }
  return out;
}

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

void count_response(std::string_view path, int status) {
  gateway_metrics::global().requests.at({endpoint_label(path), std::to_string(status)}).add();
}

void send_json(const request_handle& req, int status, std::string body, std::string_view request_id,
               const header_list& headers) {
  count_response(req->header().path(), status);
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
  gateway_metrics::global().errors.at({err.type}).add();
  auto all = headers;
  for (std::size_t i = 0; i + 1 < err.headers.size(); i += 2)
    all.emplace_back(err.headers[i], err.headers[i + 1]);
  send_json(req, err.status, err.body(), request_id, all);
}

} // namespace tollgate::http
