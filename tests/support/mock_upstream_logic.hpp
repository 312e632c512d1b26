#pragma once

#include <nlohmann/json.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

/// The framework-free half of tollgate_mock_upstream: settings, token counting and the
/// OpenAI wire bodies it answers. The server (mock_upstream.cpp) only adds timing and I/O.
namespace tollgate::mock {

/// What the mock does wrong on purpose.
enum class fault_kind { none, status, reset_after, stall_after, malformed_after };

/// A parsed `x-mock-fault` / `--fault` value.
struct fault_spec {
  fault_kind kind = fault_kind::none;
  /// The HTTP status for `status`, else the number of SSE events sent before the fault.
  std::size_t value = 0;

  bool operator==(const fault_spec&) const = default;
};

/// Parses `none`, `status:<code>`, `reset-after:<k>`, `stall-after:<k>`,
/// `malformed-after:<k>`; throws std::invalid_argument naming the bad value.
fault_spec parse_fault(std::string_view text);
/// The inverse of parse_fault.
std::string to_string(const fault_spec& fault);

/// Behaviour of one answer: process defaults, overridden per request by headers.
struct mock_settings {
  std::int64_t latency_ms = 0;
  std::int64_t ttft_ms = 0;
  std::size_t chunks = 4;
  std::int64_t interval_ms = 0;
  std::size_t completion_tokens = 16;
  bool usage = true;
  fault_spec fault{};

  bool operator==(const mock_settings&) const = default;
};

/// Applies one request header (name in lower case). Returns false if it is not an
/// `x-mock-*` header; throws std::invalid_argument for an unknown `x-mock-*` name or a bad value.
bool apply_setting_header(mock_settings& settings, std::string_view name, std::string_view value);
/// Applies a partial update `{"latency_ms":..,"usage":true,"fault":"none",...}`; throws
/// std::invalid_argument for unknown keys or bad values (and then changes nothing).
void apply_settings_patch(mock_settings& settings, const nlohmann::json& patch);
nlohmann::json to_json(const mock_settings& settings);

/// Sets a command-line flag such as `--latency-ms`; false if `flag` is not a setting.
bool apply_setting_flag(mock_settings& settings, std::string_view flag, std::string_view value);

/// The mock's tokenizer: one token per whitespace-separated word.
std::size_t count_tokens(std::string_view text);
/// Sum of count_tokens over every message's content (a string, or the `text` of parts).
std::size_t count_prompt_tokens(const nlohmann::json& messages);

/// "mock reply alpha bravo ...": exactly `tokens` tokens (a prefix of that for 0..2).
std::string reply_text(std::size_t tokens);
/// reply_text(tokens) cut into min(chunks, tokens) pieces of near-equal token counts (at least
/// one piece); concatenated they give reply_text(tokens) again.
std::vector<std::string> split_reply(std::size_t tokens, std::size_t chunks);

/// 8 numbers in [-1, 1] that depend only on `input`.
std::array<double, 8> embedding_vector(std::string_view input);

/// OpenAI error body `{"error":{"message":..,"type":..,"code":..}}` (`code` null when empty).
nlohmann::json error_body(std::string_view message, std::string_view type, std::string_view code);

/// What a chat completion request asks for; throws std::invalid_argument when malformed.
struct chat_request {
  std::string model;
  bool stream = false;
  bool include_usage = false;
  std::optional<std::size_t> max_tokens;
  std::size_t n = 1;
  std::size_t prompt_tokens = 0;
};
chat_request parse_chat_request(const nlohmann::json& body);

/// The answer's size and the reason it ended.
struct completion_shape {
  std::size_t completion_tokens = 0;
  std::string finish_reason;
};
completion_shape shape_completion(const chat_request& request, const mock_settings& settings);

/// Fields shared by every body of one completion.
struct completion_ids {
  std::string id;
  std::int64_t created = 0;
};

/// The non-streaming `chat.completion` body (no "usage" when settings.usage is off).
nlohmann::json chat_completion_body(const chat_request& request, const mock_settings& settings,
                                    const completion_ids& ids);

/// The SSE events of one streamed answer, in order, each `data: ...\n\n`.
struct stream_events {
  std::vector<std::string> events;
  /// events[0, content_events) carry text; the rest are usage, malformed data and [DONE].
  std::size_t content_events = 0;
};
/// Content events, the usage event (if asked for and reported) and `data: [DONE]`; with a
/// malformed-after:k fault, the first k events, then `data: {not json`, then [DONE].
stream_events chat_stream_events(const chat_request& request, const mock_settings& settings,
                                 const completion_ids& ids);

// Anthropic's Messages API (`/v1/messages`), answered with the same settings and reply text.

/// What a Messages API request asks for (max_tokens required; the top-level system prompt
/// counts as prompt tokens; usage is always reported); throws std::invalid_argument when
/// malformed.
chat_request parse_messages_request(const nlohmann::json& body);

/// Anthropic's error body `{"type":"error","error":{"type":..,"message":..}}`, its type the one
/// Anthropic uses with `status` (429: rate_limit_error, 529: overloaded_error, ...).
nlohmann::json anthropic_error_body(std::string_view message, std::size_t status);

/// The non-streaming Anthropic `message` (no "usage" when settings.usage is off).
nlohmann::json messages_body(const chat_request& request, const mock_settings& settings,
                             const completion_ids& ids);

/// Anthropic's events of one streamed answer, one reply piece per entry: message_start and
/// content_block_start travel with the first piece, content_block_stop, message_delta and
/// message_stop make the last entry. With malformed-after:k, the first k entries, then a
/// `data: {not json` event, and nothing after it.
stream_events messages_stream_events(const chat_request& request, const mock_settings& settings,
                                     const completion_ids& ids);

/// The `/v1/embeddings` answer; throws std::invalid_argument when `input` is missing or bad.
nlohmann::json embeddings_body(const nlohmann::json& body);

/// The `/v1/models` answer.
nlohmann::json models_body(const std::vector<std::string>& models);

} // namespace tollgate::mock
