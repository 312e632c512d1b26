#include "tests/support/child_process.hpp"
#include "tests/support/http_client.hpp"
#include "tests/support/mock_upstream_logic.hpp"
#include "tests/support/mock_upstream_process.hpp"
#include "tests/support/ports.hpp"
#include "tests/support/temp_dir.hpp"

#include <boost/test/unit_test.hpp>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <thread>

using namespace tollgate::test;
using namespace std::chrono_literals;
using nlohmann::json;
namespace mock = tollgate::mock;
// The suite below is named mock_upstream too.
using mock_server = tollgate::test::mock_upstream;

namespace {

json chat_body(std::string content = "hello there world", json extra = json::object()) {
  json body{{"model", "gpt-test"}, {"messages", {{{"role", "user"}, {"content", content}}}}};
  body.update(extra);
  return body;
}

/// The `data:` payloads of an SSE body, in order.
std::vector<std::string> sse_data(const std::string& body) {
  std::vector<std::string> data;
  std::size_t start = 0;
  while (start < body.size()) {
    auto end = body.find("\n\n", start);
    if (end == std::string::npos)
      end = body.size();
    auto event = body.substr(start, end - start);
    if (event.starts_with("data: "))
      data.push_back(event.substr(6));
    start = end + 2;
  }
  return data;
}

/// The streamed text, checking that every event but the last is valid JSON.
std::string streamed_text(const std::vector<std::string>& data) {
  std::string text;
  for (const auto& item : data) {
    if (item == "[DONE]")
      continue;
    auto chunk = json::parse(item);
    for (const auto& choice : chunk["choices"])
      text += choice["delta"].value("content", "");
  }
  return text;
}

/// Polls GET /mock/stats until `field` reaches `value` or 5 s pass; the last value seen.
std::uint64_t wait_for_stat(mock_server& upstream, const char* field, std::uint64_t value) {
  auto deadline = std::chrono::steady_clock::now() + 5s;
  std::uint64_t seen = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    seen = upstream.stats()[field].get<std::uint64_t>();
    if (seen == value)
      break;
    std::this_thread::sleep_for(20ms);
  }
  return seen;
}

} // namespace

BOOST_AUTO_TEST_SUITE(mock_upstream)

BOOST_AUTO_TEST_CASE(tokens_are_whitespace_separated_words) {
  BOOST_TEST(mock::count_tokens("") == 0u);
  BOOST_TEST(mock::count_tokens("  one\ttwo\n three  ") == 3u);
  BOOST_TEST(mock::reply_text(0) == "");
  BOOST_TEST(mock::reply_text(1) == "mock");
  BOOST_TEST(mock::reply_text(4) == "mock reply alpha bravo");
  for (std::size_t tokens : {0u, 1u, 5u, 16u, 40u})
    BOOST_TEST(mock::count_tokens(mock::reply_text(tokens)) == tokens);
  json messages = json::array({{{"role", "system"}, {"content", "be brief"}},
                               {{"role", "user"},
                                {"content",
                                 {{{"type", "text"}, {"text", "one two three"}},
                                  {{"type", "image_url"}, {"image_url", {{"url", "x"}}}}}}}});
  BOOST_TEST(mock::count_prompt_tokens(messages) == 5u);
}

BOOST_AUTO_TEST_CASE(reply_splits_evenly_into_chunks) {
  auto pieces = mock::split_reply(10, 4);
  BOOST_TEST(pieces.size() == 4u);
  std::string joined;
  for (const auto& piece : pieces)
    joined += piece;
  BOOST_TEST(joined == mock::reply_text(10));
  BOOST_TEST(mock::count_tokens(pieces[0]) == 3u);
  BOOST_TEST(mock::count_tokens(pieces[3]) == 2u);
  BOOST_TEST(mock::split_reply(2, 5).size() == 2u);
  BOOST_TEST(mock::split_reply(0, 4).size() == 1u);
}

