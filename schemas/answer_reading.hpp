#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace tollgate::schemas {

/// What the gateway reads from an upstream's answer to meter it: a whole chat completion, or
/// one event of a stream. Everything else in the answer passes through untouched.
struct answer_reading {
  bool object = false;    ///< the text is one JSON object; nothing below is read otherwise
  bool has_usage = false; ///< `usage` is an object
  /// `usage.prompt_tokens` and `usage.completion_tokens`, where they are integers.
  std::optional<int64_t> prompt_tokens;
  std::optional<int64_t> completion_tokens;
  bool has_choices = false;   ///< the answer has `choices` (of any type)
  bool choices_empty = false; ///< `choices` is an empty array
  /// Generated text, for calls whose usage is not reported: in each choice, the length of
  /// `message.content` and `delta.content`, and of `tool_calls` there as compact JSON.
  int64_t generated_bytes = 0;
};

/// Reads an answer (simdjson on the hot path; nlohmann's parser where simdjson refuses, so
/// that both agree on what counts as malformed). Where a key repeats, the last one counts.
answer_reading read_answer(std::string_view text);

} // namespace tollgate::schemas
