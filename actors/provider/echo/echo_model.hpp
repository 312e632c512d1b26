#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace tollgate::echo {

/// The echo model's tokenizer: a token is a run of non-whitespace characters.
int64_t count_tokens(std::string_view text);

/// What the echo model answers to a chat request: the last user message, repeated back
/// ("echo: ..."), cut at max_tokens.
struct reply {
  std::vector<std::string> tokens;
  int64_t prompt_tokens = 0;
  std::string finish_reason; ///< "stop" or "length"
};

reply answer(const nlohmann::json& request);

/// A whole chat.completion object for `request`.
std::string completion_body(const nlohmann::json& request, const reply& r, const std::string& id,
                            int64_t created);

/// The server-sent events of a streamed answer: one chunk per token, then the usage chunk if
/// the request asked for it, then [DONE].
std::vector<std::string> stream_events(const nlohmann::json& request, const reply& r,
                                       const std::string& id, int64_t created);

/// An embeddings answer: 8 deterministic numbers per input.
std::string embeddings_body(const nlohmann::json& request);

} // namespace tollgate::echo