BOOST_AUTO_TEST_CASE(settings_parse_and_reject_bad_values) {
  BOOST_TEST(mock::to_string(mock::parse_fault("reset-after:3")) == "reset-after:3");
  BOOST_TEST((mock::parse_fault("status:429").kind == mock::fault_kind::status));
  BOOST_CHECK_THROW(mock::parse_fault("status:42"), std::invalid_argument);
  BOOST_CHECK_THROW(mock::parse_fault("explode"), std::invalid_argument);

  mock::mock_settings settings;
  BOOST_TEST(mock::apply_setting_header(settings, "x-mock-chunks", "7"));
  BOOST_TEST(!mock::apply_setting_header(settings, "authorization", "Bearer x"));
  BOOST_TEST(settings.chunks == 7u);
  BOOST_CHECK_THROW(mock::apply_setting_header(settings, "x-mock-chunkz", "1"),
                    std::invalid_argument);
  BOOST_CHECK_THROW(mock::apply_setting_header(settings, "x-mock-chunks", "0"),
                    std::invalid_argument);

  auto before = settings;
  BOOST_CHECK_THROW(mock::apply_settings_patch(settings, {{"latency_ms", 5}, {"bogus", 1}}),
                    std::invalid_argument);
  BOOST_TEST((settings == before));
  mock::apply_settings_patch(settings, {{"usage", false}, {"fault", "stall-after:0"}});
  BOOST_TEST(!settings.usage);
  BOOST_TEST(mock::to_json(settings)["fault"] == "stall-after:0");
}

BOOST_AUTO_TEST_CASE(non_stream_answer_counts_tokens) {
  mock_server upstream;
  http_client client{upstream.root_url()};
  auto response = client.post("/v1/chat/completions", chat_body().dump());
  BOOST_TEST_REQUIRE(response.status == 200);
  auto body = response.json();
  BOOST_TEST(body["object"] == "chat.completion");
  BOOST_TEST(body["model"] == "gpt-test");
  BOOST_TEST(body["id"].get<std::string>().starts_with("chatcmpl-mock-"));
  auto text = body["choices"][0]["message"]["content"].get<std::string>();
  BOOST_TEST(text.starts_with("mock reply "));
  BOOST_TEST(mock::count_tokens(text) == 16u);
  BOOST_TEST(body["choices"][0]["finish_reason"] == "stop");
  BOOST_TEST(body["usage"]["prompt_tokens"] == 3);
  BOOST_TEST(body["usage"]["completion_tokens"] == 16);
  BOOST_TEST(body["usage"]["total_tokens"] == 19);
}

BOOST_AUTO_TEST_CASE(max_tokens_caps_the_answer) {
  mock_server upstream;
  http_client client{upstream.root_url()};
  auto capped =
      client.post("/v1/chat/completions", chat_body("hi", {{"max_tokens", 5}}).dump()).json();
  BOOST_TEST(capped["usage"]["completion_tokens"] == 5);
  BOOST_TEST(mock::count_tokens(capped["choices"][0]["message"]["content"].get<std::string>()) ==
             5u);
  BOOST_TEST(capped["choices"][0]["finish_reason"] == "length");

  auto roomy =
      client.post("/v1/chat/completions", chat_body("hi", {{"max_completion_tokens", 50}}).dump())
          .json();
  BOOST_TEST(roomy["usage"]["completion_tokens"] == 16);
  BOOST_TEST(roomy["choices"][0]["finish_reason"] == "stop");

  auto header =
      client.post("/v1/chat/completions", chat_body().dump(), {{"x-mock-completion-tokens", "3"}});
  BOOST_TEST(header.json()["usage"]["completion_tokens"] == 3);
}

