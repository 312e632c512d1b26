#include <boost/test/unit_test.hpp>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "actors/provider/anthropic/anthropic_translate.hpp"

using namespace tollgate;
using namespace tollgate::anthropic;
using nlohmann::json;

namespace {

json translated(const json& openai_chat) {
  return json::parse(to_messages_request(openai_chat));
}

json chat(json messages, json extra = json::object()) {
  json body{{"model", "claude-test"}, {"messages", std::move(messages)}};
  body.update(extra);
  return body;
}

/// The `data:` payloads of OpenAI SSE bytes: parsed JSON, or the string "[DONE]".
std::vector<json> openai_events(const std::string& bytes) {
  std::vector<json> events;
  std::size_t start = 0;
  while (start < bytes.size()) {
    auto end = bytes.find("\n\n", start);
    BOOST_TEST_REQUIRE(end != std::string::npos, "an unterminated event in: " << bytes);
    auto event = bytes.substr(start, end - start);
    BOOST_TEST_REQUIRE(event.starts_with("data: "), "not a data event: " << event);
    auto data = event.substr(6);
    events.push_back(data == "[DONE]" ? json("[DONE]") : json::parse(data));
    start = end + 2;
  }
  return events;
}

/// A stream as Anthropic sends it: text, then a tool call whose input arrives in pieces.
const std::string recorded_stream =
    "event: message_start\n"
    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_014p7gG3wDgGV9EUtLvnow3U\","
    "\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\","
    "\"stop_sequence\":null,\"usage\":{\"input_tokens\":472,\"cache_creation_input_tokens\":10,"
    "\"cache_read_input_tokens\":100,\"output_tokens\":2},\"content\":[],\"stop_reason\":null}}\n"
    "\n"
    "event: content_block_start\n"
    "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\","
    "\"text\":\"\"}}\n"
    "\n"
    "event: ping\n"
    "data: {\"type\": \"ping\"}\n"
    "\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\","
    "\"text\":\"Okay\"}}\n"
    "\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\","
    "\"text\":\", let's check the weather.\"}}\n"
    "\n"
    "event: content_block_stop\n"
    "data: {\"type\":\"content_block_stop\",\"index\":0}\n"
    "\n"
    "event: content_block_start\n"
    "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\","
    "\"id\":\"toolu_01T1x1fJ34qAmk2tNTrN7Up6\",\"name\":\"get_weather\",\"input\":{}}}\n"
    "\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\","
    "\"partial_json\":\"\"}}\n"
    "\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\","
    "\"partial_json\":\"{\\\"location\\\":\"}}\n"
    "\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\","
    "\"partial_json\":\" \\\"San Francisco, CA\\\"}\"}}\n"
    "\n"
    "event: content_block_stop\n"
    "data: {\"type\":\"content_block_stop\",\"index\":1}\n"
    "\n"
    "event: message_delta\n"
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\","
    "\"stop_sequence\":null},\"usage\":{\"output_tokens\":89}}\n"
    "\n"
    "event: message_stop\n"
    "data: {\"type\":\"message_stop\"}\n"
    "\n";

/// One Anthropic event as it travels.
std::string anthropic_event(const json& data) {
  return "event: " + data["type"].get<std::string>() + "\ndata: " + data.dump() + "\n\n";
}

std::string text_stream_start() {
  return anthropic_event({{"type", "message_start"},
                          {"message",
                           {{"id", "msg_1"},
                            {"model", "claude-x"},
                            {"usage", {{"input_tokens", 3}, {"output_tokens", 1}}}}}}) +
         anthropic_event({{"type", "content_block_start"},
                          {"index", 0},
                          {"content_block", {{"type", "text"}, {"text", ""}}}}) +
         anthropic_event({{"type", "content_block_delta"},
                          {"index", 0},
                          {"delta", {{"type", "text_delta"}, {"text", "Hello"}}}});
}

const std::string overloaded_event =
    "event: error\n"
    "data: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":"
    "\"Overloaded\"}}\n\n";

} // namespace

BOOST_AUTO_TEST_SUITE(anthropic_translate)

// -- requests

