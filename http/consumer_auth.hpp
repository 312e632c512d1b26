#pragma once

#include <chrono>
#include <string>
#include <utility>

#include <caf/all.hpp>

#include "actors/messages.hpp"

namespace tollgate::http {

/// How long a consumer call may wait on the gateway's own actors.
constexpr auto actor_timeout = std::chrono::seconds(30);

/// Asks the directory to authenticate a key hash from `client_ip`; calls `on_grant` with the
/// key_grant, or `on_error` with the API error. A key or user actor passivated between lookup
/// and use is looked up again, once.
template <class Self, class OnGrant, class OnError>
void authenticate(Self* self, caf::actor directory, std::string key_hash, std::string client_ip,
                  OnGrant on_grant, OnError on_error, int attempts = 2) {
  self->request(directory, actor_timeout, authenticate_atom_v, key_hash, client_ip)
      .then([=](key_grant& grant) mutable { on_grant(std::move(grant)); },
            [=](caf::error& err) mutable {
              if (attempts > 1 && is_receiver_gone(err))
                authenticate(self, directory, key_hash, client_ip, on_grant, on_error,
                             attempts - 1);
              else
                on_error(api_failure_of(err));
            });
}

} // namespace tollgate::http
