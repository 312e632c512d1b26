#include "actors/provider/echo/echo_model.hpp"

#include <cctype>
#include <cstring>
#include <functional>

#include "schemas/chat.hpp"

namespace tollgate::echo {

namespace {

using nlohmann::json;

std::vector<std::string> split_tokens(std::string_view text) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i])))
      ++i;
    auto start = i;
    while (i < text.size() && !std::isspace(static_cast<unsigned char>(text[i])))
      ++i;
    if (i > start)
      out.emplace_back(text.substr(start, i - start));
  }
  return out;
}

constexpr int embedding_dimensions = 8;

std::string base64_floats(const std::vector<float>& values) {
  static constexpr char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string bytes(values.size() * sizeof(float), '\0');
  std::memcpy(bytes.data(), values.data(), bytes.size()); // x86-64 and arm64 are little-endian
  std::string out;
  for (std::size_t i = 0; i < bytes.size(); i += 3) {
    uint32_t n = static_cast<uint8_t>(bytes[i]) << 16;
    if (i + 1 < bytes.size())
      n |= static_cast<uint8_t>(bytes[i + 1]) << 8;
    if (i + 2 < bytes.size())
      n |= static_cast<uint8_t>(bytes[i + 2]);
    out.push_back(alphabet[(n >> 18) & 63]);
    out.push_back(alphabet[(n >> 12) & 63]);
    out.push_back(i + 1 < bytes.size() ? alphabet[(n >> 6) & 63] : '=');
    out.push_back(i + 2 < bytes.size() ? alphabet[n & 63] : '=');
  }
  return out;
}

int64_t max_tokens_of(const json& request) {
  int64_t limit = 0;
  for (const char* field : {"max_completion_tokens", "max_tokens"})
    if (auto it = request.find(field); it != request.end() && it->is_number_integer())
      if (limit == 0 || it->get<int64_t>() < limit)
        limit = it->get<int64_t>();
  return limit;
}

std::string join(const std::vector<std::string>& tokens, std::size_t from, std::size_t to) {
  std::string out;
  for (auto i = from; i < to; ++i) {
    if (i > 0)
      out.push_back(' ');
    out += tokens[i];
  }
  return out;
}

json usage_json(const reply& r) {
  auto completion = static_cast<int64_t>(r.tokens.size());
  return {{"prompt_tokens", r.prompt_tokens},
          {"completion_tokens", completion},
          {"total_tokens", r.prompt_tokens + completion}};
}

} // namespace

int64_t count_tokens(std::string_view text) {
  return static_cast<int64_t>(split_tokens(text).size());
}

reply answer(const json& request) {
  reply out;
  std::string last_user;
  for (const auto& message : request.value("messages", json::array())) {
    auto text = schemas::content_text(message.value("content", json()));
    out.prompt_tokens += count_tokens(text);
    if (message.value("role", "") == "user")
      last_user = text;
  }
  out.tokens = split_tokens(last_user);
  out.tokens.insert(out.tokens.begin(), "echo:");
  out.finish_reason = "stop";
  auto limit = max_tokens_of(request);
  if (limit > 0 && static_cast<int64_t>(out.tokens.size()) > limit) {
    out.tokens.resize(static_cast<std::size_t>(limit));
    out.finish_reason = "length";
  }
  return out;
}

std::string completion_body(const json& request, const reply& r, const std::string& id,
                            int64_t created) {
  json body{
      {"id", id},
      {"object", "chat.completion"},
      {"created", created},
      {"model", request.value("model", "echo")},
      {"choices",
       json::array(
           {{{"index", 0},
             {"message", {{"role", "assistant"}, {"content", join(r.tokens, 0, r.tokens.size())}}},
             {"finish_reason", r.finish_reason}}})},
      {"usage", usage_json(r)}};
  return body.dump();
}

std::vector<std::string> stream_events(const json& request, const reply& r, const std::string& id,
                                       int64_t created) {
  std::vector<std::string> out;
  auto model = request.value("model", "echo");
  auto chunk = [&](json delta, json finish) {
    json c{{"id", id},
           {"object", "chat.completion.chunk"},
           {"created", created},
           {"model", model},
           {"choices",
            json::array({{{"index", 0}, {"delta", std::move(delta)}, {"finish_reason", finish}}})}};
    return "data: " + c.dump() + "\n\n";
  };
  out.push_back(chunk({{"role", "assistant"}, {"content", ""}}, nullptr));
  for (std::size_t i = 0; i < r.tokens.size(); ++i)
    out.push_back(chunk({{"content", (i > 0 ? " " : "") + r.tokens[i]}}, nullptr));
  out.push_back(chunk(json::object(), r.finish_reason));
  bool include_usage =
      request.contains("stream_options") && request["stream_options"].value("include_usage", false);
  if (include_usage) {
    json c{{"id", id},       {"object", "chat.completion.chunk"}, {"created", created},
           {"model", model}, {"choices", json::array()},          {"usage", usage_json(r)}};
    out.push_back("data: " + c.dump() + "\n\n");
  }
  out.push_back("data: [DONE]\n\n");
  return out;
}

std::string embeddings_body(const json& request) {
  std::vector<std::string> inputs;
  auto input = request.value("input", json());
  if (input.is_string())
    inputs.push_back(input.get<std::string>());
  else if (input.is_array())
    for (const auto& item : input)
      inputs.push_back(item.is_string() ? item.get<std::string>() : item.dump());
  // OpenAI's SDKs ask for base64 (little-endian float32) unless told otherwise.
  bool base64 = request.value("encoding_format", "float") == "base64";
  json data = json::array();
  int64_t tokens = 0;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    tokens += count_tokens(inputs[i]);
    auto seed = std::hash<std::string>{}(inputs[i]);
    std::vector<float> vector;
    for (int d = 0; d < embedding_dimensions; ++d)
      vector.push_back(static_cast<float>((seed >> (d * 8)) & 0xff) / 255.0f - 0.5f);
    json embedding = base64 ? json(base64_floats(vector)) : json(vector);
    data.push_back({{"object", "embedding"}, {"index", i}, {"embedding", std::move(embedding)}});
  }
  return json{{"object", "list"},
              {"data", std::move(data)},
              {"model", request.value("model", "echo")},
              {"usage", {{"prompt_tokens", tokens}, {"total_tokens", tokens}}}}
      .dump();
}

} // namespace tollgate::echo
