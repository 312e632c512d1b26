#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include <boost/test/unit_test.hpp>

#include "tests/integration/harness.hpp"
#include "tests/support/mock_upstream_process.hpp"

// Calls the gateway refuses before they reach the upstream: rate limits, key and user policy,
// unknown models and bad bodies. None of them costs anything or reaches the mock.

using namespace tollgate::test;
using namespace tollgate::test::integration;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

const std::string prompt = "hello there mock";

/// Parses a header that must hold a non-negative integer.
std::optional<int64_t> header_int(const http_response& response, const std::string& name) {
  auto text = response.header(name);
  if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos)
    return std::nullopt;
  return std::stoll(text);
}

/// A key limited to 5 requests a minute: the first five pass and say how many are left, the
/// sixth gets 429 with Retry-After; only the five reach the upstream and are charged.
void check_requests_per_minute(store kind) {
  mock_upstream mock;
  test_gateway gw(kind, options_with_config(mock_gateway_config(mock.base_url())));
  auto admin = gw.admin();
  constexpr int64_t opening = 10'000;
  constexpr int64_t tpm = 100'000;
  auto ada = make_metered_user(admin, "ada@example.com", opening, {{"rpm", 5}, {"tpm", tpm}});
  auto client = gw.consumer(ada.key);

  for (int i = 0; i < 5; ++i) {
    // The last admitted call streams: its headers come with the event stream.
    bool stream = i == 4;
    auto response =
        client.post("/v1/chat/completions", dump(chat_body("gpt-mock", prompt, 8, stream, false)));
    BOOST_TEST_CONTEXT("call " << i + 1 << ": " << response.status << " " << response.body) {
      BOOST_TEST_REQUIRE(response.status == 200);
      BOOST_TEST(response.header("x-ratelimit-limit-requests") == "5");
      BOOST_TEST(header_int(response, "x-ratelimit-remaining-requests").value_or(-1) == 4 - i);
      BOOST_TEST(!response.header("x-ratelimit-reset-requests").empty());
      BOOST_TEST(response.header("x-ratelimit-limit-tokens") == std::to_string(tpm));
      auto tokens_left = header_int(response, "x-ratelimit-remaining-tokens");
      BOOST_TEST_REQUIRE(tokens_left.has_value());
      // The token window refills continuously, so only "something was taken" is certain.
      BOOST_TEST(*tokens_left < tpm);
      BOOST_TEST(*tokens_left > 0);
      BOOST_TEST(!response.header("x-ratelimit-reset-tokens").empty());
    }
  }
  auto sql = gw.open_db();
  auto snapshot = take_snapshot(*sql);

  for (bool stream : {false, true}) {
    auto refused =
        client.post("/v1/chat/completions", dump(chat_body("gpt-mock", prompt, 8, stream, false)));
    auto what = std::string("sixth call") + (stream ? ", streamed" : "");
    expect_error(refused, 429, "rate_limit_exceeded", "rate_limit_exceeded", std::nullopt, what);
    BOOST_TEST_CONTEXT(what << ": " << refused.body) {
      auto retry_after = header_int(refused, "retry-after");
      BOOST_TEST_REQUIRE(retry_after.has_value(), "Retry-After: " << refused.header("retry-after"));
      BOOST_TEST(*retry_after >= 1);
      BOOST_TEST(*retry_after <= 60);
      BOOST_TEST(refused.header("x-ratelimit-limit-requests") == "5");
      BOOST_TEST(refused.header("x-ratelimit-remaining-requests") == "0");
      BOOST_TEST(!refused.header("x-ratelimit-reset-requests").empty());
      BOOST_TEST(refused.header("x-ratelimit-limit-tokens") == std::to_string(tpm));
    }
  }

  BOOST_TEST(take_snapshot(*gw.open_db()) == snapshot);
  BOOST_TEST(mock.stats()["requests"] == 5);
  BOOST_TEST(ledger_of(*sql, ada.id).size() == 6u);
  BOOST_TEST(usage_of(*sql, ada.id).size() == 5u);
  check_ledger_invariants(*sql, ada.id);
  BOOST_TEST(me_of(gw, ada.key)["held"] == 0);
}

/// One call that policy must refuse.
struct refusal {
  std::string what;
  std::string key;
  std::string model;
  long status = 0;
  std::string type;
  std::string code;
};