BOOST_AUTO_TEST_CASE(system_and_developer_messages_become_the_top_level_system) {
  auto out = translated(chat(
      {{{"role", "system"}, {"content", "You are terse."}},
       {{"role", "user"}, {"content", "hi"}},
       {{"role", "developer"}, {"content", {{{"type", "text"}, {"text", "Answer in French."}}}}},
       {{"role", "user"}, {"content", {{{"type", "text"}, {"text", "again"}}}}}}));
  BOOST_TEST(out["model"] == "claude-test");
  BOOST_TEST(out["system"] == "You are terse.\n\nAnswer in French.");
  // The two user messages, no longer separated, are one turn.
  BOOST_TEST_REQUIRE(out["messages"].size() == 1u, out.dump());
  BOOST_TEST(out["messages"][0]["role"] == "user");
  BOOST_TEST(out["messages"][0]["content"] == json::parse(R"([{"type":"text","text":"hi"},
                                                               {"type":"text","text":"again"}])"));
  BOOST_TEST(!out.contains("stream"));
  BOOST_TEST(!out.contains("tools"));
}

BOOST_AUTO_TEST_CASE(system_blocks_with_cache_control_stay_blocks) {
  json cached{
      {"type", "text"}, {"text", "long context"}, {"cache_control", {{"type", "ephemeral"}}}};
  auto out = translated(
      chat({{{"role", "system"}, {"content", {cached}}}, {{"role", "user"}, {"content", "hi"}}}));
  BOOST_TEST(out["system"] == json::array({cached}));
}

BOOST_AUTO_TEST_CASE(max_tokens_is_always_set) {
  json messages{{{"role", "user"}, {"content", "hi"}}};
  BOOST_TEST(translated(chat(messages))["max_tokens"] == default_max_tokens);
  BOOST_TEST(translated(chat(messages, {{"max_tokens", 100}}))["max_tokens"] == 100);
  BOOST_TEST(translated(chat(messages, {{"max_completion_tokens", 50}}))["max_tokens"] == 50);
  BOOST_TEST(translated(chat(messages, {{"max_tokens", 80},
                                        {"max_completion_tokens", 60}}))["max_tokens"] == 60);
}

BOOST_AUTO_TEST_CASE(tools_and_tool_choice) {
  json tools{{{"type", "function"},
              {"function",
               {{"name", "get_weather"},
                {"description", "Current weather"},
                {"parameters",
                 {{"type", "object"},
                  {"properties", {{"location", {{"type", "string"}}}}},
                  {"required", {"location"}}}}}}},
             {{"type", "function"}, {"function", {{"name", "now"}}}}};
  json messages{{{"role", "user"}, {"content", "weather?"}}};
  auto out = translated(chat(messages, {{"tools", tools}}));
  BOOST_TEST_REQUIRE(out["tools"].size() == 2u);
  BOOST_TEST(out["tools"][0]["name"] == "get_weather");
  BOOST_TEST(out["tools"][0]["description"] == "Current weather");
  BOOST_TEST(out["tools"][0]["input_schema"] == tools[0]["function"]["parameters"]);
  BOOST_TEST(out["tools"][1] == json::parse(R"({"name":"now","input_schema":
                                               {"type":"object","properties":{}}})"));
  BOOST_TEST(!out.contains("tool_choice"));

  auto choice = [&](json extra) {
    extra["tools"] = tools;
    return translated(chat(messages, extra))["tool_choice"];
  };
  BOOST_TEST(choice({{"tool_choice", "auto"}}) == json({{"type", "auto"}}));
  BOOST_TEST(choice({{"tool_choice", "none"}}) == json({{"type", "none"}}));
  BOOST_TEST(choice({{"tool_choice", "required"}}) == json({{"type", "any"}}));
  BOOST_TEST(choice({{"tool_choice", {{"type", "function"}, {"function", {{"name", "now"}}}}}}) ==
             json({{"type", "tool"}, {"name", "now"}}));
  BOOST_TEST(choice({{"parallel_tool_calls", false}}) ==
             json({{"type", "auto"}, {"disable_parallel_tool_use", true}}));
  BOOST_TEST(choice({{"tool_choice", "required"}, {"parallel_tool_calls", false}}) ==
             json({{"type", "any"}, {"disable_parallel_tool_use", true}}));
}

