#pragma once

#include <string>

#include <caf/all.hpp>

#include "actors/messages.hpp"
#include "http/responses.hpp"

namespace tollgate::http {

struct request_state {
  static inline constexpr const char* name = "request_actor";
};

/// One per admin HTTP call: sends `command` to `target`, writes the http_reply it answers
/// (or the error it fails with), and ends.
caf::behavior request_actor(caf::stateful_actor<request_state>* self, request_handle req,
                            std::string request_id, caf::actor target, caf::message command);

} // namespace tollgate::http