/// Every policy refusal answers its own error, streamed or not, charges nothing and sends
/// nothing upstream.
void check_policy_refusals(store kind) {
  mock_upstream mock;
  test_gateway gw(kind, options_with_config(mock_gateway_config(mock.base_url())));
  auto admin = gw.admin();
  constexpr int64_t opening = 10'000;
  auto narrow = make_metered_user(admin, "narrow@example.com", opening,
                                  {{"models", json::array({"echo-1"})}});
  auto remote = make_metered_user(admin, "remote@example.com", opening,
                                  {{"allowed_ips", json::array({"10.0.0.0/8"})}});
  auto revoked = make_metered_user(admin, "revoked@example.com", opening);
  const auto expires_at = unix_now() + 2;
  auto expiring =
      make_metered_user(admin, "expiring@example.com", opening, {{"expires_at", expires_at}});
  auto suspended = make_metered_user(admin, "suspended@example.com", opening);
  auto plain = make_metered_user(admin, "plain@example.com", opening);

  // The allowlisted key sees only its models.
  auto models = gw.consumer(narrow.key).get("/v1/models");
  BOOST_TEST_REQUIRE(models.status == 200, models.body);
  BOOST_TEST(models.json()["data"].size() == 1u, models.body);
  BOOST_TEST(models.json()["data"][0]["id"] == "echo-1", models.body);

  auto revoke = admin.del("/admin/keys/" + revoked.key_id);
  BOOST_TEST_REQUIRE(revoke.status == 200, revoke.body);
  auto suspend = admin.patch("/admin/users/" + suspended.id, dump({{"suspended", true}}));
  BOOST_TEST_REQUIRE(suspend.status == 200, suspend.body);
  BOOST_TEST_REQUIRE(wait_until(5s, [&] { return unix_now() > expires_at; }));

  auto sql = gw.open_db();
  auto before = take_snapshot(*sql);
  const std::vector<refusal> refusals{
      {"model not in the allowlist", narrow.key, "gpt-mock", 403, "permission_error",
       "model_not_allowed"},
      {"client IP not allowed", remote.key, "gpt-mock", 403, "permission_error", "ip_not_allowed"},
      {"revoked key", revoked.key, "gpt-mock", 401, "authentication_error", "key_revoked"},
      {"expired key", expiring.key, "gpt-mock", 401, "authentication_error", "key_expired"},
      {"suspended user", suspended.key, "gpt-mock", 403, "permission_error", "user_suspended"},
      {"unknown model", plain.key, "gpt-nonexistent", 404, "not_found_error", "model_not_found"},
  };
  for (const auto& r : refusals)
    for (bool stream : {false, true}) {
      auto what = r.what + (stream ? ", streamed" : "");
      auto response = gw.consumer(r.key).post("/v1/chat/completions",
                                              dump(chat_body(r.model, prompt, 10, stream, stream)));
      expect_error(response, r.status, r.type, r.code, std::nullopt, what);
      if (r.code == "model_not_allowed" || r.code == "model_not_found")
        BOOST_TEST(response.body.find(r.model) != std::string::npos,
                   what << ": the message does not name the model: " << response.body);
      auto embedding = gw.consumer(r.key).post(
          "/v1/embeddings", dump({{"model", r.model}, {"input", "one two three"}}));
      expect_error(embedding, r.status, r.type, r.code, std::nullopt, r.what + ", embedding");
    }

  BOOST_TEST(take_snapshot(*gw.open_db()) == before);
  long long usage_rows = -1;
  *sql << "SELECT COUNT(*) FROM usage_records", soci::into(usage_rows);
  BOOST_TEST(usage_rows == 0);
  BOOST_TEST(mock.stats()["requests"] == 0);
  for (const auto* u : {&narrow, &remote, &revoked, &expiring, &suspended, &plain})
    BOOST_TEST(check_ledger_invariants(*sql, u->id) == opening);
  for (const auto* u : {&narrow, &plain}) {
    auto me = me_of(gw, u->key);
    BOOST_TEST(me["balance"] == opening);
    BOOST_TEST(me["held"] == 0);
  }
}

/// One malformed call body and the field its 400 must name.
struct bad_body {
  std::string what;
  std::string path;
  std::string body;
  std::optional<std::string> param;
};