BOOST_AUTO_TEST_CASE(tool_calls_and_results) {
  auto out = translated(chat(
      {{{"role", "user"}, {"content", "weather in Paris and Rome?"}},
       {{"role", "assistant"},
        {"content", nullptr},
        {"tool_calls",
         {{{"id", "call_1"},
           {"type", "function"},
           {"function", {{"name", "get_weather"}, {"arguments", R"({"location":"Paris"})"}}}},
          {{"id", "call_2"},
           {"type", "function"},
           {"function", {{"name", "get_weather"}, {"arguments", R"({"location":"Rome"})"}}}}}}},
       {{"role", "tool"}, {"tool_call_id", "call_1"}, {"content", "18C"}},
       {{"role", "tool"},
        {"tool_call_id", "call_2"},
        {"content", {{{"type", "text"}, {"text", "21C"}}}}},
       {{"role", "user"}, {"content", "thanks"}}}));
  BOOST_TEST_REQUIRE(out["messages"].size() == 3u, out.dump());
  BOOST_TEST(out["messages"][1] == json::parse(R"({"role":"assistant","content":[
      {"type":"tool_use","id":"call_1","name":"get_weather","input":{"location":"Paris"}},
      {"type":"tool_use","id":"call_2","name":"get_weather","input":{"location":"Rome"}}]})"));
  // Tool results come back in the next user turn, before what the user says.
  BOOST_TEST(out["messages"][2] == json::parse(R"({"role":"user","content":[
      {"type":"tool_result","tool_use_id":"call_1","content":"18C"},
      {"type":"tool_result","tool_use_id":"call_2","content":[{"type":"text","text":"21C"}]},
      {"type":"text","text":"thanks"}]})"));
}

BOOST_AUTO_TEST_CASE(images) {
  auto out = translated(chat(
      {{{"role", "user"},
        {"content",
         {{{"type", "text"}, {"text", "what is this?"}},
          {{"type", "image_url"}, {"image_url", {{"url", "data:image/png;base64,iVBORw0KGgo="}}}},
          {{"type", "image_url"}, {"image_url", {{"url", "https://example.com/cat.jpg"}}}}}}}}));
  auto content = out["messages"][0]["content"];
  BOOST_TEST_REQUIRE(content.size() == 3u, out.dump());
  BOOST_TEST(content[1] == json::parse(R"({"type":"image","source":
      {"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}})"));
  BOOST_TEST(content[2] == json::parse(R"({"type":"image","source":
      {"type":"url","url":"https://example.com/cat.jpg"}})"));
}

BOOST_AUTO_TEST_CASE(sampling_stop_stream_and_user) {
  json messages{{{"role", "user"}, {"content", "hi"}}};
  auto out = translated(chat(messages, {{"stop", "END"},
                                        {"temperature", 0.5},
                                        {"top_p", 0.9},
                                        {"stream", true},
                                        {"stream_options", {{"include_usage", true}}},
                                        {"frequency_penalty", 0.1},
                                        {"n", 1},
                                        {"user", "user-42"}}));
  BOOST_TEST(out["stop_sequences"] == json::array({"END"}));
  BOOST_TEST(out["temperature"] == 0.5);
  BOOST_TEST(out["top_p"] == 0.9);
  BOOST_TEST(out["stream"] == true);
  BOOST_TEST(out["metadata"] == json({{"user_id", "user-42"}}));
  for (const char* dropped : {"stream_options", "frequency_penalty", "n", "user", "stop"})
    BOOST_TEST(!out.contains(dropped), dropped);
  BOOST_TEST(translated(chat(messages, {{"stop", {"a", "b"}}}))["stop_sequences"] ==
             json::array({"a", "b"}));
}

BOOST_AUTO_TEST_CASE(what_anthropic_cannot_express_is_refused) {
  json messages{{{"role", "user"}, {"content", "hi"}}};
  BOOST_CHECK_THROW(to_messages_request(chat(messages, {{"n", 2}})), std::invalid_argument);
  BOOST_CHECK_THROW(to_messages_request(chat({{{"role", "function"}, {"content", "x"}}})),
                    std::invalid_argument);
  BOOST_CHECK_THROW(
      to_messages_request(chat(
          {{{"role", "user"}, {"content", {{{"type", "input_audio"}, {"input_audio", {}}}}}}})),
      std::invalid_argument);
}

// -- responses

BOOST_AUTO_TEST_CASE(text_answer) {
  auto out = json::parse(to_chat_completion(json::parse(R"({
      "id":"msg_1","type":"message","role":"assistant","model":"claude-x",
      "content":[{"type":"text","text":"Hello"},{"type":"text","text":" world"}],
      "stop_reason":"end_turn","stop_sequence":null,
      "usage":{"input_tokens":10,"output_tokens":5}})"),
                                            "claude-test"));
  BOOST_TEST(out["object"] == "chat.completion");
  BOOST_TEST(out["id"] == "msg_1");
  BOOST_TEST(out["model"] == "claude-test");
  BOOST_TEST_REQUIRE(out["choices"].size() == 1u);
  BOOST_TEST(out["choices"][0]["message"] ==
             json({{"role", "assistant"}, {"content", "Hello world"}}));
  BOOST_TEST(out["choices"][0]["finish_reason"] == "stop");
  BOOST_TEST(out["usage"] == json::parse(R"({"prompt_tokens":10,"completion_tokens":5,
      "total_tokens":15,"prompt_tokens_details":{"cached_tokens":0}})"));
}

