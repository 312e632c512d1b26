#include "tests/support/http_client.hpp"

#include <curl/curl.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <mutex>
#include <stdexcept>

namespace tollgate::test {

namespace {

std::string to_lower(std::string_view text) {
  std::string out{text};
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front())))
    text.remove_prefix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back())))
    text.remove_suffix(1);
  return text;
}

void ensure_curl_initialized() {
  static std::once_flag flag;
  std::call_once(flag, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

/// Collects the response while curl performs one request.
struct transfer_state {
  http_response response;
};

size_t on_body(char* data, size_t size, size_t count, void* user) {
  auto& state = *static_cast<transfer_state*>(user);
  state.response.body.append(data, size * count);
  return size * count;
}

size_t on_header(char* data, size_t size, size_t count, void* user) {
  auto& state = *static_cast<transfer_state*>(user);
  std::string_view line{data, size * count};
  if (line.starts_with("HTTP/")) {
    // A new status line (e.g. after "100 Continue"): only the final response's headers count.
    state.response.headers.clear();
    return size * count;
  }
  auto colon = line.find(':');
  if (colon == std::string_view::npos)
    return size * count;
  auto name = to_lower(trim(line.substr(0, colon)));
  auto value = std::string{trim(line.substr(colon + 1))};
  auto [it, inserted] = state.response.headers.try_emplace(name, value);
  if (!inserted)
    it->second += ", " + value;
  return size * count;
}

bool has_header(const header_list& headers, std::string_view lower_name) {
  return std::any_of(headers.begin(), headers.end(),
                     [&](const auto& header) { return to_lower(header.first) == lower_name; });
}

struct slist_deleter {
  void operator()(curl_slist* list) const { curl_slist_free_all(list); }
};
using slist_ptr = std::unique_ptr<curl_slist, slist_deleter>;

void append_header(slist_ptr& list, const std::string& line) {
  auto* extended = curl_slist_append(list.get(), line.c_str());
  if (extended == nullptr)
    throw std::runtime_error("curl_slist_append failed");
  static_cast<void>(list.release());
  list.reset(extended);
}

} // namespace

nlohmann::json http_response::json() const {
  try {
    return nlohmann::json::parse(body);
  } catch (const nlohmann::json::parse_error& error) {
    constexpr std::size_t max_shown = 4000;
    auto shown = body.size() > max_shown ? body.substr(0, max_shown) + "..." : body;
    throw std::runtime_error("response (status " + std::to_string(status) +
                             ") is not JSON: " + error.what() + "; body: " + shown);
  }
}

std::string http_response::header(std::string_view name) const {
  auto it = headers.find(to_lower(name));
  return it == headers.end() ? std::string{} : it->second;
}

void http_client::handle_deleter::operator()(void* handle) const {
  curl_easy_cleanup(static_cast<CURL*>(handle));
}

http_client::http_client(std::string base_url)
    : base_url_(std::move(base_url)) {
  ensure_curl_initialized();
  handle_.reset(curl_easy_init());
  if (!handle_)
    throw std::runtime_error("curl_easy_init failed");
  while (base_url_.ends_with('/'))
    base_url_.pop_back();
}

http_client::~http_client() = default;
http_client::http_client(http_client&&) noexcept = default;
http_client& http_client::operator=(http_client&&) noexcept = default;

http_response http_client::get(const std::string& path, const header_list& headers) {
  return request("GET", path, {}, headers);
}

http_response http_client::post(const std::string& path, const std::string& body,
                                const header_list& headers) {
  return request("POST", path, body, headers);
}

http_response http_client::patch(const std::string& path, const std::string& body,
                                 const header_list& headers) {
  return request("PATCH", path, body, headers);
}

http_response http_client::put(const std::string& path, const std::string& body,
                               const header_list& headers) {
  return request("PUT", path, body, headers);
}

http_response http_client::del(const std::string& path, const header_list& headers) {
  return request("DELETE", path, {}, headers);
}

void http_client::bearer(std::string token) {
  bearer_ = std::move(token);
}

void http_client::timeouts(std::chrono::milliseconds connect, std::chrono::milliseconds total) {
  connect_timeout_ = connect;
  total_timeout_ = total;
}

http_response http_client::request(std::string_view method, const std::string& path,
                                   const std::string& body, const header_list& headers) {
  auto* curl = static_cast<CURL*>(handle_.get());
  if (curl == nullptr)
    throw std::logic_error("http_client used after move");
  // Reset clears the options of the last call but keeps the connection cache (keep-alive).
  curl_easy_reset(curl);

  auto url = path.starts_with("http://") || path.starts_with("https://") ? path : base_url_ + path;
  std::string method_name{method};
  transfer_state state;
  std::array<char, CURL_ERROR_SIZE> error_buffer{};

  slist_ptr header_lines;
  for (const auto& [name, value] : headers)
    // curl drops "Name:" with an empty value; "Name;" sends it empty.
    append_header(header_lines, value.empty() ? name + ";" : name + ": " + value);
  if (!bearer_.empty() && !has_header(headers, "authorization"))
    append_header(header_lines, "Authorization: Bearer " + bearer_);
  bool sends_body =
      !body.empty() || method_name == "POST" || method_name == "PUT" || method_name == "PATCH";
  if (sends_body && !has_header(headers, "content-type"))
    // An empty body sends no Content-Type at all (curl would add a form type).
    append_header(header_lines, body.empty() ? "Content-Type:" : "Content-Type: application/json");
  if (!has_header(headers, "expect"))
    append_header(header_lines, "Expect:");

  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(connect_timeout_.count()));
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(total_timeout_.count()));
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error_buffer.data());
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &on_body);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &state);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, &on_header);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &state);
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, header_lines.get());

  if (method_name == "GET" && body.empty()) {
    curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
  } else if (method_name == "HEAD") {
    curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
  } else {
    if (sends_body) {
      curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
      curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data());
    }
    if (method_name != "POST")
      curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method_name.c_str());
  }

  auto code = curl_easy_perform(curl);
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &state.response.status);
  std::string reason = error_buffer[0] != '\0' ? error_buffer.data() : curl_easy_strerror(code);
  // The options point into locals of this call; drop them before they go away.
  curl_easy_reset(curl);
  if (code != CURLE_OK)
    throw std::runtime_error(method_name + " " + url + " failed: " + reason);
  return std::move(state.response);
}

} // namespace tollgate::test
