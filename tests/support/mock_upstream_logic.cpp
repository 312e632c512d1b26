#include "tests/support/mock_upstream_logic.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace tollgate::mock {

namespace {

using nlohmann::json;

constexpr std::array<std::string_view, 16> vocabulary{
    "alpha", "bravo",  "charlie", "delta", "echo",     "foxtrot", "golf", "hotel",
    "india", "juliet", "kilo",    "lima",  "november", "oscar",   "papa", "quebec"};

constexpr std::size_t max_choices = 128;

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

std::string_view reply_word(std::size_t index) {
  if (index == 0)
    return "mock";
  if (index == 1)
    return "reply";
  return vocabulary[(index - 2) % vocabulary.size()];
}

/// A decimal number with no sign or junk, no larger than `max`.
std::optional<std::uint64_t> parse_count(std::string_view text, std::uint64_t max) {
  std::uint64_t value = 0;
  const auto* end = text.data() + text.size();
  auto [ptr, error] = std::from_chars(text.data(), end, value);
  if (text.empty() || error != std::errc{} || ptr != end || value > max)
    return std::nullopt;
  return value;
}

/// Delays are capped at a day so that a typo cannot overflow a timer.
constexpr std::uint64_t max_delay_ms = 24ULL * 3600 * 1000;
constexpr std::uint64_t max_tokens_setting = 1'000'000;

std::int64_t parse_delay(std::string_view name, std::string_view text) {
  if (auto value = parse_count(text, max_delay_ms))
    return static_cast<std::int64_t>(*value);
  throw std::invalid_argument(std::string{name} + ": expected milliseconds (0.." +
                              std::to_string(max_delay_ms) + "), got '" + std::string{text} + "'");
}

std::size_t parse_size(std::string_view name, std::string_view text, std::uint64_t min) {
  auto value = parse_count(text, max_tokens_setting);
  if (!value || *value < min)
    throw std::invalid_argument(std::string{name} + ": expected an integer " + std::to_string(min) +
                                ".." + std::to_string(max_tokens_setting) + ", got '" +
                                std::string{text} + "'");
  return static_cast<std::size_t>(*value);
}

bool parse_flag(std::string_view name, std::string_view text) {
  if (text == "1" || text == "true")
    return true;
  if (text == "0" || text == "false")
    return false;
  throw std::invalid_argument(std::string{name} + ": expected 1 or 0, got '" + std::string{text} +
                              "'");
}

/// Applies one setting by its snake_case name; false if there is no such setting.
bool apply_named(mock_settings& settings, std::string_view key, std::string_view label,
                 std::string_view value) {
  if (key == "latency_ms")
    settings.latency_ms = parse_delay(label, value);
  else if (key == "ttft_ms")
    settings.ttft_ms = parse_delay(label, value);
  else if (key == "chunks")
    settings.chunks = parse_size(label, value, 1);
  else if (key == "interval_ms")
    settings.interval_ms = parse_delay(label, value);
  else if (key == "completion_tokens")
    settings.completion_tokens = parse_size(label, value, 0);
  else if (key == "usage")
    settings.usage = parse_flag(label, value);
  else if (key == "fault")
    settings.fault = parse_fault(value);
  else
    return false;
  return true;
}

/// "x-mock-ttft-ms" / "--ttft-ms" -> "ttft_ms".
std::string setting_key(std::string_view suffix) {
  std::string key{suffix};
  std::replace(key.begin(), key.end(), '-', '_');
  return key;
}

std::size_t count_content_tokens(const json& content) {
  if (content.is_string())
    return count_tokens(content.get_ref<const std::string&>());
  std::size_t tokens = 0;
  if (content.is_array())
    for (const auto& part : content)
      if (part.is_object())
        if (auto text = part.find("text"); text != part.end() && text->is_string())
          tokens += count_tokens(text->get_ref<const std::string&>());
  return tokens;
}

/// A non-negative integer field, or nullopt when absent or null.
std::optional<std::size_t> optional_count(const json& body, const char* name) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null())
    return std::nullopt;
  if (!it->is_number_integer() || it->get<std::int64_t>() < 0)
    throw std::invalid_argument(std::string{name} + " must be a non-negative integer");
  return it->get<std::size_t>();
}