BOOST_AUTO_TEST_CASE(tool_use_answer) {
  auto out = json::parse(to_chat_completion(json::parse(R"({
      "id":"msg_2","model":"claude-x",
      "content":[{"type":"text","text":"Let me check."},
                 {"type":"tool_use","id":"toolu_1","name":"get_weather",
                  "input":{"location":"Paris","unit":"celsius"}}],
      "stop_reason":"tool_use","usage":{"input_tokens":1,"output_tokens":2}})"),
                                            ""));
  BOOST_TEST(out["model"] == "claude-x");
  const auto& message = out["choices"][0]["message"];
  BOOST_TEST(message["content"] == "Let me check.");
  BOOST_TEST_REQUIRE(message["tool_calls"].size() == 1u);
  const auto& call = message["tool_calls"][0];
  BOOST_TEST(call["id"] == "toolu_1");
  BOOST_TEST(call["type"] == "function");
  BOOST_TEST(call["function"]["name"] == "get_weather");
  BOOST_TEST(json::parse(call["function"]["arguments"].get<std::string>()) ==
             json({{"location", "Paris"}, {"unit", "celsius"}}));
  BOOST_TEST(out["choices"][0]["finish_reason"] == "tool_calls");

  // Only tool calls: content is null, as OpenAI sends it.
  auto bare = json::parse(to_chat_completion(
      json::parse(R"({"content":[{"type":"tool_use","id":"t","name":"now","input":{}}],
                      "stop_reason":"tool_use"})"),
      "m"));
  BOOST_TEST(bare["choices"][0]["message"]["content"].is_null());
  BOOST_TEST(bare["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] == "{}");
  BOOST_TEST(!bare.contains("usage"));
}

BOOST_AUTO_TEST_CASE(stop_reasons) {
  BOOST_TEST(finish_reason_of("end_turn") == "stop");
  BOOST_TEST(finish_reason_of("stop_sequence") == "stop");
  BOOST_TEST(finish_reason_of("max_tokens") == "length");
  BOOST_TEST(finish_reason_of("tool_use") == "tool_calls");
  BOOST_TEST(finish_reason_of("refusal") == "content_filter");
  auto reason = [](const char* stop) {
    return json::parse(to_chat_completion({{"content", json::array()}, {"stop_reason", stop}},
                                          "m"))["choices"][0]["finish_reason"];
  };
  BOOST_TEST(reason("max_tokens") == "length");
  BOOST_TEST(reason("stop_sequence") == "stop");
}

BOOST_AUTO_TEST_CASE(usage_counts_cache_tokens_as_prompt_tokens) {
  auto out = json::parse(to_chat_completion(json::parse(R"({
      "content":[{"type":"text","text":"ok"}],"stop_reason":"end_turn",
      "usage":{"input_tokens":5,"cache_creation_input_tokens":100,
               "cache_read_input_tokens":1000,"output_tokens":7}})"),
                                            "m"));
  BOOST_TEST(out["usage"] == json::parse(R"({"prompt_tokens":1105,"completion_tokens":7,
      "total_tokens":1112,"prompt_tokens_details":{"cached_tokens":1000}})"));
}

