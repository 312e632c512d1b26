#pragma once

#include <chrono>
#include <string>
#include <unordered_map>
#include <vector>

#include <caf/all.hpp>

#include "actors/messages.hpp"
#include "actors/user/credit_account.hpp"

namespace tollgate {

struct user_state {
  static inline constexpr const char* name = "user_actor";
  schemas::user_record user;
  credit_account account;
  caf::actor ledger;
  caf::actor directory;
  /// Credits sent to the ledger, by request id: replays arriving meanwhile wait here.
  std::unordered_map<std::string, std::vector<caf::response_promise>> credits_in_flight;
};

/// One per account: owns the balance and open holds; the only writer of the balance.
caf::behavior user_actor(caf::stateful_actor<user_state>* self, schemas::user_record user,
                         caf::actor ledger, caf::actor directory, std::chrono::seconds idle);

} // namespace tollgate
