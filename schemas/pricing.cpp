#include "schemas/pricing.hpp"

#include <algorithm>

#include "schemas/int128.hpp"

namespace tollgate::schemas {

namespace {

constexpr int128 per_million = 1'000'000;

} // namespace

int64_t cost_of(const model_price& price, int64_t prompt_tokens, int64_t completion_tokens) {
  int128 micro_millions =
      static_cast<int128>(std::max<int64_t>(prompt_tokens, 0)) * price.input +
      static_cast<int128>(std::max<int64_t>(completion_tokens, 0)) * price.output;
  return static_cast<int64_t>((micro_millions + per_million - 1) / per_million);
}

std::optional<hold_plan> plan_hold(const model_price& price, int64_t prompt_tokens,
                                   int64_t requested_max_tokens, int64_t choices,
                                   int64_t default_max_tokens, int64_t available) {
  choices = std::max<int64_t>(choices, 1);
  int64_t wanted = requested_max_tokens > 0 ? requested_max_tokens : default_max_tokens;
  int64_t worst = cost_of(price, prompt_tokens, wanted * choices);
  if (worst <= available)
    return hold_plan{worst, requested_max_tokens, false};
  if (price.output <= 0)
    return std::nullopt; // the prompt alone does not fit
  // Most completion tokens per choice that the balance covers after the prompt.
  int128 left = static_cast<int128>(available) * per_million -
                static_cast<int128>(std::max<int64_t>(prompt_tokens, 0)) * price.input;
  if (left <= 0)
    return std::nullopt;
  auto tokens = static_cast<int64_t>(left / price.output / choices);
  while (tokens > 0 && cost_of(price, prompt_tokens, tokens * choices) > available)
    --tokens;
  if (tokens < min_useful_tokens)
    return std::nullopt;
  return hold_plan{cost_of(price, prompt_tokens, tokens * choices), tokens, true};
}

} // namespace tollgate::schemas
