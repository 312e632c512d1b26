#include <boost/test/unit_test.hpp>

#include "schemas/chat.hpp"
#include "schemas/pricing.hpp"
#include "schemas/sse.hpp"

using namespace tollgate::schemas;

BOOST_AUTO_TEST_SUITE(pricing)

BOOST_AUTO_TEST_CASE(cost_is_price_times_tokens_rounded_up) {
  model_price price{150'000, 600'000}; // per million tokens
  BOOST_TEST(cost_of(price, 1'000'000, 0) == 150'000);
  BOOST_TEST(cost_of(price, 0, 1'000'000) == 600'000);
  BOOST_TEST(cost_of(price, 10, 20) == 14); // 1.5 + 12 = 13.5 -> 14
  BOOST_TEST(cost_of(price, 0, 0) == 0);
  BOOST_TEST(cost_of({0, 0}, 123, 456) == 0);
  BOOST_TEST(cost_of({1, 1}, 1, 0) == 1); // any fraction rounds up
  // No overflow on absurd inputs.
  BOOST_TEST(cost_of({INT64_MAX / 2, 0}, 1'000'000, 0) == INT64_MAX / 2);
}

BOOST_AUTO_TEST_CASE(hold_covers_the_worst_case_when_affordable) {
  model_price price{1'000'000, 2'000'000}; // 1 and 2 micro-credits per token
  auto plan = plan_hold(price, 100, 50, 1, 4096, 1'000'000);
  BOOST_REQUIRE(plan);
  BOOST_TEST(plan->amount == 200);
  BOOST_TEST(plan->max_tokens == 50);
  BOOST_TEST(!plan->capped);
  auto unset = plan_hold(price, 100, 0, 1, 4096, 1'000'000);
  BOOST_REQUIRE(unset);
  BOOST_TEST(unset->amount == 100 + 2 * 4096);
  BOOST_TEST(unset->max_tokens == 0); // left as the caller had it
}

BOOST_AUTO_TEST_CASE(max_tokens_is_capped_to_the_balance) {
  model_price price{1'000'000, 2'000'000};
  auto plan = plan_hold(price, 100, 0, 1, 4096, 300);
  BOOST_REQUIRE(plan);
  BOOST_TEST(plan->capped);
  BOOST_TEST(plan->max_tokens == 100); // (300 - 100) / 2
  BOOST_TEST(plan->amount == 300);
  BOOST_TEST(plan->amount <= 300);
  auto two = plan_hold(price, 100, 500, 2, 4096, 300);
  BOOST_REQUIRE(two);
  BOOST_TEST(two->max_tokens == 50); // per choice
  BOOST_TEST(cost_of(price, 100, two->max_tokens * 2) <= 300);
}

BOOST_AUTO_TEST_CASE(too_little_for_a_useful_answer_is_refused) {
  model_price price{1'000'000, 2'000'000};
  BOOST_TEST(!plan_hold(price, 100, 0, 1, 4096, 100 + 2 * (min_useful_tokens - 1)));
  BOOST_TEST(plan_hold(price, 100, 0, 1, 4096, 100 + 2 * min_useful_tokens).has_value());
  BOOST_TEST(!plan_hold(price, 100, 0, 1, 4096, 50)); // not even the prompt
  BOOST_TEST(!plan_hold({1'000'000, 0}, 100, 0, 1, 4096, 99));
}

BOOST_AUTO_TEST_CASE(free_models_need_no_balance) {
  auto plan = plan_hold({0, 0}, 100, 0, 1, 4096, 0);
  BOOST_REQUIRE(plan);
  BOOST_TEST(plan->amount == 0);
  BOOST_TEST(!plan->capped);
}

BOOST_AUTO_TEST_CASE(rounding_never_lets_the_hold_exceed_the_balance) {
  model_price price{333'333, 777'777};
  for (int64_t available = 1; available < 3000; available += 7) {
    auto plan = plan_hold(price, 37, 0, 1, 100'000, available);
    if (plan) {
      BOOST_TEST(plan->amount <= available);
      BOOST_TEST(cost_of(price, 37, plan->max_tokens) <= available);
    }
  }
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(sse_parsing)

BOOST_AUTO_TEST_CASE(events_split_across_arbitrary_pieces) {
  std::string stream = "data: {\"a\":1}\n\ndata: {\"b\":2}\n\n: keep-alive\n\ndata: [DONE]\n\n";
  for (std::size_t piece = 1; piece <= stream.size(); ++piece) {
    sse_parser parser;
    std::vector<sse_event> events;
    for (std::size_t i = 0; i < stream.size(); i += piece)
      for (auto& e : parser.feed(std::string_view(stream).substr(i, piece)))
        events.push_back(std::move(e));
    BOOST_REQUIRE_EQUAL(events.size(), 4u);
    BOOST_TEST(events[0].data == "{\"a\":1}");
    BOOST_TEST(events[0].raw == "data: {\"a\":1}\n\n");
    BOOST_TEST(events[2].data.empty()); // a comment
    BOOST_TEST(events[3].data == "[DONE]");
    BOOST_TEST(parser.pending().empty());
  }
}

BOOST_AUTO_TEST_CASE(crlf_and_multiline_data) {
  sse_parser parser;
  auto events = parser.feed("data: line1\r\ndata: line2\r\n\r\ndata:x\n\n");
  BOOST_REQUIRE_EQUAL(events.size(), 2u);
  BOOST_TEST(events[0].data == "line1\nline2");
  BOOST_TEST(events[1].data == "x");
}

BOOST_AUTO_TEST_CASE(incomplete_event_waits) {
  sse_parser parser;
  BOOST_TEST(parser.feed("data: {\"a\"").empty());
  BOOST_TEST(parser.feed(":1}\n").empty());
  auto events = parser.feed("\n");
  BOOST_REQUIRE_EQUAL(events.size(), 1u);
  BOOST_TEST(events[0].data == "{\"a\":1}");
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(chat_requests)

BOOST_AUTO_TEST_CASE(valid_request_is_metered_and_kept_whole) {
  auto r = parse_chat_request(R"({"model":"m","messages":[{"role":"user","content":"hello"}],
    "stream":true,"stream_options":{"include_usage":true},"max_tokens":50,"n":2,
    "temperature":0.2,"tools":[{"type":"function","function":{"name":"f"}}],"x_custom":1})");
  BOOST_REQUIRE(r.ok());
  BOOST_TEST(r->model == "m");
  BOOST_TEST(r->stream);
  BOOST_TEST(r->include_usage);
  BOOST_TEST(r->max_tokens == 50);
  BOOST_TEST(r->max_tokens_field == "max_tokens");
  BOOST_TEST(r->choices == 2);
  BOOST_TEST(r->prompt_tokens > 2);
  BOOST_TEST(r->body["x_custom"] == 1); // unknown fields pass through
}

BOOST_AUTO_TEST_CASE(smaller_of_both_token_limits_counts) {
  auto r = parse_chat_request(
      R"({"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":90,"max_completion_tokens":40})");
  BOOST_REQUIRE(r.ok());
  BOOST_TEST(r->max_tokens == 40);
  BOOST_TEST(r->max_tokens_field == "max_completion_tokens");
}

BOOST_AUTO_TEST_CASE(bad_requests_name_the_field) {
  auto param_of = [](std::string_view body) {
    auto r = parse_chat_request(body);
    BOOST_REQUIRE(!r.ok());
    BOOST_TEST(r.error().status == 400);
    return r.error().param;
  };
  BOOST_TEST(param_of("{") == "");
  BOOST_TEST(param_of(R"({"messages":[{"role":"user","content":"x"}]})") == "model");
  BOOST_TEST(param_of(R"({"model":"m"})") == "messages");
  BOOST_TEST(param_of(R"({"model":"m","messages":[]})") == "messages");
  BOOST_TEST(param_of(R"({"model":"m","messages":[{"role":"robot","content":"x"}]})") ==
             "messages");
  BOOST_TEST(param_of(R"({"model":"m","messages":[{"role":"user","content":5}]})") == "messages");
  BOOST_TEST(
      param_of(R"({"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":0})") ==
      "max_tokens");
  BOOST_TEST(
      param_of(R"({"model":"m","messages":[{"role":"user","content":"x"}],"stream":"yes"})") ==
      "stream");
  BOOST_TEST(param_of(R"({"model":"m","messages":[{"role":"user","content":"x"}],"n":0})") == "n");
}

BOOST_AUTO_TEST_CASE(estimate_is_an_upper_bound_for_words) {
  // Whitespace-separated words of ordinary text are never more than a third of the bytes.
  std::string text = "the quick brown fox jumps over the lazy dog";
  BOOST_TEST(estimate_tokens(text) >= 9);
  BOOST_TEST(estimate_tokens("") == 0);
  BOOST_TEST(content_text(nlohmann::json::parse(
                 R"([{"type":"text","text":"a"},{"type":"text","text":"b"}])")) == "ab");
}

BOOST_AUTO_TEST_CASE(embeddings_input_forms) {
  BOOST_TEST(parse_embeddings_request(R"({"model":"e","input":"hello"})").ok());
  BOOST_TEST(parse_embeddings_request(R"({"model":"e","input":["a","b"]})").ok());
  BOOST_TEST(parse_embeddings_request(R"({"model":"e","input":[[1,2,3]]})").ok());
  BOOST_TEST(parse_embeddings_request(R"({"model":"e"})").error().param == "input");
  BOOST_TEST(parse_embeddings_request(R"({"model":"e","input":[]})").error().param == "input");
  BOOST_TEST(parse_embeddings_request(R"({"input":"x"})").error().param == "model");
}

BOOST_AUTO_TEST_SUITE_END()
