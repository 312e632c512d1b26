#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "actors/provider/upstream_loop.hpp"
#include "schemas/sse.hpp"

// Chat completions <-> Anthropic's Messages API, both ways, so that an Anthropic upstream
// looks exactly like an OpenAI one to the request actor. Pure: no actors, no I/O.

namespace tollgate::anthropic {

/// Anthropic requires max_tokens; this is what a request without one gets.
inline constexpr int64_t default_max_tokens = 4096;

/// The Messages API request for an OpenAI chat completion request. Throws
/// std::invalid_argument for what Anthropic cannot express (n > 1, unknown roles or parts).
std::string to_messages_request(const nlohmann::json& openai_chat);

/// The OpenAI `chat.completion` body for an Anthropic `message`; `model` is the model the
/// answer names (the message's own when empty).
std::string to_chat_completion(const nlohmann::json& anthropic_message, const std::string& model);

/// OpenAI's finish_reason for an Anthropic stop_reason.
std::string finish_reason_of(std::string_view stop_reason);

/// The HTTP status Anthropic uses for an error type ("overloaded_error" -> 529).
int status_of_error_type(std::string_view type);

/// OpenAI's error body `{"error":{"message","type","param","code"}}` for Anthropic's
/// `{"type":"error","error":{"type","message"}}`; `body` unchanged if it is not JSON.
std::string to_openai_error(const std::string& body);

/// How an Anthropic stream failed, as an OpenAI upstream would have reported it.
struct stream_failure {
  int status = 502;
  std::string message;
  std::string body; ///< OpenAI error JSON.
};

/// Turns Anthropic's server-sent events, fed in pieces of any size, into OpenAI's
/// `chat.completion.chunk` events: content and tool call deltas, a final chunk with the
/// finish_reason, a usage chunk (whenever Anthropic reported usage), then `data: [DONE]`.
class anthropic_stream_translator {
public:
  /// `model` names the chunks (the stream's own when empty); `created` is their timestamp.
  /// With `emit_error_event` an Anthropic error becomes an OpenAI error event; either way
  /// the stream ends there without [DONE] and failure() tells why.
  anthropic_stream_translator(std::string model, int64_t created, bool emit_error_event = true);

  /// Feeds Anthropic bytes; returns the OpenAI bytes they complete (possibly none).
  std::string feed(std::string_view bytes);

  /// message_stop arrived and [DONE] was emitted.
  bool finished() const noexcept { return step_ == step::finished; }
  /// Why the stream failed (an error event or malformed data), if it did.
  const std::optional<stream_failure>& failure() const noexcept { return failure_; }

private:
  enum class step { streaming, finished, failed };
  enum class block_kind { text, tool_use, ignored };

  struct block {
    block_kind kind = block_kind::ignored;
    int tool_index = 0;
    bool has_arguments = false;
  };

  void on_event(const nlohmann::json& event, std::string& out);
  void take_usage(const nlohmann::json& usage);
  void emit_delta(nlohmann::json delta, std::string& out);
  void emit_finish(std::string& out);
  void fail(const nlohmann::json& anthropic_error, std::string& out);
  nlohmann::json chunk_base() const;

  schemas::sse_parser parser_;
  std::string model_;
  int64_t created_ = 0;
  bool emit_error_event_ = true;
  std::string id_;
  step step_ = step::streaming;
  bool role_sent_ = false;
  bool finish_sent_ = false;
  std::string finish_reason_ = "stop";
  std::map<int64_t, block> blocks_; ///< Open content blocks by Anthropic index.
  int tool_calls_ = 0;
  bool usage_seen_ = false;
  int64_t input_tokens_ = 0;
  int64_t cache_creation_tokens_ = 0;
  int64_t cache_read_tokens_ = 0;
  int64_t output_tokens_ = 0;
  std::optional<stream_failure> failure_;
};

/// Rewrites how an Anthropic transfer ended as an OpenAI upstream would have ended it:
/// error bodies in OpenAI's shape, a buffered answer as a chat.completion, and a stream that
/// failed or broke off before message_stop as a failed transfer (so the caller gets no
/// [DONE]). `translator` is the stream's, null for buffered calls.
void to_openai_result(transfer_result& result, const std::string& model,
                      const anthropic_stream_translator* translator);

} // namespace tollgate::anthropic