BOOST_AUTO_TEST_CASE(error_bodies) {
  auto out = json::parse(to_openai_error(
      R"({"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: too big"}})"));
  BOOST_TEST(out == json::parse(R"({"error":{"message":"max_tokens: too big",
      "type":"invalid_request_error","param":null,"code":"invalid_request_error"}})"));
  auto overloaded = json::parse(to_openai_error(
      R"({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}})"));
  BOOST_TEST(overloaded["error"]["type"] == "server_error");
  BOOST_TEST(overloaded["error"]["code"] == "overloaded_error");
  BOOST_TEST(to_openai_error("<html>bad gateway</html>") == "<html>bad gateway</html>");
  BOOST_TEST(status_of_error_type("overloaded_error") == 529);
  BOOST_TEST(status_of_error_type("rate_limit_error") == 429);
  BOOST_TEST(status_of_error_type("invalid_request_error") == 400);
  BOOST_TEST(status_of_error_type("something_new") == 502);
}

// -- streams

BOOST_AUTO_TEST_CASE(recorded_stream_becomes_openai_chunks) {
  anthropic_stream_translator translator("claude-test", 1700000000);
  auto out = translator.feed(recorded_stream);
  BOOST_TEST(translator.finished());
  BOOST_TEST(!translator.failure());
  auto events = openai_events(out);
  BOOST_TEST_REQUIRE(events.size() >= 6u, out);
  BOOST_TEST(events.back() == "[DONE]");

  std::string text;
  std::string arguments;
  std::vector<json> finishes;
  for (std::size_t i = 0; i + 2 < events.size(); ++i) {
    const auto& chunk = events[i];
    BOOST_TEST(chunk["object"] == "chat.completion.chunk");
    BOOST_TEST(chunk["id"] == "msg_014p7gG3wDgGV9EUtLvnow3U");
    BOOST_TEST(chunk["model"] == "claude-test");
    BOOST_TEST(chunk["created"] == 1700000000);
    BOOST_TEST_REQUIRE(chunk["choices"].size() == 1u);
    const auto& choice = chunk["choices"][0];
    BOOST_TEST(choice["index"] == 0);
    BOOST_TEST(choice["delta"].contains("role") == (i == 0), chunk.dump());
    if (choice["delta"].contains("content"))
      text += choice["delta"]["content"].get<std::string>();
    if (choice["delta"].contains("tool_calls")) {
      const auto& call = choice["delta"]["tool_calls"][0];
      BOOST_TEST(call["index"] == 0);
      if (call.contains("id")) {
        BOOST_TEST(call["id"] == "toolu_01T1x1fJ34qAmk2tNTrN7Up6");
        BOOST_TEST(call["type"] == "function");
        BOOST_TEST(call["function"]["name"] == "get_weather");
      }
      arguments += call["function"]["arguments"].get<std::string>();
    }
    if (!choice["finish_reason"].is_null())
      finishes.push_back(choice["finish_reason"]);
  }
  BOOST_TEST(text == "Okay, let's check the weather.");
  BOOST_TEST(json::parse(arguments) == json({{"location", "San Francisco, CA"}}));
  BOOST_TEST(finishes == std::vector<json>{"tool_calls"});
  // The usage chunk always comes, last before [DONE], cache tokens counted as prompt tokens.
  const auto& usage_chunk = events[events.size() - 2];
  BOOST_TEST(usage_chunk["choices"] == json::array());
  BOOST_TEST(usage_chunk["usage"] == json::parse(R"({"prompt_tokens":582,"completion_tokens":89,
      "total_tokens":671,"prompt_tokens_details":{"cached_tokens":100}})"));
  BOOST_TEST(translator.feed("event: ping\ndata: {\"type\":\"ping\"}\n\n").empty());
}

