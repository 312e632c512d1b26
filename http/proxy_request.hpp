#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include <caf/all.hpp>
#include <nlohmann/json.hpp>

#include "actors/directory/key_handles.hpp"
#include "actors/messages.hpp"
#include "config/config.hpp"
#include "http/responses.hpp"
#include "http/write_pacer.hpp"
#include "schemas/sse.hpp"

namespace tollgate::http {

/// A metered call to an upstream model, as the RESTinio thread parsed and validated it.
struct proxy_call {
  /// The gateway's own id of the call: keys its hold, charge and usage record, so a caller
  /// can never make two calls share one.
  std::string request_id;
  /// What the answers carry as x-request-id: the caller's own id if it sent one.
  std::string echo_id;
  std::string key_hash;
  std::string client_ip;
  std::string path; ///< Upstream path: "chat/completions" or "embeddings".
  /// The caller's body, parsed: used up by the first attempt (the tree is several times the
  /// size of the text, and a stream may last minutes); a retry parses the request again.
  nlohmann::json body;
  nlohmann::json (*reparse)(std::string_view text) = nullptr;
  std::string model;
  bool stream = false;
  bool include_usage = false; ///< The caller asked for the usage chunk.
  int64_t max_tokens = 0;     ///< The caller's, 0 if unset.
  std::string max_tokens_field;
  int64_t choices = 1;
  int64_t prompt_tokens = 0; ///< Estimate.
  std::vector<std::string> fallback_models;
  /// Per-request timeouts from headers (milliseconds); 0 keeps the deployment's.
  int64_t first_token_timeout_ms = 0;
  int64_t idle_timeout_ms = 0;
  int64_t total_timeout_ms = 0;
  std::chrono::steady_clock::time_point received;
};

/// The node actors a proxied call talks to.
struct proxy_actors {
  caf::actor directory;
  key_handles_ptr keys; ///< Key actors alive on this node, published by the directory.
  caf::actor router;
  config::routing_config routing;
  std::shared_ptr<std::atomic<int64_t>> active_calls; ///< Counts this call while it lives.
};

/// Counts a call in flight for as long as its actor's state lives, however it ends.
struct active_call {
  explicit active_call(std::shared_ptr<std::atomic<int64_t>> n)
      : count(std::move(n)) {}
  active_call(const active_call&) = delete;
  active_call& operator=(const active_call&) = delete;
  ~active_call() {
    if (count)
      --*count;
  }
  std::shared_ptr<std::atomic<int64_t>> count;
};

struct proxy_request_state {
  static inline constexpr const char* name = "proxy_request";

  /// Where the call stands; each step happens once, in this order.
  enum class phase { admitting, routing, holding, calling, settling, finished };

  using chunked_response = restinio::response_builder_t<restinio::chunked_output_t>;

  phase step = phase::admitting;
  /// Times the user actor was gone when the hold was asked (passivated, or its shard moved
  /// to another node): the call is admitted again, which finds the user where it is now.
  int readmissions = 0;
  /// Set while an answer of the user actor is awaited (hold, settlement; await_user): what
  /// to do if that actor, on another node, ends first (its node went down, or its shard
  /// moved) and so never answers.
  std::function<void()> on_user_down;
  /// The admitted user actor was seen to end. A request to it now would never be answered
  /// (a remote actor's dead proxy drops messages), so the settlement goes straight to the
  /// user's current owner.
  bool user_down = false;
  /// The user actor, on another node, is monitored while its answer is awaited.
  bool watching_user = false;
  /// Sends the settlement to the user's current actor, wherever it lives now (its shard
  /// moved, or the node that held the hold went down); set once the call settles.
  std::function<void()> settle_late;
  /// Times that was sent again because the user was still moving.
  int resettlements = 0;
  std::unique_ptr<active_call> counted;
  admission admitted;
  route_plan route; ///< The current attempt's deployment.
  hold_grant hold;
  uint64_t transfer_id = 0;
  bool transfer_known = false;

  // Attempts: each deployment tried is remembered; only the current attempt's news counts.
  uint64_t attempt = 0;
  bool attempt_open = false; ///< The router counts the current attempt as in flight.
  std::vector<std::string> tried;
  std::string attempt_log; ///< "deployment:outcome" per attempt, for the usage record.
  std::chrono::steady_clock::time_point last_write;
  transfer_result last_failure; ///< Answered if no attempt succeeds.

  // Streaming.
  schemas::sse_parser parser;
  std::optional<chunked_response> response; ///< Opened with the first event passed on.
  /// Shared with the completion handler of the write in flight.
  std::shared_ptr<write_pacer> pacer;
  bool client_gone = false;
  bool upstream_done_seen = false; ///< The upstream sent [DONE].
  std::string stream_error;        ///< Why the stream ended early, if it did.

  // Metering.
  int64_t prompt_tokens = -1; ///< As the upstream reported; -1 until it does.
  int64_t completion_tokens = -1;
  int64_t counted_completion_bytes = 0; ///< Fallback when no usage is reported.
  std::optional<std::chrono::steady_clock::time_point> first_token_at;
  std::chrono::steady_clock::time_point upstream_started;
  std::chrono::steady_clock::time_point upstream_ended;
};

/// One per metered HTTP call (chat completions, streamed or not, and embeddings): admits the
/// key, routes the model, holds credits, calls the upstream, passes the answer through, and
/// always ends the hold: the charge is durable before the answer's last byte is sent.
caf::behavior proxy_request(caf::stateful_actor<proxy_request_state>* self, request_handle req,
                            proxy_call call, proxy_actors actors);

} // namespace tollgate::http
