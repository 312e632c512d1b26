#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include <caf/all.hpp>

namespace tollgate {

/// The answers an actor owes: requests it took and answers later, each kept under a number
/// of its own until it is answered. When an actor ends, CAF drops its undelivered promises
/// without a word, and a caller that asked without a timeout would wait forever; an actor
/// that keeps its promises here calls `fail_all` before it quits, which answers each the
/// way CAF answers a request nobody handled (`sec::request_receiver_down`), so that the
/// caller asks again, of whoever has the work now.
///
/// Rarely more than a few dozen at once (a user's calls waiting for one ledger commit): a
/// vector in the order they were added keeps an idle owner small, and `take` finds a
/// number by binary search and moves the later ones down. (A typed promise converts to the
/// `caf::response_promise` kept here.)
class owed_answers {
public:
  /// Keeps `promise` until `take` or `fail_all`; returns its number.
  uint64_t add(caf::response_promise promise) {
    owed_.emplace_back(++last_, std::move(promise));
    return last_;
  }

  /// The promise numbered `id`, no longer owed here; an invalid one (not `pending()`) if it
  /// was taken or failed already.
  caf::response_promise take(uint64_t id) {
    auto it =
        std::lower_bound(owed_.begin(), owed_.end(), id,
                         [](const auto& owed, uint64_t wanted) { return owed.first < wanted; });
    if (it == owed_.end() || it->first != id)
      return {};
    auto promise = std::move(it->second);
    owed_.erase(it);
    return promise;
  }

  /// Answers every promise still owed with `sec::request_receiver_down`.
  void fail_all() {
    auto owed = std::move(owed_);
    owed_.clear();
    for (auto& [id, promise] : owed)
      promise.deliver(caf::make_error(caf::sec::request_receiver_down));
  }

  std::size_t size() const { return owed_.size(); }
  bool empty() const { return owed_.empty(); }

private:
  std::vector<std::pair<uint64_t, caf::response_promise>> owed_;
  uint64_t last_ = 0;
};

} // namespace tollgate