BOOST_AUTO_TEST_CASE(stream_sends_chunks_usage_and_done) {
  mock_server upstream;
  http_client client{upstream.root_url()};
  auto plain = client.post("/v1/chat/completions", chat_body("hi", {{"stream", true}}).dump());
  BOOST_TEST_REQUIRE(plain.status == 200);
  BOOST_TEST(plain.header("content-type") == "text/event-stream");
  auto data = sse_data(plain.body);
  BOOST_TEST_REQUIRE(data.size() == 5u); // 4 chunks and [DONE]
  BOOST_TEST(data.back() == "[DONE]");
  auto first = json::parse(data[0]);
  BOOST_TEST(first["object"] == "chat.completion.chunk");
  BOOST_TEST(first["choices"][0]["delta"]["role"] == "assistant");
  BOOST_TEST(first["choices"][0]["finish_reason"].is_null());
  BOOST_TEST(!json::parse(data[1])["choices"][0]["delta"].contains("role"));
  BOOST_TEST(json::parse(data[3])["choices"][0]["finish_reason"] == "stop");
  BOOST_TEST(streamed_text(data) == mock::reply_text(16));

  auto with_usage = client.post(
      "/v1/chat/completions",
      chat_body("hi", {{"stream", true}, {"stream_options", {{"include_usage", true}}}}).dump(),
      {{"x-mock-chunks", "2"}});
  data = sse_data(with_usage.body);
  BOOST_TEST_REQUIRE(data.size() == 4u); // 2 chunks, usage, [DONE]
  auto usage = json::parse(data[2]);
  BOOST_TEST(usage["choices"].empty());
  BOOST_TEST(usage["usage"]["prompt_tokens"] == 1);
  BOOST_TEST(usage["usage"]["completion_tokens"] == 16);
  BOOST_TEST(data[3] == "[DONE]");

  auto capped = client.post("/v1/chat/completions",
                            chat_body("hi", {{"stream", true}, {"max_tokens", 2}}).dump(),
                            {{"x-mock-chunks", "8"}});
  data = sse_data(capped.body);
  BOOST_TEST_REQUIRE(data.size() == 3u); // chunks > tokens: one token each
  BOOST_TEST(json::parse(data[1])["choices"][0]["finish_reason"] == "length");
}

BOOST_AUTO_TEST_CASE(usage_off_drops_usage_everywhere) {
  mock_server upstream{{"--usage", "0"}};
  http_client client{upstream.root_url()};
  auto body = client.post("/v1/chat/completions", chat_body().dump()).json();
  BOOST_TEST(!body.contains("usage"));
  auto streamed = client.post(
      "/v1/chat/completions",
      chat_body("hi", {{"stream", true}, {"stream_options", {{"include_usage", true}}}}).dump());
  auto data = sse_data(streamed.body);
  BOOST_TEST(data.size() == 5u);
  for (const auto& item : data)
    BOOST_TEST(item.find("\"usage\":{") == std::string::npos);
  auto on = client.post("/v1/chat/completions", chat_body().dump(), {{"x-mock-usage", "1"}});
  BOOST_TEST(on.json()["usage"]["completion_tokens"] == 16);
}

BOOST_AUTO_TEST_CASE(status_fault_answers_openai_error) {
  mock_server upstream{{"--fault", "status:503"}};
  http_client client{upstream.root_url()};
  auto failed = client.post("/v1/chat/completions", chat_body().dump());
  BOOST_TEST(failed.status == 503);
  BOOST_TEST(failed.json()["error"]["code"] == "mock_fault");
  BOOST_TEST(failed.json()["error"]["type"] == "server_error");
  auto limited =
      client.post("/v1/chat/completions", chat_body().dump(), {{"x-mock-fault", "status:429"}});
  BOOST_TEST(limited.status == 429);
  BOOST_TEST(limited.header("retry-after") == "1");
  auto healed = client.post("/v1/chat/completions", chat_body().dump(), {{"x-mock-fault", "none"}});
  BOOST_TEST(healed.status == 200);
  auto bad = client.post("/v1/chat/completions", chat_body().dump(), {{"x-mock-fault", "boom"}});
  BOOST_TEST(bad.status == 400);
}

BOOST_AUTO_TEST_CASE(requests_are_recorded_and_cleared) {
  mock_server upstream;
  http_client client{upstream.root_url()};
  client.bearer("sk-upstream");
  client.post("/v1/chat/completions", chat_body("first").dump());
  client.post("/v1/embeddings", json{{"model", "emb"}, {"input", "x y"}}.dump());
  auto recorded = upstream.requests();
  BOOST_TEST_REQUIRE(recorded.size() == 2u);
  BOOST_TEST(recorded[0]["path"] == "/v1/chat/completions");
  BOOST_TEST(recorded[0]["body"]["messages"][0]["content"] == "first");
  BOOST_TEST(recorded[0]["headers"]["authorization"] == "Bearer sk-upstream");
  BOOST_TEST(recorded[1]["path"] == "/v1/embeddings");
  BOOST_TEST(upstream.stats()["requests"] == 2);
  upstream.clear_requests();
  BOOST_TEST(upstream.requests().empty());
  BOOST_TEST(upstream.stats()["requests"] == 0);
}

