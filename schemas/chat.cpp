#include "schemas/chat.hpp"

#include <algorithm>
#include <array>

#include "schemas/json_numbers.hpp"

namespace tollgate::schemas {

namespace {

using json = nlohmann::json;

constexpr int64_t max_token_limit = 10'000'000;
constexpr int64_t tokens_per_message = 4;
constexpr int64_t tokens_per_request = 3;
constexpr int64_t tokens_per_non_text_part = 1'000;
constexpr std::array roles{"system", "developer", "user", "assistant", "tool", "function"};

result<json> parse_body(std::string_view body) {
  json doc = json::parse(body, nullptr, false);
  if (doc.is_discarded())
    return invalid_request("request body is not valid JSON", {}, "invalid_json");
  if (!doc.is_object())
    return invalid_request("request body must be a JSON object", {}, "invalid_json");
  return doc;
}

std::optional<api_error> read_model(const json& doc, std::string& model) {
  auto it = doc.find("model");
  if (it == doc.end() || it->is_null())
    return invalid_request("you must provide a model parameter", "model", "missing_field");
  if (!it->is_string() || it->get<std::string>().empty())
    return invalid_request("'model' must be a non-empty string", "model");
  model = it->get<std::string>();
  return std::nullopt;
}

std::optional<api_error> read_positive(const json& doc, const char* field, int64_t high,
                                       int64_t& out) {
  auto it = doc.find(field);
  if (it == doc.end() || it->is_null())
    return std::nullopt;
  auto value = as_int64(*it);
  if (!value || *value < 1 || *value > high)
    return invalid_request(
        "'" + std::string(field) + "' must be an integer from 1 to " + std::to_string(high), field);
  out = *value;
  return std::nullopt;
}

/// Token estimate of one message, or the error naming what is wrong with it.
result<int64_t> message_tokens(const json& message, std::size_t index) {
  auto where = "messages[" + std::to_string(index) + "]";
  if (!message.is_object())
    return invalid_request("'" + where + "' must be an object", "messages");
  auto role = message.find("role");
  if (role == message.end() || !role->is_string() ||
      std::find(roles.begin(), roles.end(), role->get<std::string>()) == roles.end())
    return invalid_request("'" + where +
                               ".role' must be one of system, developer, user, "
                               "assistant, tool, function",
                           "messages");
  int64_t tokens = tokens_per_message;
  auto content = message.find("content");
  if (content != message.end() && !content->is_null()) {
    if (content->is_string()) {
      tokens += estimate_tokens(content->get_ref<const std::string&>());
    } else if (content->is_array()) {
      for (const auto& part : *content) {
        if (part.is_object() && part.value("type", "") == "text" && part.contains("text") &&
            part["text"].is_string())
          tokens += estimate_tokens(part["text"].get_ref<const std::string&>());
        else
          tokens += tokens_per_non_text_part;
      }
    } else {
      return invalid_request("'" + where + ".content' must be a string or an array of parts",
                             "messages");
    }
  }
  // Tool calls and names count as text too.
  for (const char* field : {"tool_calls", "name", "function_call"})
    if (auto it = message.find(field); it != message.end())
      tokens += estimate_tokens(it->dump());
  return tokens;
}

} // namespace

int64_t estimate_tokens(std::string_view text) {
  return estimate_tokens_of_size(static_cast<int64_t>(text.size()));
}

int64_t estimate_tokens_of_size(int64_t bytes) {
  return (bytes + 2) / 3;
}

std::string content_text(const json& content) {
  if (content.is_string())
    return content.get<std::string>();
  std::string out;
  if (content.is_array())
    for (const auto& part : content)
      if (part.is_object() && part.contains("text") && part["text"].is_string())
        out += part["text"].get<std::string>();
  return out;
}

result<chat_request> parse_chat_request(std::string_view body) {
  auto doc = parse_body(body);
  if (!doc)
    return doc.error();
  chat_request out;
  // OpenRouter's "models": fallbacks in order; the first stands in for a missing "model".
  if (auto models = doc->find("models"); models != doc->end()) {
    if (!models->is_array() || models->size() > 16)
      return invalid_request("'models' must be an array of at most 16 model names", "models");
    for (const auto& m : *models) {
      if (!m.is_string() || m.get_ref<const std::string&>().empty())
        return invalid_request("'models' must contain only model names", "models");
      out.fallback_models.push_back(m.get<std::string>());
    }
    doc->erase("models");
    if (!doc->contains("model") && !out.fallback_models.empty())
      (*doc)["model"] = out.fallback_models.front();
  }
  if (auto err = read_model(*doc, out.model))
    return *err;
  auto messages = doc->find("messages");
  if (messages == doc->end() || !messages->is_array() || messages->empty())
    return invalid_request("'messages' must be a non-empty array", "messages",
                           messages == doc->end() ? "missing_field" : "invalid_value");
  out.prompt_tokens = tokens_per_request;
  for (std::size_t i = 0; i < messages->size(); ++i) {
    auto tokens = message_tokens((*messages)[i], i);
    if (!tokens)
      return tokens.error();
    out.prompt_tokens += *tokens;
  }
  if (auto tools = doc->find("tools"); tools != doc->end())
    out.prompt_tokens += estimate_tokens(tools->dump());
  if (auto it = doc->find("stream"); it != doc->end() && !it->is_null()) {
    if (!it->is_boolean())
      return invalid_request("'stream' must be true or false", "stream");
    out.stream = it->get<bool>();
  }
  if (auto it = doc->find("stream_options"); it != doc->end() && !it->is_null()) {
    if (!it->is_object())
      return invalid_request("'stream_options' must be an object", "stream_options");
    if (auto usage = it->find("include_usage"); usage != it->end()) {
      if (!usage->is_boolean())
        return invalid_request("'stream_options.include_usage' must be true or false",
                               "stream_options");
      out.include_usage = usage->get<bool>();
    }
  }
  for (const char* field : {"max_completion_tokens", "max_tokens"}) {
    int64_t value = 0;
    if (auto err = read_positive(*doc, field, max_token_limit, value))
      return *err;
    if (value > 0 && (out.max_tokens == 0 || value < out.max_tokens)) {
      out.max_tokens = value;
      out.max_tokens_field = field;
    }
  }
  if (auto err = read_positive(*doc, "n", 128, out.choices))
    return *err;
  out.body = std::move(*doc);
  return out;
}

result<embeddings_request> parse_embeddings_request(std::string_view body) {
  auto doc = parse_body(body);
  if (!doc)
    return doc.error();
  embeddings_request out;
  if (auto err = read_model(*doc, out.model))
    return *err;
  auto input = doc->find("input");
  if (input == doc->end() || input->is_null())
    return invalid_request("you must provide an input parameter", "input", "missing_field");
  if (input->is_string()) {
    out.input_tokens = estimate_tokens(input->get_ref<const std::string&>());
  } else if (input->is_array() && !input->empty()) {
    for (const auto& item : *input) {
      if (item.is_string())
        out.input_tokens += estimate_tokens(item.get_ref<const std::string&>());
      else if (item.is_number_integer())
        out.input_tokens += 1; // a token id
      else if (item.is_array())
        out.input_tokens += static_cast<int64_t>(item.size());
      else
        return invalid_request("'input' must be a string or an array of strings or tokens",
                               "input");
    }
  } else {
    return invalid_request("'input' must be a string or a non-empty array", "input");
  }
  out.body = std::move(*doc);
  return out;
}

} // namespace tollgate::schemas
