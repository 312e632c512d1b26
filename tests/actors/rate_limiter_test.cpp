#include <boost/test/unit_test.hpp>

#include <map>

#include "actors/limits/rate_limiter.hpp"
#include "actors/provider/echo/echo_model.hpp"

using namespace tollgate;
using namespace std::chrono_literals;

namespace {

std::map<std::string, std::string> as_map(const rate_headers& h) {
  std::map<std::string, std::string> out;
  for (std::size_t i = 0; i + 1 < h.fields.size(); i += 2)
    out[h.fields[i]] = h.fields[i + 1];
  return out;
}

} // namespace

BOOST_AUTO_TEST_SUITE(rate_limits)

BOOST_AUTO_TEST_CASE(rpm_admits_exactly_the_limit_in_a_burst) {
  rate_limiter limiter({5, 0, 0});
  auto t = rate_clock::now();
  for (int i = 0; i < 5; ++i)
    BOOST_TEST(limiter.admit(1, t).admitted);
  auto sixth = limiter.admit(1, t);
  BOOST_TEST(!sixth.admitted);
  BOOST_TEST(sixth.reason.find("requests per minute") != std::string::npos);
  BOOST_TEST(sixth.retry_after.count() > 0);
  BOOST_TEST((sixth.retry_after <= 12s));
  // A slot frees up evenly: after 12 s one more call fits, not two.
  BOOST_TEST(limiter.admit(1, t + 12s).admitted);
  BOOST_TEST(!limiter.admit(1, t + 12s).admitted);
  // After a full minute the window is full again.
  for (int i = 0; i < 5; ++i)
    BOOST_TEST(limiter.admit(1, t + 2min).admitted);
}