BOOST_AUTO_TEST_CASE(settings_change_the_defaults) {
  mock_server upstream;
  http_client client{upstream.root_url()};
  auto changed = upstream.settings({{"completion_tokens", 3}, {"chunks", 3}});
  BOOST_TEST_REQUIRE(changed.status == 200);
  BOOST_TEST(changed.json()["completion_tokens"] == 3);
  BOOST_TEST(changed.json()["latency_ms"] == 0);
  BOOST_TEST(client.get("/mock/settings").json()["chunks"] == 3);
  auto body = client.post("/v1/chat/completions", chat_body().dump()).json();
  BOOST_TEST(body["usage"]["completion_tokens"] == 3);
  BOOST_TEST(upstream.settings({{"nonsense", 1}}).status == 400);
  BOOST_TEST(upstream.settings({{"fault", "status:500"}}).status == 200);
  BOOST_TEST(client.post("/v1/chat/completions", chat_body().dump()).status == 500);
}

BOOST_AUTO_TEST_CASE(delays_use_ttft_interval_and_latency) {
  mock_server upstream;
  http_client client{upstream.root_url()};
  auto start = std::chrono::steady_clock::now();
  client.post("/v1/chat/completions", chat_body().dump(), {{"x-mock-latency-ms", "200"}});
  BOOST_TEST((std::chrono::steady_clock::now() - start >= 200ms));
  start = std::chrono::steady_clock::now();
  auto streamed = client.post(
      "/v1/chat/completions", chat_body("hi", {{"stream", true}}).dump(),
      {{"x-mock-ttft-ms", "150"}, {"x-mock-interval-ms", "50"}, {"x-mock-chunks", "4"}});
  BOOST_TEST((std::chrono::steady_clock::now() - start >= 300ms));
  BOOST_TEST(sse_data(streamed.body).size() == 5u);
}

BOOST_AUTO_TEST_CASE(reset_breaks_the_transfer) {
  mock_server upstream;
  http_client client{upstream.root_url()};
  std::string error;
  try {
    auto response = client.post("/v1/chat/completions", chat_body("hi", {{"stream", true}}).dump(),
                                {{"x-mock-fault", "reset-after:2"}, {"x-mock-interval-ms", "10"}});
    error = "no error; body: " + response.body;
  } catch (const std::runtime_error& failure) {
    error = failure.what();
  }
  BOOST_TEST_MESSAGE("stream reset: " << error);
  BOOST_TEST(error.find("failed") != std::string::npos);

  http_client fresh{upstream.root_url()};
  BOOST_CHECK_THROW(
      fresh.post("/v1/chat/completions", chat_body().dump(), {{"x-mock-fault", "reset-after:0"}}),
      std::runtime_error);
  BOOST_TEST(fresh.get("/health").status == 200);
  BOOST_TEST(wait_for_stat(upstream, "in_flight", 0) == 0u);
  BOOST_TEST(upstream.stats()["cancelled"] == 0);
}

BOOST_AUTO_TEST_CASE(malformed_sends_bad_data_then_done) {
  mock_server upstream;
  http_client client{upstream.root_url()};
  auto response = client.post("/v1/chat/completions", chat_body("hi", {{"stream", true}}).dump(),
                              {{"x-mock-fault", "malformed-after:1"}});
  auto data = sse_data(response.body);
  BOOST_TEST_REQUIRE(data.size() == 3u);
  BOOST_TEST(json::parse(data[0])["object"] == "chat.completion.chunk");
  BOOST_TEST(data[1] == "{not json");
  BOOST_TEST(data[2] == "[DONE]");
}

