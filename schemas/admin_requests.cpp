#include "schemas/admin_requests.hpp"

#include <algorithm>
#include <initializer_list>

#include <nlohmann/json.hpp>

#include "schemas/ip_allowlist.hpp"
#include "schemas/json_numbers.hpp"

namespace tollgate::schemas {

namespace {

using json = nlohmann::json;

constexpr std::size_t max_name_length = 200;
constexpr std::size_t max_list_length = 256;
constexpr int64_t max_limit = 1'000'000'000'000;

/// Parses a body that must be a JSON object with only the `allowed` keys.
result<json> parse_object(std::string_view body, std::initializer_list<std::string_view> allowed) {
  json doc = json::parse(body, nullptr, false);
  if (doc.is_discarded())
    return invalid_request("request body is not valid JSON", {}, "invalid_json");
  if (!doc.is_object())
    return invalid_request("request body must be a JSON object", {}, "invalid_json");
  for (const auto& [key, value] : doc.items()) {
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end())
      return invalid_request("unrecognized field '" + key + "'", key, "unknown_field");
  }
  return doc;
}

std::optional<api_error> read_string(const json& doc, const std::string& field, bool required,
                                     std::size_t max_length, std::string& out) {
  auto it = doc.find(field);
  if (it == doc.end() || it->is_null()) {
    if (required)
      return invalid_request("missing required field '" + field + "'", field, "missing_field");
    return std::nullopt;
  }
  if (!it->is_string())
    return invalid_request("'" + field + "' must be a string", field);
  auto value = it->get<std::string>();
  if (value.empty() || value.size() > max_length)
    return invalid_request(
        "'" + field + "' must be 1 to " + std::to_string(max_length) + " characters", field);
  out = std::move(value);
  return std::nullopt;
}

std::optional<api_error> check_email(const std::string& email) {
  auto at = email.find('@');
  bool ok = at != std::string::npos && at > 0 && email.find('@', at + 1) == std::string::npos &&
            email.find('.', at) != std::string::npos && email.back() != '.' &&
            email.find_first_of(" \t\r\n") == std::string::npos;
  if (!ok)
    return invalid_request("'email' is not a valid email address", "email");
  return std::nullopt;
}

/// A limit: absent leaves `out` alone, null sets 0 (no limit), else a positive integer.
std::optional<api_error> read_limit(const json& doc, const std::string& field,
                                    std::optional<int64_t>& out) {
  auto it = doc.find(field);
  if (it == doc.end())
    return std::nullopt;
  if (it->is_null()) {
    out = 0;
    return std::nullopt;
  }
  auto value = as_int64(*it);
  if (!value || *value < 1 || *value > max_limit)
    return invalid_request("'" + field + "' must be a positive integer or null", field);
  out = *value;
  return std::nullopt;
}

std::optional<api_error> read_limits(const json& doc, rate_limits& out) {
  std::optional<int64_t> rpm, tpm, rpd;
  for (auto [field, slot] : {std::pair{"rpm", &rpm}, {"tpm", &tpm}, {"rpd", &rpd}})
    if (auto err = read_limit(doc, field, *slot))
      return err;
  out = rate_limits{rpm.value_or(0), tpm.value_or(0), rpd.value_or(0)};
  return std::nullopt;
}

std::optional<api_error> read_string_list(const json& doc, const std::string& field,
                                          std::vector<std::string>& out) {
  auto it = doc.find(field);
  if (it == doc.end() || it->is_null())
    return std::nullopt;
  if (!it->is_array() || it->size() > max_list_length)
    return invalid_request("'" + field + "' must be an array of at most " +
                               std::to_string(max_list_length) + " strings",
                           field);
  for (const auto& item : *it) {
    if (!item.is_string() || item.get<std::string>().empty())
      return invalid_request("'" + field + "' must contain only non-empty strings", field);
    out.push_back(item.get<std::string>());
  }
  return std::nullopt;
}

} // namespace

user_record user_patch::apply(user_record user) const {
  if (!name.empty())
    user.name = name;
  if (!email.empty())
    user.email = email;
  if (suspended >= 0)
    user.suspended = suspended == 1;
  for (auto [patch, field] : {std::pair{limits.rpm, &user.limits.rpm},
                              {limits.tpm, &user.limits.tpm},
                              {limits.rpd, &user.limits.rpd}})
    if (patch >= 0)
      *field = patch;
  return user;
}

