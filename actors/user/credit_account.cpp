#include "actors/user/credit_account.hpp"

#include <algorithm>

namespace tollgate {

bool credit_account::begin_change(int64_t amount) {
  if (amount < 0) {
    if (available() < -amount)
      return false;
    pending_debits_ += -amount;
  }
  ++in_flight_;
  return true;
}

void credit_account::finish_change(int64_t amount, bool committed) {
  if (amount < 0)
    pending_debits_ -= -amount;
  if (committed)
    balance_ += amount;
  --in_flight_;
}

bool credit_account::open_hold(const std::string& hold_id, int64_t amount) {
  if (amount < 0 || available() < amount || holds_.count(hold_id) > 0)
    return false;
  holds_.emplace(hold_id, amount);
  held_ += amount;
  return true;
}

int64_t credit_account::settle_hold(const std::string& hold_id, int64_t cost) {
  auto it = holds_.find(hold_id);
  if (it == holds_.end())
    return 0;
  auto charge = std::clamp<int64_t>(cost, 0, it->second);
  held_ -= it->second;
  holds_.erase(it);
  // The charge moves from held to pending: available() does not change in between.
  pending_debits_ += charge;
  ++in_flight_;
  return charge;
}

bool credit_account::void_hold(const std::string& hold_id) {
  auto it = holds_.find(hold_id);
  if (it == holds_.end())
    return false;
  held_ -= it->second;
  holds_.erase(it);
  return true;
}

} // namespace tollgate