BOOST_AUTO_TEST_CASE(stall_and_client_disconnects_count_as_cancelled) {
  mock_server upstream;
  http_client client{upstream.root_url()};
  client.timeouts(2s, 500ms);
  BOOST_CHECK_THROW(client.post("/v1/chat/completions", chat_body("hi", {{"stream", true}}).dump(),
                                {{"x-mock-fault", "stall-after:1"}}),
                    std::runtime_error);
  BOOST_TEST(wait_for_stat(upstream, "cancelled", 1) == 1u);
  BOOST_CHECK_THROW(
      client.post("/v1/chat/completions", chat_body().dump(), {{"x-mock-fault", "stall-after:0"}}),
      std::runtime_error);
  BOOST_TEST(wait_for_stat(upstream, "cancelled", 2) == 2u);
  // A slow stream the client gives up on.
  BOOST_CHECK_THROW(client.post("/v1/chat/completions", chat_body("hi", {{"stream", true}}).dump(),
                                {{"x-mock-interval-ms", "300"}}),
                    std::runtime_error);
  BOOST_TEST(wait_for_stat(upstream, "cancelled", 3) == 3u);
  BOOST_TEST(upstream.stats()["in_flight"] == 0);
}

BOOST_AUTO_TEST_CASE(embeddings_models_and_errors) {
  mock_server upstream{{"--models", "alpha,beta"}};
  http_client client{upstream.root_url()};
  auto one = client.post("/v1/embeddings", json{{"model", "e"}, {"input", "a b c"}}.dump()).json();
  BOOST_TEST(one["data"][0]["embedding"].size() == 8u);
  BOOST_TEST(one["usage"]["prompt_tokens"] == 3);
  auto many =
      client.post("/v1/embeddings", json{{"model", "e"}, {"input", {"a b c", "d"}}}.dump()).json();
  BOOST_TEST(many["data"].size() == 2u);
  BOOST_TEST(many["data"][1]["index"] == 1);
  BOOST_TEST(many["data"][0]["embedding"] == one["data"][0]["embedding"]);
  BOOST_TEST(many["usage"]["total_tokens"] == 4);

  auto models = client.get("/v1/models").json();
  BOOST_TEST_REQUIRE(models["data"].size() == 2u);
  BOOST_TEST(models["data"][1]["id"] == "beta");

  BOOST_TEST(client.post("/v1/chat/completions", "{oops").status == 400);
  BOOST_TEST(client.post("/v1/chat/completions", json{{"model", "m"}}.dump()).status == 400);
  BOOST_TEST(client.get("/v1/nothing").status == 404);
  auto wrong_method = client.get("/v1/chat/completions");
  BOOST_TEST(wrong_method.status == 405);
  BOOST_TEST(wrong_method.json()["error"]["message"] == "method not allowed");
}

BOOST_AUTO_TEST_CASE(exits_zero_on_sigterm_and_writes_port_file) {
  const char* binary = std::getenv("TOLLGATE_MOCK_UPSTREAM");
  BOOST_TEST_REQUIRE(binary != nullptr);
  temp_dir dir{"tollgate-mock-term"};
  auto port = free_loopback_port();
  child_process child{{{binary, "--listen", "127.0.0.1:" + std::to_string(port), "--threads", "1",
                        "--port-file", (dir / "port").string()},
                       {},
                       dir / "log"}};
  auto url = "http://127.0.0.1:" + std::to_string(port);
  BOOST_TEST_REQUIRE(
      (wait_for_http_ok(child, url + "/health", 20s).outcome == http_wait_outcome::ready));
  // The mock writes the file just after it starts to listen, so /health may answer first.
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (!std::filesystem::exists(dir / "port") && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(10ms);
  std::ifstream port_file{dir / "port"};
  int written = 0;
  port_file >> written;
  BOOST_TEST(written == port);
  // A stalled stream must not hold up the shutdown.
  std::thread stalled{[&] {
    http_client client{url};
    client.timeouts(1s, 3s);
    try {
      client.post("/v1/chat/completions", chat_body("hi", {{"stream", true}}).dump(),
                  {{"x-mock-fault", "stall-after:1"}});
    } catch (const std::exception&) {
    }
  }};
  std::this_thread::sleep_for(200ms);
  BOOST_TEST(child.terminate(5s) == 0);
  stalled.join();
  auto log = tail_lines(dir / "log", 5);
  BOOST_TEST(log.find("mock upstream listening on " + url) != std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()