BOOST_AUTO_TEST_CASE(token_window_charges_estimates_and_corrections) {
  rate_limiter limiter({0, 1000, 0});
  auto t = rate_clock::now();
  BOOST_TEST(limiter.admit(600, t).admitted);
  BOOST_TEST(!limiter.admit(600, t).admitted);
  limiter.correct_tokens(-500, t); // the call used 100, not 600
  BOOST_TEST(limiter.admit(600, t).admitted);
  auto huge = limiter.admit(5000, t + 10min);
  BOOST_TEST(!huge.admitted);
  BOOST_TEST(huge.reason.find("larger than the limit") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(refused_calls_take_nothing) {
  rate_limiter limiter({10, 100, 0});
  auto t = rate_clock::now();
  BOOST_TEST(!limiter.admit(150, t).admitted); // tokens refuse
  auto h = as_map(limiter.headers(t));
  BOOST_TEST(h["x-ratelimit-remaining-requests"] == "10");
  BOOST_TEST(h["x-ratelimit-remaining-tokens"] == "100");
}

BOOST_AUTO_TEST_CASE(daily_window) {
  rate_limiter limiter({0, 0, 2});
  auto t = rate_clock::now();
  BOOST_TEST(limiter.admit(1, t).admitted);
  BOOST_TEST(limiter.admit(1, t).admitted);
  auto third = limiter.admit(1, t + 1h);
  BOOST_TEST(!third.admitted);
  BOOST_TEST(third.reason.find("per day") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(headers_follow_openai) {
  rate_limiter limiter({60, 1000, 0});
  auto t = rate_clock::now();
  limiter.admit(100, t);
  auto h = as_map(limiter.headers(t));
  BOOST_TEST(h["x-ratelimit-limit-requests"] == "60");
  BOOST_TEST(h["x-ratelimit-remaining-requests"] == "59");
  BOOST_TEST(h["x-ratelimit-reset-requests"] == "1s");
  BOOST_TEST(h["x-ratelimit-limit-tokens"] == "1000");
  BOOST_TEST(h["x-ratelimit-remaining-tokens"] == "900");
  BOOST_TEST(h["x-ratelimit-reset-tokens"] == "6s");
  BOOST_TEST(as_map(rate_limiter(schemas::rate_limits{}).headers(t)).empty());
}

BOOST_AUTO_TEST_CASE(reset_format) {
  BOOST_TEST(format_reset(20ms) == "20ms");
  BOOST_TEST(format_reset(1s) == "1s");
  BOOST_TEST(format_reset(1500ms) == "2s");
  BOOST_TEST(format_reset(6min) == "6m0s");
  BOOST_TEST(format_reset(3723s) == "1h2m3s");
}

BOOST_AUTO_TEST_CASE(windows_move_between_nodes) {
  // A key's windows taken on one node and restored on another: the steady clocks differ,
  // the wall clock carries what was used.
  schemas::rate_limits limits{10, 1000, 100};
  rate_limiter old_owner(limits);
  auto t0 = rate_clock::time_point(1000s);
  for (int i = 0; i < 6; ++i)
    BOOST_TEST(old_owner.admit(50, t0).admitted);
  auto snap = old_owner.snapshot(t0, 5'000'000);
  BOOST_TEST(snap.rpm_ahead_ms == 36'000); // 6 of 10 per minute
  BOOST_TEST(snap.tpm_ahead_ms == 18'000); // 300 of 1000 tokens per minute
  BOOST_TEST(snap.rpd_ahead_ms == 5'184'000);
  auto text = snap.to_text();
  auto parsed = rate_snapshot::from_text(text);
  BOOST_TEST_REQUIRE(parsed.has_value());
  BOOST_TEST((*parsed == snap));

  // Restored 6 s later on a node whose steady clock reads something else entirely.
  rate_limiter new_owner(limits);
  auto t1 = rate_clock::time_point(7s);
  new_owner.restore(*parsed, t1, 5'006'000);
  int admitted = 0;
  while (new_owner.admit(1, t1).admitted)
    ++admitted;
  BOOST_TEST(admitted == 5); // 4 left, plus one refilled in the 6 s that passed

  // A snapshot of an idle key changes nothing; garbage is refused.
  rate_limiter fresh(limits);
  fresh.restore(rate_limiter(limits).snapshot(t0, 1), t1, 2);
  BOOST_TEST(fresh.admit(1, t1).admitted);
  for (const char* bad : {"", "1 2 3", "1 2 3 4 5", "a b c d", "-1 0 0 5", "1 2 3 4x", "1 2,3 4",
                          "1 2 3 99999999999999999999"})
    BOOST_TEST(!rate_snapshot::from_text(bad).has_value(), bad);
  auto padded = rate_snapshot::from_text(" 1 2\t3 4\n");
  BOOST_TEST_REQUIRE(padded.has_value());
  BOOST_TEST((*padded == rate_snapshot{1, 2, 3, 4}));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(echo_model)

BOOST_AUTO_TEST_CASE(echoes_the_last_user_message_with_real_counts) {
  auto request = nlohmann::json::parse(R"({"model":"echo-1","messages":[
    {"role":"system","content":"be brief"},{"role":"user","content":"hello there world"}]})");
  auto r = echo::answer(request);
  BOOST_TEST(r.prompt_tokens == 5);
  BOOST_TEST(r.tokens.size() == 4u); // "echo:" + 3 words
  BOOST_TEST(r.finish_reason == "stop");
  auto body = nlohmann::json::parse(echo::completion_body(request, r, "id", 1));
  BOOST_TEST(body["choices"][0]["message"]["content"] == "echo: hello there world");
  BOOST_TEST(body["usage"]["completion_tokens"] == 4);
  BOOST_TEST(body["usage"]["prompt_tokens"] == 5);
}

BOOST_AUTO_TEST_CASE(max_tokens_cuts_the_answer) {
  auto request = nlohmann::json::parse(
      R"({"model":"e","max_tokens":2,"messages":[{"role":"user","content":"a b c d e"}]})");
  auto r = echo::answer(request);
  BOOST_TEST(r.tokens.size() == 2u);
  BOOST_TEST(r.finish_reason == "length");
}

BOOST_AUTO_TEST_CASE(stream_has_one_chunk_per_token_and_usage_on_request) {
  auto request = nlohmann::json::parse(
      R"({"model":"e","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"a b"}]})");
  auto r = echo::answer(request);
  auto events = echo::stream_events(request, r, "id", 1);
  // role chunk, 3 tokens, finish chunk, usage chunk, [DONE]
  BOOST_REQUIRE_EQUAL(events.size(), 7u);
  BOOST_TEST(events.back() == "data: [DONE]\n\n");
  BOOST_TEST(events[5].find("\"usage\"") != std::string::npos);
  request.erase("stream_options");
  BOOST_TEST(echo::stream_events(request, r, "id", 1).size() == 6u);
}

BOOST_AUTO_TEST_SUITE_END()