bool optional_bool(const json& object, const char* name) {
  auto it = object.find(name);
  if (it == object.end() || it->is_null())
    return false;
  if (!it->is_boolean())
    throw std::invalid_argument(std::string{name} + " must be a boolean");
  return it->get<bool>();
}

json usage_json(std::size_t prompt, std::size_t completion) {
  return {{"prompt_tokens", prompt},
          {"completion_tokens", completion},
          {"total_tokens", prompt + completion}};
}

std::string sse_event(const json& data) {
  return "data: " + data.dump() + "\n\n";
}

std::uint64_t fnv1a(std::string_view text) {
  std::uint64_t hash = 1469598103934665603ULL;
  for (unsigned char c : text) {
    hash ^= c;
    hash *= 1099511628211ULL;
  }
  return hash;
}

std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

json embedding_entry(std::size_t index, std::string_view input) {
  auto vector = embedding_vector(input);
  return {{"object", "embedding"},
          {"index", index},
          {"embedding", std::vector<double>(vector.begin(), vector.end())}};
}

} // namespace

fault_spec parse_fault(std::string_view text) {
  if (text == "none")
    return {};
  auto colon = text.find(':');
  if (colon != std::string_view::npos) {
    auto name = text.substr(0, colon);
    auto argument = parse_count(text.substr(colon + 1), max_tokens_setting);
    if (argument && name == "status" && *argument >= 100 && *argument <= 599)
      return {fault_kind::status, static_cast<std::size_t>(*argument)};
    if (argument && name == "reset-after")
      return {fault_kind::reset_after, static_cast<std::size_t>(*argument)};
    if (argument && name == "stall-after")
      return {fault_kind::stall_after, static_cast<std::size_t>(*argument)};
    if (argument && name == "malformed-after")
      return {fault_kind::malformed_after, static_cast<std::size_t>(*argument)};
  }
  throw std::invalid_argument("fault: expected none, status:<code>, reset-after:<k>, "
                              "stall-after:<k> or malformed-after:<k>, got '" +
                              std::string{text} + "'");
}

std::string to_string(const fault_spec& fault) {
  auto value = std::to_string(fault.value);
  switch (fault.kind) {
  case fault_kind::none:
    return "none";
  case fault_kind::status:
    return "status:" + value;
  case fault_kind::reset_after:
    return "reset-after:" + value;
  case fault_kind::stall_after:
    return "stall-after:" + value;
  case fault_kind::malformed_after:
    return "malformed-after:" + value;
  }
  return "none";
}

bool apply_setting_header(mock_settings& settings, std::string_view name, std::string_view value) {
  constexpr std::string_view prefix = "x-mock-";
  if (!name.starts_with(prefix))
    return false;
  if (!apply_named(settings, setting_key(name.substr(prefix.size())), name, value))
    throw std::invalid_argument("unknown mock header '" + std::string{name} + "'");
  return true;
}

bool apply_setting_flag(mock_settings& settings, std::string_view flag, std::string_view value) {
  if (!flag.starts_with("--"))
    return false;
  return apply_named(settings, setting_key(flag.substr(2)), flag, value);
}

void apply_settings_patch(mock_settings& settings, const nlohmann::json& patch) {
  if (!patch.is_object())
    throw std::invalid_argument("settings: expected a JSON object");
  mock_settings updated = settings;
  for (const auto& [key, value] : patch.items()) {
    std::string text;
    if (value.is_string())
      text = value.get<std::string>();
    else if (value.is_boolean())
      text = value.get<bool>() ? "1" : "0";
    else if (value.is_number_integer())
      text = value.dump();
    else
      throw std::invalid_argument(key + ": expected a string, integer or boolean");
    if (!apply_named(updated, key, key, text))
      throw std::invalid_argument("unknown setting '" + key + "'");
  }
  settings = updated;
}

nlohmann::json to_json(const mock_settings& settings) {
  return {{"latency_ms", settings.latency_ms},
          {"ttft_ms", settings.ttft_ms},
          {"chunks", settings.chunks},
          {"interval_ms", settings.interval_ms},
          {"completion_tokens", settings.completion_tokens},
          {"usage", settings.usage},
          {"fault", to_string(settings.fault)}};
}

std::size_t count_tokens(std::string_view text) {
  std::size_t tokens = 0;
  bool in_word = false;
  for (char c : text) {
    bool space = is_space(c);
    if (!space && !in_word)
      ++tokens;
    in_word = !space;
  }
  return tokens;
}

