#include "actors/limits/rate_limiter.hpp"

#include <algorithm>
#include <charconv>
#include <system_error>

#include "schemas/int128.hpp"

namespace tollgate {

namespace {

using std::chrono::nanoseconds;

int64_t ns_of(rate_clock::time_point t) {
  return std::chrono::duration_cast<nanoseconds>(t.time_since_epoch()).count();
}

} // namespace

rate_window::rate_window(int64_t limit, nanoseconds period)
    : limit_(limit)
    , period_ns_(period.count()) {}

bool rate_window::fits(int64_t cost, rate_clock::time_point now) const {
  if (!limited())
    return true;
  auto t = ns_of(now);
  int128 new_tat =
      static_cast<int128>(std::max(tat_ns_, t)) + static_cast<int128>(cost) * period_ns_ / limit_;
  return new_tat - t <= period_ns_;
}

void rate_window::take(int64_t cost, rate_clock::time_point now) {
  if (!limited())
    return;
  auto t = ns_of(now);
  auto base = std::max(tat_ns_, t);
  tat_ns_ = static_cast<int64_t>(base + static_cast<int128>(cost) * period_ns_ / limit_);
  // A refund never leaves the window fuller than full.
  tat_ns_ = std::max(tat_ns_, t);
}

int64_t rate_window::remaining(rate_clock::time_point now) const {
  if (!limited())
    return 0;
  auto used_ns = std::max<int64_t>(tat_ns_ - ns_of(now), 0);
  auto free_ns = std::max<int64_t>(period_ns_ - used_ns, 0);
  return std::clamp<int64_t>(
      static_cast<int64_t>(static_cast<int128>(free_ns) * limit_ / period_ns_), 0, limit_);
}

nanoseconds rate_window::reset_in(rate_clock::time_point now) const {
  return nanoseconds(std::max<int64_t>(tat_ns_ - ns_of(now), 0));
}

nanoseconds rate_window::wait_for(int64_t cost, rate_clock::time_point now) const {
  auto t = ns_of(now);
  int128 new_tat =
      static_cast<int128>(std::max(tat_ns_, t)) + static_cast<int128>(cost) * period_ns_ / limit_;
  return nanoseconds(static_cast<int64_t>(std::max<int128>(new_tat - period_ns_ - t, 0)));
}

rate_limiter::rate_limiter(const schemas::rate_limits& limits)
    : rpm_(limits.rpm, std::chrono::minutes(1))
    , tpm_(limits.tpm, std::chrono::minutes(1))
    , rpd_(limits.rpd, std::chrono::hours(24)) {}

rate_limiter::decision rate_limiter::admit(int64_t tokens, rate_clock::time_point now) {
  struct check {
    rate_window* window;
    int64_t cost;
    const char* name;
  };
  for (auto [window, cost, name] :
       {check{&rpm_, 1, "requests per minute"}, check{&tpm_, tokens, "tokens per minute"},
        check{&rpd_, 1, "requests per day"}}) {
    if (window->limited() && cost > window->limit())
      return {false,
              "this request (" + std::to_string(cost) + " tokens) is larger than the limit of " +
                  std::to_string(window->limit()) + " " + name,
              std::chrono::minutes(1)};
    if (!window->fits(cost, now))
      return {false, "rate limit of " + std::to_string(window->limit()) + " " + name + " reached",
              window->wait_for(cost, now)};
  }
  rpm_.take(1, now);
  tpm_.take(tokens, now);
  rpd_.take(1, now);
  return {};
}

void rate_limiter::correct_tokens(int64_t delta, rate_clock::time_point now) {
  tpm_.take(delta, now);
}

rate_headers rate_limiter::headers(rate_clock::time_point now) const {
  rate_headers out;
  auto add = [&](const rate_window& w, const char* kind) {
    if (!w.limited())
      return;
    std::string k(kind);
    out.fields.insert(out.fields.end(),
                      {"x-ratelimit-limit-" + k, std::to_string(w.limit()),
                       "x-ratelimit-remaining-" + k, std::to_string(w.remaining(now)),
                       "x-ratelimit-reset-" + k, format_reset(w.reset_in(now))});
  };
  add(rpm_, "requests");
  add(tpm_, "tokens");
  return out;
}

std::string format_reset(nanoseconds d) {
  using namespace std::chrono;
  auto ms = duration_cast<milliseconds>(d).count();
  if (ms < 1000)
    return std::to_string(ms) + "ms";
  auto s = (ms + 999) / 1000;
  std::string out;
  if (s >= 3600) {
    out += std::to_string(s / 3600) + "h";
    s %= 3600;
    out += std::to_string(s / 60) + "m";
    s %= 60;
  } else if (s >= 60) {
    out += std::to_string(s / 60) + "m";
    s %= 60;
  }
  return out + std::to_string(s) + "s";
}

void rate_window::restore(nanoseconds ahead, rate_clock::time_point now) {
  if (!limited())
    return;
  auto capped = std::clamp<int64_t>(ahead.count(), 0, period_ns_);
  tat_ns_ = std::max(tat_ns_, ns_of(now) + capped);
}

std::string rate_snapshot::to_text() const {
  return std::to_string(rpm_ahead_ms) + " " + std::to_string(tpm_ahead_ms) + " " +
         std::to_string(rpd_ahead_ms) + " " + std::to_string(taken_at_ms);
}

std::optional<rate_snapshot> rate_snapshot::from_text(std::string_view text) {
  // Four integers separated by blanks, as `to_text` writes them.
  rate_snapshot s;
  const char* at = text.data();
  const char* end = at + text.size();
  auto blank = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  for (int64_t* field : {&s.rpm_ahead_ms, &s.tpm_ahead_ms, &s.rpd_ahead_ms, &s.taken_at_ms}) {
    while (at != end && blank(*at))
      ++at;
    auto [next, ec] = std::from_chars(at, end, *field);
    if (ec != std::errc{} || (next != end && !blank(*next)))
      return std::nullopt;
    at = next;
  }
  while (at != end && blank(*at))
    ++at;
  if (at != end || s.rpm_ahead_ms < 0 || s.tpm_ahead_ms < 0 || s.rpd_ahead_ms < 0)
    return std::nullopt;
  return s;
}

rate_snapshot rate_limiter::snapshot(rate_clock::time_point now, int64_t wall_ms) const {
  auto ms = [&](const rate_window& w) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(w.used_ahead(now)).count();
  };
  return {ms(rpm_), ms(tpm_), ms(rpd_), wall_ms};
}

void rate_limiter::restore(const rate_snapshot& s, rate_clock::time_point now, int64_t wall_ms) {
  auto elapsed = std::max<int64_t>(wall_ms - s.taken_at_ms, 0);
  auto left = [&](int64_t ahead_ms) {
    return std::chrono::milliseconds(std::max<int64_t>(ahead_ms - elapsed, 0));
  };
  rpm_.restore(left(s.rpm_ahead_ms), now);
  tpm_.restore(left(s.tpm_ahead_ms), now);
  rpd_.restore(left(s.rpd_ahead_ms), now);
}

} // namespace tollgate