/// Malformed bodies get 400 naming the field at fault, and change nothing anywhere.
void check_bad_bodies(store kind) {
  mock_upstream mock;
  test_gateway gw(kind, options_with_config(mock_gateway_config(mock.base_url())));
  auto admin = gw.admin();
  constexpr int64_t opening = 10'000;
  auto ada = make_metered_user(admin, "ada@example.com", opening);
  auto client = gw.consumer(ada.key);

  auto with = [](const std::string& field, const json& value) {
    auto body = chat_body("gpt-mock", prompt, 10);
    body[field] = value;
    return dump(body);
  };
  const std::string chat = "/v1/chat/completions";
  const std::vector<bad_body> cases{
      {"empty object", chat, "{}", "model"},
      {"no model", chat, dump({{"messages", json::array({{{"role", "user"}, {"content", "hi"}}})}}),
       "model"},
      {"model not a string", chat, with("model", 42), "model"},
      {"no messages", chat, dump({{"model", "gpt-mock"}}), "messages"},
      {"messages not an array", chat, with("messages", "hello"), "messages"},
      {"messages empty", chat, with("messages", json::array()), "messages"},
      {"message without role", chat, with("messages", json::array({{{"content", "hi"}}})),
       "messages"},
      {"max_tokens 0", chat, with("max_tokens", 0), "max_tokens"},
      {"max_tokens negative", chat, with("max_tokens", -5), "max_tokens"},
      {"max_tokens a string", chat, with("max_tokens", "ten"), "max_tokens"},
      {"max_completion_tokens 0", chat, with("max_completion_tokens", 0), "max_completion_tokens"},
      {"n 0", chat, with("n", 0), "n"},
      {"stream not a bool", chat, with("stream", "yes"), "stream"},
      {"stream_options not an object", chat, with("stream_options", "usage"), "stream_options"},
      {"invalid JSON", chat, R"({"model": "gpt-mock", "messages": [)", std::nullopt},
      {"JSON array", chat, "[]", std::nullopt},
      {"embedding without input", "/v1/embeddings", dump({{"model", "gpt-mock"}}), "input"},
      {"embedding without model", "/v1/embeddings", dump({{"input", "hello"}}), "model"},
  };

  auto sql = gw.open_db();
  auto before = take_snapshot(*sql);
  for (const auto& c : cases) {
    auto response = client.post(c.path, c.body);
    BOOST_TEST_CONTEXT(c.what << ": " << c.body << " -> " << response.status << " "
                              << response.body) {
      BOOST_TEST(response.status == 400);
      BOOST_TEST(!response.header("x-request-id").empty());
      auto doc = json::parse(response.body, nullptr, false);
      BOOST_TEST_REQUIRE((doc.is_object() && doc.contains("error") && doc["error"].is_object()));
      const auto& error = doc["error"];
      BOOST_TEST(error.value("type", "") == "invalid_request_error");
      BOOST_TEST(!error.value("code", "").empty());
      BOOST_TEST(!error.value("message", "").empty());
      BOOST_TEST(error.contains("param"));
      if (c.param) {
        BOOST_TEST(error["param"] == *c.param);
        BOOST_TEST(error.value("message", "").find(*c.param) != std::string::npos);
      } else {
        BOOST_TEST(error["param"].is_null());
      }
    }
  }
  BOOST_TEST(take_snapshot(*gw.open_db()) == before);
  BOOST_TEST(usage_of(*sql, ada.id).empty());
  BOOST_TEST(mock.stats()["requests"] == 0);
  auto me = me_of(gw, ada.key);
  BOOST_TEST(me["balance"] == opening);
  BOOST_TEST(me["held"] == 0);
}

} // namespace

BOOST_AUTO_TEST_SUITE(proxy_policy_sqlite)

BOOST_AUTO_TEST_CASE(requests_per_minute) {
  check_requests_per_minute(store::sqlite);
}

BOOST_AUTO_TEST_CASE(policy_refusals) {
  check_policy_refusals(store::sqlite);
}

BOOST_AUTO_TEST_CASE(bad_bodies) {
  check_bad_bodies(store::sqlite);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(proxy_policy_live)

BOOST_AUTO_TEST_CASE(requests_per_minute) {
  check_requests_per_minute(store::postgresql);
}

BOOST_AUTO_TEST_CASE(policy_refusals) {
  check_policy_refusals(store::postgresql);
}

BOOST_AUTO_TEST_SUITE_END()