std::size_t count_prompt_tokens(const nlohmann::json& messages) {
  std::size_t tokens = 0;
  if (messages.is_array())
    for (const auto& message : messages)
      if (message.is_object())
        if (auto content = message.find("content"); content != message.end())
          tokens += count_content_tokens(*content);
  return tokens;
}

std::string reply_text(std::size_t tokens) {
  std::string text;
  for (std::size_t i = 0; i < tokens; ++i) {
    if (i != 0)
      text += ' ';
    text += reply_word(i);
  }
  return text;
}

std::vector<std::string> split_reply(std::size_t tokens, std::size_t chunks) {
  std::size_t pieces = std::max<std::size_t>(1, std::min(chunks, tokens));
  std::vector<std::string> result;
  result.reserve(pieces);
  std::size_t word = 0;
  for (std::size_t piece = 0; piece < pieces; ++piece) {
    std::size_t words = tokens / pieces + (piece < tokens % pieces ? 1 : 0);
    std::string text;
    for (std::size_t i = 0; i < words; ++i, ++word) {
      if (word != 0)
        text += ' ';
      text += reply_word(word);
    }
    result.push_back(std::move(text));
  }
  return result;
}

std::array<double, 8> embedding_vector(std::string_view input) {
  std::uint64_t state = fnv1a(input);
  std::array<double, 8> vector{};
  for (auto& value : vector) {
    // 4 decimals keep the JSON short and exactly reproducible.
    auto unit = static_cast<double>(splitmix64(state) >> 11) / static_cast<double>(1ULL << 53);
    value = std::round((unit * 2.0 - 1.0) * 10000.0) / 10000.0;
  }
  return vector;
}

nlohmann::json error_body(std::string_view message, std::string_view type, std::string_view code) {
  return {{"error",
           {{"message", message},
            {"type", type},
            {"param", nullptr},
            {"code", code.empty() ? json(nullptr) : json(code)}}}};
}

chat_request parse_chat_request(const nlohmann::json& body) {
  if (!body.is_object())
    throw std::invalid_argument("the request body must be a JSON object");
  chat_request request;
  auto model = body.find("model");
  if (model == body.end() || !model->is_string())
    throw std::invalid_argument("model is required and must be a string");
  request.model = model->get<std::string>();
  auto messages = body.find("messages");
  if (messages == body.end() || !messages->is_array())
    throw std::invalid_argument("messages is required and must be an array");
  request.prompt_tokens = count_prompt_tokens(*messages);
  request.stream = optional_bool(body, "stream");
  if (auto options = body.find("stream_options"); options != body.end() && options->is_object())
    request.include_usage = optional_bool(*options, "include_usage");
  request.max_tokens = optional_count(body, "max_completion_tokens");
  if (!request.max_tokens)
    request.max_tokens = optional_count(body, "max_tokens");
  request.n = optional_count(body, "n").value_or(1);
  if (request.n < 1 || request.n > max_choices)
    throw std::invalid_argument("n must be between 1 and " + std::to_string(max_choices));
  return request;
}

completion_shape shape_completion(const chat_request& request, const mock_settings& settings) {
  if (request.max_tokens && *request.max_tokens < settings.completion_tokens)
    return {*request.max_tokens, "length"};
  return {settings.completion_tokens, "stop"};
}

nlohmann::json chat_completion_body(const chat_request& request, const mock_settings& settings,
                                    const completion_ids& ids) {
  auto shape = shape_completion(request, settings);
  auto text = reply_text(shape.completion_tokens);
  json choices = json::array();
  for (std::size_t i = 0; i < request.n; ++i)
    choices.push_back({{"index", i},
                       {"message", {{"role", "assistant"}, {"content", text}}},
                       {"logprobs", nullptr},
                       {"finish_reason", shape.finish_reason}});
  json body{{"id", ids.id},
            {"object", "chat.completion"},
            {"created", ids.created},
            {"model", request.model},
            {"choices", std::move(choices)}};
  if (settings.usage)
    body["usage"] = usage_json(request.prompt_tokens, shape.completion_tokens * request.n);
  return body;
}

