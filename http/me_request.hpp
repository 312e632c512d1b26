#pragma once

#include <string>

#include <caf/all.hpp>

#include "actors/messages.hpp"
#include "http/responses.hpp"

namespace tollgate::http {

/// What a consumer call knows before any actor is involved.
struct consumer_call {
  std::string request_id;
  std::string key_hash;
  std::string client_ip;
};

/// What an authenticated read answers.
enum class account_view {
  me,     ///< GET /v1/me
  models, ///< GET /v1/models
  usage,  ///< GET /v1/usage
};

struct me_request_state {
  static inline constexpr const char* name = "me_request";
};

/// GET /v1/me (the key's owner, balance, and the key's own settings) and GET /v1/models
/// (the models the key may use, with prices): authenticate, then answer.
caf::behavior me_request(caf::stateful_actor<me_request_state>* self, request_handle req,
                         consumer_call call, account_view view, caf::actor directory,
                         caf::actor router, caf::actor admin, usage_query usage);

} // namespace tollgate::http
