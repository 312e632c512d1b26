#include <boost/test/unit_test.hpp>

#include <string>

#include <nlohmann/json.hpp>

#include "schemas/answer_reading.hpp"

using namespace tollgate::schemas;

namespace {

/// A chat completion as an upstream sends it, with `usage` and `message` given.
std::string completion(const std::string& message, const std::string& usage) {
  return R"({"id":"chatcmpl-1","object":"chat.completion","created":1795556261,"model":"m",)"
         R"("choices":[{"index":0,"finish_reason":"stop","message":)" +
         message + "}]" + (usage.empty() ? "" : ",\"usage\":" + usage) + "}";
}

} // namespace

BOOST_AUTO_TEST_SUITE(answer_reading_tests)

BOOST_AUTO_TEST_CASE(reads_usage_and_generated_text_of_a_completion) {
  auto r =
      read_answer(completion(R"({"role":"assistant","content":"hello there"})",
                             R"({"prompt_tokens":12,"completion_tokens":3,"total_tokens":15})"));
  BOOST_TEST(r.object);
  BOOST_TEST(r.has_usage);
  BOOST_TEST(r.prompt_tokens.value_or(-1) == 12);
  BOOST_TEST(r.completion_tokens.value_or(-1) == 3);
  BOOST_TEST(r.has_choices);
  BOOST_TEST(!r.choices_empty);
  BOOST_TEST(r.generated_bytes == 11);
}

BOOST_AUTO_TEST_CASE(counts_tool_calls_as_compact_json) {
  const std::string calls =
      R"([{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\": \"Zürich\"}"}}])";
  auto r = read_answer(
      completion(R"({"role":"assistant","content":null,"tool_calls": )" + calls + "}", ""));
  BOOST_TEST(r.object);
  BOOST_TEST(!r.has_usage);
  BOOST_TEST(!r.prompt_tokens);
  // The same count as the compact JSON nlohmann writes of the same value.
  BOOST_TEST(r.generated_bytes == static_cast<int64_t>(nlohmann::json::parse(calls).dump().size()));
}

BOOST_AUTO_TEST_CASE(reads_stream_events) {
  auto delta = read_answer(R"({"choices":[{"index":0,"delta":{"content":"abc"}},)"
                           R"({"index":1,"delta":{"content":"de"}}]})");
  BOOST_TEST(delta.object);
  BOOST_TEST(!delta.has_usage);
  BOOST_TEST(delta.generated_bytes == 5);
  auto usage_chunk =
      read_answer(R"({"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7}})");
  BOOST_TEST(usage_chunk.has_usage);
  BOOST_TEST(usage_chunk.has_choices);
  BOOST_TEST(usage_chunk.choices_empty);
  BOOST_TEST(usage_chunk.completion_tokens.value_or(-1) == 7);
  auto bare_usage = read_answer(R"({"usage":{"prompt_tokens":5}})");
  BOOST_TEST(!bare_usage.has_choices);
  BOOST_TEST(bare_usage.prompt_tokens.value_or(-1) == 5);
  BOOST_TEST(!bare_usage.completion_tokens);
}

BOOST_AUTO_TEST_CASE(token_counts_must_be_integers) {
  auto r = read_answer(R"({"usage":{"prompt_tokens":"12","completion_tokens":1.5}})");
  BOOST_TEST(r.has_usage);
  BOOST_TEST(!r.prompt_tokens);
  BOOST_TEST(!r.completion_tokens);
  auto not_object = read_answer(R"({"usage":[1,2]})");
  BOOST_TEST(not_object.object);
  BOOST_TEST(!not_object.has_usage);
}

BOOST_AUTO_TEST_CASE(the_last_of_repeated_keys_counts) {
  auto r =
      read_answer(R"({"usage":{"prompt_tokens":1},"usage":{"prompt_tokens":2,)"
                  R"("prompt_tokens":3},"choices":[{"message":{"content":"a","content":"bcd"}}]})");
  BOOST_TEST(r.prompt_tokens.value_or(-1) == 3);
  BOOST_TEST(r.generated_bytes == 3);
}

BOOST_AUTO_TEST_CASE(anything_but_one_json_object_is_refused) {
  for (const char* text : {"", "not json", "[1,2]", "\"text\"", "{} trailing", "{\"a\":1",
                           "{\"a\":\"tab\there\"}", "{\"a\":\"\xff\"}"}) {
    BOOST_TEST_CONTEXT(text) {
      BOOST_TEST(!read_answer(text).object);
      // nlohmann, which built the answers before, refuses the same.
      BOOST_TEST(!nlohmann::json::parse(text, nullptr, false).is_object());
    }
  }
}

BOOST_AUTO_TEST_CASE(numbers_beyond_64_bits_do_not_make_an_answer_malformed) {
  auto r = read_answer(
      R"({"seed":100000000000000000000000000000,"score":-100000000000000000000000000000,)"
      R"("usage":{"prompt_tokens":4,"completion_tokens":2}})");
  BOOST_TEST(r.object);
  BOOST_TEST(r.prompt_tokens.value_or(-1) == 4);
  BOOST_TEST(r.completion_tokens.value_or(-1) == 2);
}

BOOST_AUTO_TEST_CASE(deep_nesting_is_an_object_with_nothing_to_meter) {
  std::string deep = R"({"usage":{"prompt_tokens":4},"x":)" + std::string(2000, '[') +
                     std::string(2000, ']') + "}";
  auto r = read_answer(deep);
  BOOST_TEST(r.object);
  BOOST_TEST(!r.has_usage);
}

BOOST_AUTO_TEST_CASE(large_answers_and_many_in_turn) {
  std::string text(100'000, 'x');
  auto large = read_answer(
      completion(R"({"content":")" + text + "\"}", R"({"prompt_tokens":1,"completion_tokens":2})"));
  BOOST_TEST(large.generated_bytes == 100'000);
  BOOST_TEST(large.completion_tokens.value_or(-1) == 2);
  // The parser kept per thread reads one answer after another, shorter and longer.
  for (int i = 0; i < 50; ++i) {
    std::string content(static_cast<std::size_t>(i * 37 % 500), 'y');
    auto r = read_answer(completion(R"({"content":")" + content + "\"}", ""));
    BOOST_TEST_REQUIRE(r.object);
    BOOST_TEST(r.generated_bytes == static_cast<int64_t>(content.size()));
  }
}

BOOST_AUTO_TEST_SUITE_END()
