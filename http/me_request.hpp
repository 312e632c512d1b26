#pragma once

#include <string>

#include <caf/all.hpp>

#include "http/responses.hpp"

namespace tollgate::http {

/// What a consumer call knows before any actor is involved.
struct consumer_call {
  std::string request_id;
  std::string key_hash;
  std::string client_ip;
};

struct me_request_state {
  static inline constexpr const char* name = "me_request";
};

/// GET /v1/me: the key's owner, balance, and the key's own settings.
caf::behavior me_request(caf::stateful_actor<me_request_state>* self, request_handle req,
                         consumer_call call, caf::actor directory);

} // namespace tollgate::http