result<new_user> parse_new_user(std::string_view body) {
  auto doc = parse_object(body, {"name", "email", "rpm", "tpm", "rpd"});
  if (!doc)
    return doc.error();
  new_user out;
  if (auto err = read_string(*doc, "name", true, max_name_length, out.name))
    return *err;
  if (auto err = read_string(*doc, "email", true, 254, out.email))
    return *err;
  if (auto err = check_email(out.email))
    return *err;
  if (auto err = read_limits(*doc, out.limits))
    return *err;
  return out;
}

result<user_patch> parse_user_patch(std::string_view body) {
  auto doc = parse_object(body, {"name", "email", "suspended", "rpm", "tpm", "rpd"});
  if (!doc)
    return doc.error();
  if (doc->empty())
    return invalid_request("the patch changes nothing: give at least one field", {}, "empty_patch");
  user_patch out;
  if (doc->contains("name"))
    if (auto err = read_string(*doc, "name", true, max_name_length, out.name))
      return *err;
  if (doc->contains("email")) {
    if (auto err = read_string(*doc, "email", true, 254, out.email))
      return *err;
    if (auto err = check_email(out.email))
      return *err;
  }
  if (auto it = doc->find("suspended"); it != doc->end()) {
    if (!it->is_boolean())
      return invalid_request("'suspended' must be true or false", "suspended");
    out.suspended = it->get<bool>() ? 1 : 0;
  }
  for (auto [field, slot] :
       {std::pair{"rpm", &out.limits.rpm}, {"tpm", &out.limits.tpm}, {"rpd", &out.limits.rpd}}) {
    std::optional<int64_t> value;
    if (auto err = read_limit(*doc, field, value))
      return *err;
    if (value)
      *slot = *value;
  }
  return out;
}

result<credit_request> parse_credit_request(std::string_view body) {
  auto doc = parse_object(body, {"amount", "reason"});
  if (!doc)
    return doc.error();
  credit_request out;
  auto it = doc->find("amount");
  if (it == doc->end() || it->is_null())
    return invalid_request("missing required field 'amount'", "amount", "missing_field");
  auto amount = as_int64(*it);
  if (!it->is_number_integer() || (!amount && !it->is_number_unsigned()))
    return invalid_request("'amount' must be an integer number of micro-credits", "amount");
  out.amount = amount.value_or(0);
  if (!amount || out.amount == 0 || out.amount > max_credit_amount ||
      out.amount < -max_credit_amount)
    return invalid_request("'amount' must be non-zero and at most " +
                               std::to_string(max_credit_amount) + " in magnitude",
                           "amount");
  if (auto err = read_string(*doc, "reason", false, 500, out.reason))
    return *err;
  return out;
}

result<new_key> parse_new_key(std::string_view body, int64_t now) {
  auto doc = parse_object(
      body, {"name", "environment", "rpm", "tpm", "rpd", "models", "allowed_ips", "expires_at"});
  if (!doc)
    return doc.error();
  new_key out;
  out.name = "default";
  if (auto err = read_string(*doc, "name", false, max_name_length, out.name))
    return *err;
  if (auto err = read_string(*doc, "environment", false, 16, out.environment))
    return *err;
  if (out.environment != "live" && out.environment != "test")
    return invalid_request("'environment' must be \"live\" or \"test\"", "environment");
  if (auto err = read_limits(*doc, out.limits))
    return *err;
  if (auto err = read_string_list(*doc, "models", out.models))
    return *err;
  if (auto err = read_string_list(*doc, "allowed_ips", out.allowed_ips))
    return *err;
  for (const auto& entry : out.allowed_ips)
    if (!ip_block::parse(entry))
      return invalid_request(
          "'allowed_ips' entry '" + entry + "' is not an IP address or CIDR block", "allowed_ips");
  if (auto it = doc->find("expires_at"); it != doc->end() && !it->is_null()) {
    auto expires = as_int64(*it);
    if (!expires || *expires <= now)
      return invalid_request("'expires_at' must be a unix time in seconds in the future",
                             "expires_at");
    out.expires_at = *expires;
  }
  return out;
}

std::optional<api_error> check_idempotency_key(std::string_view key) {
  bool printable = std::all_of(key.begin(), key.end(), [](char c) { return c > 32 && c < 127; });
  if (key.empty() || key.size() > 255 || !printable)
    return invalid_request("Idempotency-Key must be 1 to 255 printable ASCII characters",
                           "Idempotency-Key", "invalid_idempotency_key");
  return std::nullopt;
}

} // namespace tollgate::schemas
