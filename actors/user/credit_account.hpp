#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>

namespace tollgate {

/// A user's money as its user actor sees it: the committed balance, the holds that keep part
/// of it aside for calls in flight, and the debits on their way to the ledger. The actor is
/// the balance's only writer, so `available()` is exact: nothing can spend what it shows.
class credit_account {
public:
  explicit credit_account(int64_t balance = 0)
      : balance_(balance) {}

  int64_t balance() const noexcept { return balance_; }
  int64_t held() const noexcept { return held_; }
  int64_t pending_debits() const noexcept { return pending_debits_; }
  int64_t available() const noexcept { return balance_ - held_ - pending_debits_; }
  std::size_t open_holds() const noexcept { return holds_.size(); }
  /// No holds and nothing on its way to the ledger: the actor may be passivated.
  bool idle() const noexcept { return holds_.empty() && in_flight_ == 0; }

  /// Starts a balance change bound for the ledger. A debit must fit in what is available;
  /// returns false (and changes nothing) when it does not.
  bool begin_change(int64_t amount);
  /// Ends a change begun with `begin_change`; `committed` says whether the ledger took it.
  void finish_change(int64_t amount, bool committed);
  /// The lowest balance the ledger may leave behind for a change sent now.
  int64_t floor() const noexcept { return held_; }

  /// Keeps `amount` aside for a call; false if it is not available or the id is in use.
  bool open_hold(const std::string& hold_id, int64_t amount);
  /// Ends a hold by charging `cost` (capped at the held amount) and returns the charge.
  /// The charge is then a pending debit until `finish_change(-charge, ...)`.
  int64_t settle_hold(const std::string& hold_id, int64_t cost);
  /// Ends a hold without charging anything; false if no such hold is open.
  bool void_hold(const std::string& hold_id);

private:
  int64_t balance_ = 0;
  int64_t held_ = 0;
  int64_t pending_debits_ = 0;
  int64_t in_flight_ = 0;
  std::unordered_map<std::string, int64_t> holds_;
};

} // namespace tollgate
