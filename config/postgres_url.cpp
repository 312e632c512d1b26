#include "config/postgres_url.hpp"

#include <cctype>
#include <utility>
#include <vector>

namespace tollgate::config {

namespace {

/// The database named in a URI ("" if it names none).
std::string database_of(const std::string& url) {
  auto authority = url.find("://") + 3;
  auto slash = url.find('/', authority);
  if (slash == std::string::npos)
    return {};
  auto query = url.find('?', slash);
  return url.substr(slash + 1, query == std::string::npos ? query : query - slash - 1);
}

std::string percent_decode(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size() &&
        std::isxdigit(static_cast<unsigned char>(text[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(text[i + 2]))) {
      out.push_back(static_cast<char>(std::stoi(std::string{text.substr(i + 1, 2)}, nullptr, 16)));
      i += 2;
    } else {
      out.push_back(text[i]);
    }
  }
  return out;
}

/// A libpq keyword value, quoted when it is empty or holds spaces, quotes or backslashes.
std::string keyword_value(const std::string& value) {
  if (!value.empty() && value.find_first_of(" '\\") == std::string::npos)
    return value;
  std::string out = "'";
  for (char c : value) {
    if (c == '\'' || c == '\\')
      out.push_back('\\');
    out.push_back(c);
  }
  return out + "'";
}

} // namespace

bool is_postgres_uri(std::string_view url) {
  return url.starts_with("postgresql://") || url.starts_with("postgres://");
}

std::string postgres_keywords(std::string_view url_text) {
  std::string url(url_text);
  if (!is_postgres_uri(url))
    return url;
  std::vector<std::pair<std::string, std::string>> keywords;
  auto authority_start = url.find("://") + 3;
  auto authority_end = url.find_first_of("/?", authority_start);
  auto authority = url.substr(authority_start, authority_end == std::string::npos
                                                   ? std::string::npos
                                                   : authority_end - authority_start);
  if (auto at = authority.rfind('@'); at != std::string::npos) {
    auto user_info = authority.substr(0, at);
    authority.erase(0, at + 1);
    auto colon = user_info.find(':');
    keywords.emplace_back("user", percent_decode(user_info.substr(0, colon)));
    if (colon != std::string::npos)
      keywords.emplace_back("password", percent_decode(user_info.substr(colon + 1)));
  }
  // host, host:port, [v6] or [v6]:port
  auto port_colon = authority.rfind(':');
  if (port_colon != std::string::npos && authority.find(']', port_colon) == std::string::npos) {
    keywords.emplace_back("port", authority.substr(port_colon + 1));
    authority.erase(port_colon);
  }
  if (authority.starts_with('[') && authority.ends_with(']'))
    authority = authority.substr(1, authority.size() - 2);
  if (!authority.empty())
    keywords.emplace(keywords.begin(), "host", percent_decode(authority));
  if (auto name = database_of(url); !name.empty())
    keywords.emplace_back("dbname", percent_decode(name));
  if (auto question = url.find('?'); question != std::string::npos) {
    std::string_view query{url};
    query.remove_prefix(question + 1);
    while (!query.empty()) {
      auto amp = query.find('&');
      auto pair = query.substr(0, amp);
      auto equals = pair.find('=');
      if (equals != std::string_view::npos)
        keywords.emplace_back(percent_decode(pair.substr(0, equals)),
                              percent_decode(pair.substr(equals + 1)));
      query.remove_prefix(amp == std::string_view::npos ? query.size() : amp + 1);
    }
  }
  std::string out;
  for (const auto& [key, value] : keywords)
    out += (out.empty() ? "" : " ") + key + "=" + keyword_value(value);
  return out;
}

} // namespace tollgate::config
