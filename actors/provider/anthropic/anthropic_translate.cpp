#include "actors/provider/anthropic/anthropic_translate.hpp"

#include <algorithm>
#include <ctime>
#include <stdexcept>
#include <utility>
#include <vector>

namespace tollgate::anthropic {

namespace {

using json = nlohmann::json;

/// A member that is present and not null, else nullptr.
const json* member(const json& object, const char* key) {
  if (!object.is_object())
    return nullptr;
  auto it = object.find(key);
  return it == object.end() || it->is_null() ? nullptr : &*it;
}

std::string string_member(const json& object, const char* key) {
  const auto* value = member(object, key);
  return value && value->is_string() ? value->get<std::string>() : std::string();
}

int64_t int_member(const json& object, const char* key) {
  const auto* value = member(object, key);
  return value && value->is_number_integer() ? value->get<int64_t>() : 0;
}

/// Copies a part's cache_control (an Anthropic extension some OpenAI clients send) to a block.
void keep_cache_control(json& block, const json& part) {
  if (const auto* cache = member(part, "cache_control"))
    block["cache_control"] = *cache;
}

json text_block(std::string text, const json& part) {
  json block{{"type", "text"}, {"text", std::move(text)}};
  keep_cache_control(block, part);
  return block;
}

/// An image_url part as an image block: data URLs inline, other URLs by reference.
json image_block(const json& part) {
  const auto* image = member(part, "image_url");
  std::string url = !image               ? std::string()
                    : image->is_string() ? image->get<std::string>()
                                         : string_member(*image, "url");
  if (url.empty())
    throw std::invalid_argument("an image_url content part has no url");
  json source;
  if (url.starts_with("data:")) {
    constexpr std::string_view base64_suffix = ";base64";
    auto comma = url.find(',');
    auto meta = comma == std::string::npos ? std::string() : url.substr(5, comma - 5);
    if (!meta.ends_with(base64_suffix))
      throw std::invalid_argument("image data URLs must be base64-encoded");
    source = {{"type", "base64"},
              {"media_type", meta.substr(0, meta.size() - base64_suffix.size())},
              {"data", url.substr(comma + 1)}};
  } else {
    source = {{"type", "url"}, {"url", url}};
  }
  json block{{"type", "image"}, {"source", std::move(source)}};
  keep_cache_control(block, part);
  return block;
}

/// Appends a message's content as Anthropic blocks. Empty text is dropped: Anthropic refuses
/// empty text blocks.
void append_content(json& blocks, const json& content, bool images_allowed) {
  if (content.is_null())
    return;
  if (content.is_string()) {
    if (!content.get_ref<const std::string&>().empty())
      blocks.push_back(text_block(content.get<std::string>(), json()));
    return;
  }
  if (!content.is_array())
    throw std::invalid_argument("message content must be a string or an array of parts");
  for (const auto& part : content) {
    auto type = string_member(part, "type");
    if (type == "text" || type == "refusal") {
      auto text = string_member(part, type.c_str());
      if (!text.empty())
        blocks.push_back(text_block(std::move(text), part));
    } else if (type == "image_url" && images_allowed) {
      blocks.push_back(image_block(part));
    } else {
      throw std::invalid_argument("content parts of type '" + type +
                                  "' are not supported by anthropic providers");
    }
  }
}

/// The tool_use block of one assistant tool call; arguments that are not a JSON object
/// become an empty input, as Anthropic accepts nothing else.
json tool_use_block(const json& call) {
  const auto* function = member(call, "function");
  if (!function)
    throw std::invalid_argument("a tool call has no function");
  auto input = json::parse(string_member(*function, "arguments"), nullptr, false);
  if (!input.is_object())
    input = json::object();
  return {{"type", "tool_use"},
          {"id", string_member(call, "id")},
          {"name", string_member(*function, "name")},
          {"input", std::move(input)}};
}

json tool_result_block(const json& message) {
  json block{{"type", "tool_result"}, {"tool_use_id", string_member(message, "tool_call_id")}};
  const auto* content = member(message, "content");
  if (content && content->is_string()) {
    if (!content->get_ref<const std::string&>().empty())
      block["content"] = *content;
  } else if (content) {
    json parts = json::array();
    append_content(parts, *content, true);
    if (!parts.empty())
      block["content"] = std::move(parts);
  }
  return block;
}

/// All system and developer messages as Anthropic's top-level system: one string (messages
/// joined by blank lines), or blocks when some carry cache_control.
json system_prompt(const std::vector<json>& system_blocks) {
  bool cached = false;
  for (const auto& blocks : system_blocks)
    for (const auto& block : blocks)
      cached = cached || block.contains("cache_control");
  if (cached) {
    json all = json::array();
    for (const auto& blocks : system_blocks)
      for (const auto& block : blocks)
        all.push_back(block);
    return all;
  }
  std::string text;
  for (const auto& blocks : system_blocks) {
    if (blocks.empty())
      continue;
    if (!text.empty())
      text += "\n\n";
    for (const auto& block : blocks)
      text += block["text"].get<std::string>();
  }
  return text;
}

json tool_definition(const json& tool) {
  const auto* function = member(tool, "function");
  if (string_member(tool, "type") != "function" || !function)
    throw std::invalid_argument("only function tools are supported by anthropic providers");
  json out{{"name", string_member(*function, "name")}};
  if (auto description = string_member(*function, "description"); !description.empty())
    out["description"] = std::move(description);
  const auto* parameters = member(*function, "parameters");
  out["input_schema"] = parameters && parameters->is_object()
                            ? *parameters
                            : json{{"type", "object"}, {"properties", json::object()}};
  keep_cache_control(out, tool);
  return out;
}

/// OpenAI's tool_choice (and parallel_tool_calls) as Anthropic's tool_choice; null if unset.
json tool_choice_of(const json& request) {
  json choice;
  if (const auto* given = member(request, "tool_choice")) {
    if (given->is_string()) {
      const auto& mode = given->get_ref<const std::string&>();
      if (mode == "auto")
        choice = {{"type", "auto"}};
      else if (mode == "none")
        choice = {{"type", "none"}};
      else if (mode == "required")
        choice = {{"type", "any"}};
      else
        throw std::invalid_argument("tool_choice '" + mode + "' is not supported");
    } else if (const auto* function = member(*given, "function")) {
      choice = {{"type", "tool"}, {"name", string_member(*function, "name")}};
    } else {
      throw std::invalid_argument("tool_choice must be auto, none, required or a function");
    }
  }
  const auto* parallel = member(request, "parallel_tool_calls");
  if (parallel && parallel->is_boolean() && !parallel->get<bool>()) {
    if (choice.is_null())
      choice = {{"type", "auto"}};
    if (choice["type"] != "none")
      choice["disable_parallel_tool_use"] = true;
  }
  return choice;
}

json openai_usage(int64_t input, int64_t cache_creation, int64_t cache_read, int64_t output) {
  // Cache writes and reads are prompt tokens too: priced at the input price.
  auto prompt = input + cache_creation + cache_read;
  return {{"prompt_tokens", prompt},
          {"completion_tokens", output},
          {"total_tokens", prompt + output},
          {"prompt_tokens_details", {{"cached_tokens", cache_read}}}};
}

/// OpenAI's error type for an Anthropic one.
std::string openai_error_type(std::string_view type) {
  if (type == "authentication_error" || type == "permission_error")
    return "authentication_error";
  if (type == "rate_limit_error")
    return "rate_limit_error";
  if (type == "invalid_request_error" || type == "not_found_error" || type == "request_too_large")
    return "invalid_request_error";
  return "server_error";
}

json openai_error(const std::string& type, const std::string& message) {
  return {{"error",
           {{"message", message},
            {"type", openai_error_type(type)},
            {"param", nullptr},
            {"code", type.empty() ? json(nullptr) : json(type)}}}};
}

std::string sse(const json& data) {
  return "data: " + data.dump() + "\n\n";
}

} // namespace

std::string to_messages_request(const nlohmann::json& openai_chat) {
  if (!openai_chat.is_object())
    throw std::invalid_argument("the request must be a JSON object");
  if (int_member(openai_chat, "n") > 1)
    throw std::invalid_argument("n > 1 is not supported by anthropic providers");
  json out{{"model", string_member(openai_chat, "model")}};

  int64_t max_tokens = 0;
  for (const char* field : {"max_completion_tokens", "max_tokens"})
    if (auto value = int_member(openai_chat, field); value > 0)
      max_tokens = max_tokens == 0 ? value : std::min(max_tokens, value);
  out["max_tokens"] = max_tokens > 0 ? max_tokens : default_max_tokens;

  std::vector<json> system_blocks;
  json messages = json::array();
  // Consecutive messages of one role become one: tool results and the user's next words
  // travel in the same user turn.
  auto add = [&](const char* role, json blocks) {
    if (blocks.empty())
      return;
    if (!messages.empty() && messages.back()["role"] == role) {
      for (auto& block : blocks)
        messages.back()["content"].push_back(std::move(block));
      return;
    }
    messages.push_back({{"role", role}, {"content", std::move(blocks)}});
  };
  const auto* given = member(openai_chat, "messages");
  if (!given || !given->is_array())
    throw std::invalid_argument("messages must be an array");
  for (const auto& message : *given) {
    auto role = string_member(message, "role");
    const auto* content = member(message, "content");
    json blocks = json::array();
    if (role == "system" || role == "developer") {
      if (content)
        append_content(blocks, *content, false);
      system_blocks.push_back(std::move(blocks));
    } else if (role == "user") {
      if (content)
        append_content(blocks, *content, true);
      add("user", std::move(blocks));
    } else if (role == "assistant") {
      if (content)
        append_content(blocks, *content, false);
      if (const auto* calls = member(message, "tool_calls"); calls && calls->is_array())
        for (const auto& call : *calls)
          blocks.push_back(tool_use_block(call));
      add("assistant", std::move(blocks));
    } else if (role == "tool") {
      blocks.push_back(tool_result_block(message));
      add("user", std::move(blocks));
    } else {
      throw std::invalid_argument("messages of role '" + role +
                                  "' are not supported by anthropic providers");
    }
  }
  auto system = system_prompt(system_blocks);
  if (system.is_string() ? !system.get_ref<const std::string&>().empty() : !system.empty())
    out["system"] = std::move(system);
  out["messages"] = std::move(messages);

  if (const auto* tools = member(openai_chat, "tools");
      tools && tools->is_array() && !tools->empty()) {
    json defined = json::array();
    for (const auto& tool : *tools)
      defined.push_back(tool_definition(tool));
    out["tools"] = std::move(defined);
    if (auto choice = tool_choice_of(openai_chat); !choice.is_null())
      out["tool_choice"] = std::move(choice);
  }
  if (const auto* stop = member(openai_chat, "stop")) {
    json sequences = stop->is_string() ? json::array({*stop}) : *stop;
    if (sequences.is_array() && !sequences.empty())
      out["stop_sequences"] = std::move(sequences);
  }
  for (const char* field : {"temperature", "top_p", "top_k"})
    if (const auto* value = member(openai_chat, field); value && value->is_number())
      out[field] = *value;
  if (const auto* stream = member(openai_chat, "stream"); stream && stream->is_boolean())
    out["stream"] = *stream;
  if (auto user = string_member(openai_chat, "user"); !user.empty())
    out["metadata"] = {{"user_id", std::move(user)}};
  return out.dump();
}

std::string to_chat_completion(const nlohmann::json& anthropic_message, const std::string& model) {
  std::string text;
  json tool_calls = json::array();
  if (const auto* content = member(anthropic_message, "content"); content && content->is_array())
    for (const auto& block : *content) {
      auto type = string_member(block, "type");
      if (type == "text") {
        text += string_member(block, "text");
      } else if (type == "tool_use") {
        const auto* input = member(block, "input");
        tool_calls.push_back({{"id", string_member(block, "id")},
                              {"type", "function"},
                              {"function",
                               {{"name", string_member(block, "name")},
                                {"arguments", input ? input->dump() : std::string("{}")}}}});
      }
    }
  json message{{"role", "assistant"},
               {"content", text.empty() && !tool_calls.empty() ? json(nullptr) : json(text)}};
  if (!tool_calls.empty())
    message["tool_calls"] = std::move(tool_calls);
  json body{{"id", string_member(anthropic_message, "id")},
            {"object", "chat.completion"},
            {"created", static_cast<int64_t>(std::time(nullptr))},
            {"model", model.empty() ? string_member(anthropic_message, "model") : model},
            {"choices",
             json::array({{{"index", 0},
                           {"message", std::move(message)},
                           {"logprobs", nullptr},
                           {"finish_reason",
                            finish_reason_of(string_member(anthropic_message, "stop_reason"))}}})}};
  if (const auto* usage = member(anthropic_message, "usage"); usage && usage->is_object())
    body["usage"] = openai_usage(
        int_member(*usage, "input_tokens"), int_member(*usage, "cache_creation_input_tokens"),
        int_member(*usage, "cache_read_input_tokens"), int_member(*usage, "output_tokens"));
  return body.dump();
}

std::string finish_reason_of(std::string_view stop_reason) {
  if (stop_reason == "max_tokens")
    return "length";
  if (stop_reason == "tool_use")
    return "tool_calls";
  if (stop_reason == "refusal")
    return "content_filter";
  return "stop"; // end_turn, stop_sequence, pause_turn
}

int status_of_error_type(std::string_view type) {
  static constexpr std::pair<std::string_view, int> statuses[] = {
      {"invalid_request_error", 400}, {"authentication_error", 401},
      {"billing_error", 402},         {"permission_error", 403},
      {"not_found_error", 404},       {"request_too_large", 413},
      {"rate_limit_error", 429},      {"api_error", 500},
      {"timeout_error", 504},         {"overloaded_error", 529}};
  for (const auto& [name, status] : statuses)
    if (name == type)
      return status;
  return 502;
}

std::string to_openai_error(const std::string& body) {
  auto doc = json::parse(body, nullptr, false);
  const auto* error = member(doc, "error");
  if (!error || !error->is_object())
    return body;
  return openai_error(string_member(*error, "type"), string_member(*error, "message")).dump();
}

anthropic_stream_translator::anthropic_stream_translator(std::string model, int64_t created,
                                                         bool emit_error_event)
    : model_(std::move(model))
    , created_(created)
    , emit_error_event_(emit_error_event) {}

std::string anthropic_stream_translator::feed(std::string_view bytes) {
  std::string out;
  if (step_ != step::streaming)
    return out;
  for (const auto& event : parser_.feed(bytes)) {
    if (event.data.empty())
      continue; // comments and keep-alives
    auto doc = json::parse(event.data, nullptr, false);
    if (!doc.is_object())
      fail(json{{"type", "upstream_malformed"}, {"message", "the upstream sent a malformed event"}},
           out);
    else
      on_event(doc, out);
    if (step_ != step::streaming)
      break;
  }
  return out;
}

void anthropic_stream_translator::on_event(const nlohmann::json& event, std::string& out) {
  auto type = string_member(event, "type");
  if (type == "message_start") {
    if (const auto* message = member(event, "message")) {
      id_ = string_member(*message, "id");
      if (model_.empty())
        model_ = string_member(*message, "model");
      if (const auto* usage = member(*message, "usage"))
        take_usage(*usage);
    }
  } else if (type == "content_block_start") {
    block opened;
    const auto* content = member(event, "content_block");
    auto kind = content ? string_member(*content, "type") : std::string();
    if (kind == "text") {
      opened.kind = block_kind::text;
      if (auto text = string_member(*content, "text"); !text.empty())
        emit_delta({{"content", std::move(text)}}, out);
    } else if (kind == "tool_use") {
      opened.kind = block_kind::tool_use;
      opened.tool_index = tool_calls_++;
      emit_delta(
          {{"tool_calls",
            json::array(
                {{{"index", opened.tool_index},
                  {"id", string_member(*content, "id")},
                  {"type", "function"},
                  {"function", {{"name", string_member(*content, "name")}, {"arguments", ""}}}}})}},
          out);
    }
    // Thinking and server tool blocks are not part of an OpenAI answer: ignored.
    blocks_[int_member(event, "index")] = opened;
  } else if (type == "content_block_delta") {
    auto it = blocks_.find(int_member(event, "index"));
    const auto* delta = member(event, "delta");
    if (it == blocks_.end() || !delta)
      return;
    auto kind = string_member(*delta, "type");
    if (it->second.kind == block_kind::text && kind == "text_delta") {
      if (auto text = string_member(*delta, "text"); !text.empty())
        emit_delta({{"content", std::move(text)}}, out);
    } else if (it->second.kind == block_kind::tool_use && kind == "input_json_delta") {
      if (auto partial = string_member(*delta, "partial_json"); !partial.empty()) {
        it->second.has_arguments = true;
        emit_delta({{"tool_calls", json::array({{{"index", it->second.tool_index},
                                                 {"function", {{"arguments", partial}}}}})}},
                   out);
      }
    }
  } else if (type == "content_block_stop") {
    auto it = blocks_.find(int_member(event, "index"));
    if (it == blocks_.end())
      return;
    // A tool called without input still has JSON arguments.
    if (it->second.kind == block_kind::tool_use && !it->second.has_arguments)
      emit_delta({{"tool_calls", json::array({{{"index", it->second.tool_index},
                                               {"function", {{"arguments", "{}"}}}}})}},
                 out);
    blocks_.erase(it);
  } else if (type == "message_delta") {
    if (const auto* delta = member(event, "delta"))
      if (auto stop = string_member(*delta, "stop_reason"); !stop.empty())
        finish_reason_ = finish_reason_of(stop);
    if (const auto* usage = member(event, "usage"))
      take_usage(*usage);
  } else if (type == "message_stop") {
    emit_finish(out);
    if (usage_seen_) {
      auto chunk = chunk_base();
      chunk["choices"] = json::array();
      chunk["usage"] =
          openai_usage(input_tokens_, cache_creation_tokens_, cache_read_tokens_, output_tokens_);
      out += sse(chunk);
    }
    out += "data: [DONE]\n\n";
    step_ = step::finished;
  } else if (type == "error") {
    const auto* error = member(event, "error");
    fail(error ? *error : json::object(), out);
  }
  // ping, and event types added to the API later: nothing to pass on.
}

void anthropic_stream_translator::take_usage(const nlohmann::json& usage) {
  if (!usage.is_object())
    return;
  usage_seen_ = true;
  // message_delta's counts are cumulative: the latest wins.
  auto take = [&](const char* field, int64_t& into) {
    if (const auto* value = member(usage, field); value && value->is_number_integer())
      into = value->get<int64_t>();
  };
  take("input_tokens", input_tokens_);
  take("cache_creation_input_tokens", cache_creation_tokens_);
  take("cache_read_input_tokens", cache_read_tokens_);
  take("output_tokens", output_tokens_);
}

void anthropic_stream_translator::emit_delta(nlohmann::json delta, std::string& out) {
  if (!role_sent_) {
    delta["role"] = "assistant";
    role_sent_ = true;
  }
  auto chunk = chunk_base();
  chunk["choices"] = json::array({{{"index", 0},
                                   {"delta", std::move(delta)},
                                   {"logprobs", nullptr},
                                   {"finish_reason", nullptr}}});
  out += sse(chunk);
}

void anthropic_stream_translator::emit_finish(std::string& out) {
  json delta = json::object();
  if (!role_sent_) {
    delta["role"] = "assistant";
    role_sent_ = true;
  }
  auto chunk = chunk_base();
  chunk["choices"] = json::array({{{"index", 0},
                                   {"delta", std::move(delta)},
                                   {"logprobs", nullptr},
                                   {"finish_reason", finish_reason_}}});
  out += sse(chunk);
}

void anthropic_stream_translator::fail(const nlohmann::json& anthropic_error, std::string& out) {
  auto type = string_member(anthropic_error, "type");
  auto message = string_member(anthropic_error, "message");
  if (message.empty())
    message = "the upstream stream failed";
  auto body = openai_error(type, message).dump();
  failure_ = stream_failure{status_of_error_type(type),
                            "anthropic " + (type.empty() ? "error" : type) + ": " + message, body};
  if (emit_error_event_)
    out += "data: " + body + "\n\n";
  step_ = step::failed;
}

nlohmann::json anthropic_stream_translator::chunk_base() const {
  return {
      {"id", id_}, {"object", "chat.completion.chunk"}, {"created", created_}, {"model", model_}};
}

void to_openai_result(transfer_result& result, const std::string& model,
                      const anthropic_stream_translator* translator) {
  if (translator && translator->failure()) {
    // Reported as a failed transfer, whether or not the provider then cancelled it.
    const auto& failure = *translator->failure();
    result.curl_code = 0;
    result.cancelled = false;
    result.http_status = failure.status;
    result.error = failure.message;
    result.body = failure.body;
    return;
  }
  if (result.cancelled || result.curl_code != 0)
    return;
  if (result.http_status < 200 || result.http_status >= 300) {
    result.body = to_openai_error(result.body);
    return;
  }
  if (translator) {
    if (!translator->finished()) {
      result.http_status = 502;
      result.error = "the anthropic stream ended before message_stop";
      result.body = openai_error("api_error", result.error).dump();
    }
    return;
  }
  auto doc = json::parse(result.body, nullptr, false);
  // What is not JSON stays as it is: the requester reports it as malformed.
  if (doc.is_object())
    result.body = to_chat_completion(doc, model);
}

} // namespace tollgate::anthropic