BOOST_AUTO_TEST_CASE(any_split_gives_the_same_chunks) {
  auto whole = anthropic_stream_translator("claude-test", 1).feed(recorded_stream);
  for (std::size_t cut = 0; cut <= recorded_stream.size(); ++cut) {
    anthropic_stream_translator translator("claude-test", 1);
    auto out = translator.feed(std::string_view(recorded_stream).substr(0, cut));
    out += translator.feed(std::string_view(recorded_stream).substr(cut));
    BOOST_TEST_REQUIRE(out == whole, "cut at byte " << cut);
  }
  anthropic_stream_translator bytewise("claude-test", 1);
  std::string out;
  for (char c : recorded_stream)
    out += bytewise.feed(std::string_view(&c, 1));
  BOOST_TEST(out == whole);
  BOOST_TEST(bytewise.finished());

  // CRLF line ends, as some proxies send them, change nothing either.
  std::string crlf;
  for (char c : recorded_stream)
    crlf += c == '\n' ? std::string("\r\n") : std::string(1, c);
  BOOST_TEST(anthropic_stream_translator("claude-test", 1).feed(crlf) == whole);
}

BOOST_AUTO_TEST_CASE(text_only_stream_and_model_from_the_stream) {
  anthropic_stream_translator translator("", 5);
  auto out = translator.feed(text_stream_start() +
                             anthropic_event({{"type", "content_block_stop"}, {"index", 0}}) +
                             anthropic_event({{"type", "message_delta"},
                                              {"delta", {{"stop_reason", "max_tokens"}}},
                                              {"usage", {{"output_tokens", 4}}}}) +
                             anthropic_event({{"type", "message_stop"}}));
  auto events = openai_events(out);
  BOOST_TEST_REQUIRE(events.size() == 4u, out);
  BOOST_TEST(events[0]["model"] == "claude-x");
  BOOST_TEST(events[0]["choices"][0]["delta"] ==
             json({{"role", "assistant"}, {"content", "Hello"}}));
  BOOST_TEST(events[1]["choices"][0]["delta"] == json::object());
  BOOST_TEST(events[1]["choices"][0]["finish_reason"] == "length");
  BOOST_TEST(events[2]["usage"]["prompt_tokens"] == 3);
  BOOST_TEST(events[2]["usage"]["completion_tokens"] == 4);
  BOOST_TEST(events[3] == "[DONE]");
}