stream_events chat_stream_events(const chat_request& request, const mock_settings& settings,
                                 const completion_ids& ids) {
  auto shape = shape_completion(request, settings);
  auto pieces = split_reply(shape.completion_tokens, settings.chunks);
  bool send_usage = request.include_usage && settings.usage;
  json chunk{{"id", ids.id},
             {"object", "chat.completion.chunk"},
             {"created", ids.created},
             {"model", request.model}};

  stream_events result;
  for (std::size_t piece = 0; piece < pieces.size(); ++piece) {
    bool last = piece + 1 == pieces.size();
    json delta{{"content", pieces[piece]}};
    if (piece == 0)
      delta["role"] = "assistant";
    std::string event;
    for (std::size_t i = 0; i < request.n; ++i) {
      chunk["choices"] =
          json::array({{{"index", i},
                        {"delta", delta},
                        {"logprobs", nullptr},
                        {"finish_reason", last ? json(shape.finish_reason) : json(nullptr)}}});
      // OpenAI sends "usage": null on every chunk when the final usage chunk will follow.
      if (send_usage)
        chunk["usage"] = nullptr;
      event += sse_event(chunk);
    }
    result.events.push_back(std::move(event));
  }
  result.content_events = result.events.size();
  if (send_usage) {
    chunk["choices"] = json::array();
    chunk["usage"] = usage_json(request.prompt_tokens, shape.completion_tokens * request.n);
    result.events.push_back(sse_event(chunk));
  }

  if (settings.fault.kind == fault_kind::malformed_after) {
    auto good = std::min(settings.fault.value, result.events.size());
    result.events.resize(good);
    result.content_events = std::min(result.content_events, good);
    result.events.emplace_back("data: {not json\n\n");
  }
  result.events.emplace_back("data: [DONE]\n\n");
  return result;
}

chat_request parse_messages_request(const nlohmann::json& body) {
  if (!body.is_object())
    throw std::invalid_argument("the request body must be a JSON object");
  chat_request request;
  auto model = body.find("model");
  if (model == body.end() || !model->is_string())
    throw std::invalid_argument("model: Field required");
  request.model = model->get<std::string>();
  auto messages = body.find("messages");
  if (messages == body.end() || !messages->is_array())
    throw std::invalid_argument("messages: Field required");
  request.max_tokens = optional_count(body, "max_tokens");
  if (!request.max_tokens || *request.max_tokens == 0)
    throw std::invalid_argument("max_tokens: Field required");
  request.prompt_tokens = count_prompt_tokens(*messages);
  if (auto system = body.find("system"); system != body.end())
    request.prompt_tokens += count_content_tokens(*system);
  request.stream = optional_bool(body, "stream");
  request.include_usage = true;
  return request;
}

nlohmann::json anthropic_error_body(std::string_view message, std::size_t status) {
  std::string_view type = "api_error";
  switch (status) {
  case 400:
    type = "invalid_request_error";
    break;
  case 401:
    type = "authentication_error";
    break;
  case 403:
    type = "permission_error";
    break;
  case 404:
    type = "not_found_error";
    break;
  case 413:
    type = "request_too_large";
    break;
  case 429:
    type = "rate_limit_error";
    break;
  case 529:
    type = "overloaded_error";
    break;
  default:
    break;
  }
  return {{"type", "error"}, {"error", {{"type", type}, {"message", message}}}};
}

namespace {

std::string anthropic_stop_reason(const completion_shape& shape) {
  return shape.finish_reason == "length" ? "max_tokens" : "end_turn";
}

json anthropic_usage(std::size_t input, std::size_t output) {
  return {{"input_tokens", input},
          {"cache_creation_input_tokens", 0},
          {"cache_read_input_tokens", 0},
          {"output_tokens", output}};
}

std::string anthropic_event(const json& data) {
  return "event: " + data["type"].get<std::string>() + "\ndata: " + data.dump() + "\n\n";
}

} // namespace

nlohmann::json messages_body(const chat_request& request, const mock_settings& settings,
                             const completion_ids& ids) {
  auto shape = shape_completion(request, settings);
  json body{
      {"id", ids.id},
      {"type", "message"},
      {"role", "assistant"},
      {"model", request.model},
      {"content", json::array({{{"type", "text"}, {"text", reply_text(shape.completion_tokens)}}})},
      {"stop_reason", anthropic_stop_reason(shape)},
      {"stop_sequence", nullptr}};
  if (settings.usage)
    body["usage"] = anthropic_usage(request.prompt_tokens, shape.completion_tokens);
  return body;
}

