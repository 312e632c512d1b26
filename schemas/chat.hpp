#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "schemas/result.hpp"

// OpenAI chat completion and embedding requests: validated enough to meter them, otherwise
// passed through untouched (unknown fields included).

namespace tollgate::schemas {

/// A validated chat completion request.
struct chat_request {
  nlohmann::json body; ///< The caller's body; forwarded upstream with tollgate's changes.
  std::string model;
  bool stream = false;
  bool include_usage = false;               ///< The caller asked for the usage chunk.
  int64_t max_tokens = 0;                   ///< 0: the caller set no limit.
  std::string max_tokens_field;             ///< "max_tokens" or "max_completion_tokens".
  int64_t choices = 1;                      ///< n
  int64_t prompt_tokens = 0;                ///< Estimate (an upper bound for ordinary text).
  std::vector<std::string> fallback_models; ///< "models": tried in order if `model` fails.
};

/// A validated embeddings request.
struct embeddings_request {
  nlohmann::json body;
  std::string model;
  int64_t input_tokens = 0; ///< Estimate.
};

result<chat_request> parse_chat_request(std::string_view body);
result<embeddings_request> parse_embeddings_request(std::string_view body);

/// Tokens a text is held for before the upstream reports the real count: one per three bytes,
/// rounded up, which is above what common tokenizers produce for ordinary text.
int64_t estimate_tokens(std::string_view text);
/// The same estimate for a text of `bytes` bytes.
int64_t estimate_tokens_of_size(int64_t bytes);

/// The text of a message's content: a string, or the text parts of an array.
std::string content_text(const nlohmann::json& content);

} // namespace tollgate::schemas