BOOST_AUTO_TEST_CASE(tool_call_without_input_gets_empty_arguments) {
  anthropic_stream_translator translator("m", 1);
  auto out = translator.feed(
      anthropic_event({{"type", "message_start"}, {"message", {{"id", "msg_3"}}}}) +
      anthropic_event(
          {{"type", "content_block_start"},
           {"index", 0},
           {"content_block", {{"type", "tool_use"}, {"id", "toolu_9"}, {"name", "now"}}}}) +
      anthropic_event({{"type", "content_block_stop"}, {"index", 0}}) +
      anthropic_event({{"type", "message_delta"}, {"delta", {{"stop_reason", "tool_use"}}}}) +
      anthropic_event({{"type", "message_stop"}}));
  auto events = openai_events(out);
  // No usage was reported: no usage chunk, so that the requester counts for itself.
  BOOST_TEST_REQUIRE(events.size() == 4u, out);
  BOOST_TEST(events[0]["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] == "");
  BOOST_TEST(events[1]["choices"][0]["delta"]["tool_calls"][0] ==
             json({{"index", 0}, {"function", {{"arguments", "{}"}}}}));
  BOOST_TEST(events[2]["choices"][0]["finish_reason"] == "tool_calls");
  BOOST_TEST(events[3] == "[DONE]");
}

BOOST_AUTO_TEST_CASE(error_event_ends_the_stream_without_done) {
  anthropic_stream_translator translator("m", 1);
  auto out = translator.feed(text_stream_start() + overloaded_event);
  auto events = openai_events(out);
  BOOST_TEST_REQUIRE(events.size() == 2u, out);
  BOOST_TEST(events[0]["choices"][0]["delta"]["content"] == "Hello");
  BOOST_TEST(events[1] == json::parse(R"({"error":{"message":"Overloaded","type":"server_error",
      "param":null,"code":"overloaded_error"}})"));
  BOOST_TEST(!translator.finished());
  BOOST_TEST_REQUIRE(translator.failure().has_value());
  BOOST_TEST(translator.failure()->status == 529);
  BOOST_TEST(translator.failure()->message == "anthropic overloaded_error: Overloaded");
  // Whatever follows is dropped.
  BOOST_TEST(translator.feed(anthropic_event({{"type", "message_stop"}})).empty());

  // Without the error event, the failure is only recorded.
  anthropic_stream_translator quiet("m", 1, false);
  auto quiet_out = quiet.feed(text_stream_start() + overloaded_event);
  BOOST_TEST(openai_events(quiet_out).size() == 1u);
  BOOST_TEST(quiet.failure().has_value());
}

BOOST_AUTO_TEST_CASE(malformed_event_fails_the_stream) {
  anthropic_stream_translator translator("m", 1);
  auto out =
      translator.feed(text_stream_start() + "event: content_block_delta\ndata: {not json\n\n");
  auto events = openai_events(out);
  BOOST_TEST_REQUIRE(events.size() == 2u, out);
  BOOST_TEST(events[1]["error"]["code"] == "upstream_malformed");
  BOOST_TEST_REQUIRE(translator.failure().has_value());
  BOOST_TEST(translator.failure()->status == 502);
}

// -- transfer results

BOOST_AUTO_TEST_CASE(results_look_like_an_openai_upstreams) {
  transfer_result plain;
  plain.http_status = 200;
  plain.body = R"({"id":"msg_1","content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn",
                   "usage":{"input_tokens":2,"output_tokens":1}})";
  to_openai_result(plain, "claude-test", nullptr);
  auto body = json::parse(plain.body);
  BOOST_TEST(body["object"] == "chat.completion");
  BOOST_TEST(body["usage"]["total_tokens"] == 3);

  transfer_result rejected;
  rejected.http_status = 400;
  rejected.body = R"({"type":"error","error":{"type":"invalid_request_error","message":"bad"}})";
  to_openai_result(rejected, "m", nullptr);
  BOOST_TEST(rejected.http_status == 400);
  BOOST_TEST(json::parse(rejected.body)["error"]["message"] == "bad");

  transfer_result unreachable;
  unreachable.curl_code = 7;
  unreachable.error = "connection refused";
  to_openai_result(unreachable, "m", nullptr);
  BOOST_TEST(unreachable.curl_code == 7);
  BOOST_TEST(unreachable.body.empty());

  // A stream that ended well is passed on as it is.
  anthropic_stream_translator finished("m", 1, false);
  finished.feed(recorded_stream);
  transfer_result ended;
  ended.http_status = 200;
  to_openai_result(ended, "m", &finished);
  BOOST_TEST(ended.http_status == 200);

  // A stream that failed, even one then cancelled, ends as a failed transfer.
  anthropic_stream_translator failed("m", 1, false);
  failed.feed(text_stream_start() + overloaded_event);
  transfer_result cancelled;
  cancelled.http_status = 200;
  cancelled.curl_code = 42;
  cancelled.cancelled = true;
  to_openai_result(cancelled, "m", &failed);
  BOOST_TEST(cancelled.curl_code == 0);
  BOOST_TEST(cancelled.http_status == 529);
  BOOST_TEST(cancelled.error == "anthropic overloaded_error: Overloaded");
  BOOST_TEST(json::parse(cancelled.body)["error"]["message"] == "Overloaded");

  // A stream that stopped before message_stop broke off.
  anthropic_stream_translator cut("m", 1, false);
  cut.feed(text_stream_start());
  transfer_result short_stream;
  short_stream.http_status = 200;
  to_openai_result(short_stream, "m", &cut);
  BOOST_TEST(short_stream.http_status == 502);
  BOOST_TEST(!short_stream.error.empty());
}

BOOST_AUTO_TEST_SUITE_END()