stream_events messages_stream_events(const chat_request& request, const mock_settings& settings,
                                     const completion_ids& ids) {
  auto shape = shape_completion(request, settings);
  auto pieces = split_reply(shape.completion_tokens, settings.chunks);
  json message{{"id", ids.id},
               {"type", "message"},
               {"role", "assistant"},
               {"model", request.model},
               {"content", json::array()},
               {"stop_reason", nullptr},
               {"stop_sequence", nullptr}};
  if (settings.usage)
    message["usage"] = anthropic_usage(request.prompt_tokens, 1);
  std::string start =
      anthropic_event({{"type", "message_start"}, {"message", std::move(message)}}) +
      anthropic_event({{"type", "content_block_start"},
                       {"index", 0},
                       {"content_block", {{"type", "text"}, {"text", ""}}}});

  stream_events result;
  for (std::size_t piece = 0; piece < pieces.size(); ++piece) {
    std::string event = piece == 0 ? start : std::string();
    if (!pieces[piece].empty())
      event += anthropic_event({{"type", "content_block_delta"},
                                {"index", 0},
                                {"delta", {{"type", "text_delta"}, {"text", pieces[piece]}}}});
    result.events.push_back(std::move(event));
  }
  result.content_events = result.events.size();
  json end_delta{
      {"type", "message_delta"},
      {"delta", {{"stop_reason", anthropic_stop_reason(shape)}, {"stop_sequence", nullptr}}}};
  if (settings.usage)
    end_delta["usage"] = {{"output_tokens", shape.completion_tokens}};
  result.events.back() += anthropic_event({{"type", "content_block_stop"}, {"index", 0}}) +
                          anthropic_event(end_delta) + anthropic_event({{"type", "message_stop"}});

  if (settings.fault.kind == fault_kind::malformed_after) {
    auto good = std::min(settings.fault.value, result.events.size());
    result.events.resize(good);
    result.content_events = std::min(result.content_events, good);
    result.events.emplace_back("event: content_block_delta\ndata: {not json\n\n");
  }
  return result;
}

nlohmann::json embeddings_body(const nlohmann::json& body) {
  if (!body.is_object())
    throw std::invalid_argument("the request body must be a JSON object");
  auto model = body.find("model");
  if (model == body.end() || !model->is_string())
    throw std::invalid_argument("model is required and must be a string");
  auto input = body.find("input");
  if (input == body.end())
    throw std::invalid_argument("input is required");

  json data = json::array();
  std::size_t tokens = 0;
  auto add_token_ids = [&](const json& ids) {
    for (const auto& id : ids)
      if (!id.is_number_integer())
        throw std::invalid_argument("input token arrays must hold integers");
    tokens += ids.size();
    data.push_back(embedding_entry(data.size(), ids.dump()));
  };
  if (input->is_string()) {
    tokens = count_tokens(input->get_ref<const std::string&>());
    data.push_back(embedding_entry(0, input->get_ref<const std::string&>()));
  } else if (input->is_array() && !input->empty() && input->front().is_number_integer()) {
    add_token_ids(*input);
  } else if (input->is_array() && !input->empty()) {
    for (const auto& item : *input) {
      if (item.is_string()) {
        tokens += count_tokens(item.get_ref<const std::string&>());
        data.push_back(embedding_entry(data.size(), item.get_ref<const std::string&>()));
      } else if (item.is_array()) {
        add_token_ids(item);
      } else {
        throw std::invalid_argument("input items must be strings or token arrays");
      }
    }
  } else {
    throw std::invalid_argument("input must be a string or a non-empty array");
  }
  return {{"object", "list"},
          {"data", std::move(data)},
          {"model", *model},
          {"usage", {{"prompt_tokens", tokens}, {"total_tokens", tokens}}}};
}

nlohmann::json models_body(const std::vector<std::string>& models) {
  json data = json::array();
  for (const auto& model : models)
    data.push_back({{"id", model}, {"object", "model"}, {"created", 0}, {"owned_by", "mock"}});
  return {{"object", "list"}, {"data", std::move(data)}};
}

} // namespace tollgate::mock
