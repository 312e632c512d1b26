#pragma once

#include <cstdint>
#include <optional>

// Money for a call, in integer micro-credits: prices are per million tokens, costs round up
// per request, and a hold covers the worst case of the call.

namespace tollgate::schemas {

struct model_price {
  int64_t input = 0;  ///< Micro-credits per million prompt tokens.
  int64_t output = 0; ///< Micro-credits per million completion tokens.

  template <class Inspector>
  friend auto inspect(Inspector& f, model_price& x) {
    return f(x.input, x.output);
  }
};

/// The exact cost of a call, rounded up to the next micro-credit.
int64_t cost_of(const model_price& price, int64_t prompt_tokens, int64_t completion_tokens);

/// What a call may cost and how far it may run.
struct hold_plan {
  int64_t amount = 0;     ///< Micro-credits to keep aside.
  int64_t max_tokens = 0; ///< Per choice; 0 leaves the caller's setting (none) as it is.
  bool capped = false;    ///< max_tokens was lowered to what the balance covers.
};

/// The fewest completion tokens worth starting a call for.
constexpr int64_t min_useful_tokens = 16;

/// Plans the hold for a call of `prompt_tokens` and up to `requested_max_tokens` per choice
/// (0: unset, then `default_max_tokens` is the assumed worst case) times `choices`. When the
/// balance `available` cannot cover that, max_tokens is capped to what it covers; nothing
/// when it cannot cover even `min_useful_tokens`.
std::optional<hold_plan> plan_hold(const model_price& price, int64_t prompt_tokens,
                                   int64_t requested_max_tokens, int64_t choices,
                                   int64_t default_max_tokens, int64_t available);

} // namespace tollgate::schemas
