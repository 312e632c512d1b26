#include <optional>
#include <string>
#include <vector>

#include <boost/test/unit_test.hpp>

#include "tests/integration/harness.hpp"

using namespace tollgate::test;
using namespace tollgate::test::integration;
using nlohmann::json;

namespace {

constexpr std::size_t body_limit = 2048;

/// One request the gateway must refuse, and exactly how.
struct bad_request {
  std::string what;
  std::string method;
  std::string path;
  std::string body;
  /// Bearer token to send; empty sends no Authorization header.
  std::string token;
  header_list headers;
  long status = 0;
  std::string type;
  std::string code;
  std::optional<std::string> param;
};

/// What the admin API shows of the accounts, to compare before and after refused calls.
json api_state(http_client& admin, const std::vector<std::string>& user_ids) {
  json state;
  auto get = [&](const std::string& path) {
    auto response = admin.get(path);
    BOOST_TEST_REQUIRE(response.status == 200, "GET " << path << ": " << response.body);
    return response.json();
  };
  state["users"] = get("/admin/users?limit=100");
  state["audit"] = get("/admin/audit?limit=100");
  for (const auto& id : user_ids) {
    state["ledger"][id] = get("/admin/users/" + id + "/ledger?limit=100");
    state["keys"][id] = get("/admin/users/" + id + "/keys");
  }
  return state;
}

/// Every kind of bad input gets its status, type, code and param, and changes nothing: not
/// in the store, not in what the API shows.
void check_bad_input_changes_nothing(store kind) {
  gateway_options options;
  options.config_json = R"({"http": {"max_body_bytes": )" + std::to_string(body_limit) + "}}";
  test_gateway gw(kind, options);
  auto admin = gw.admin();
  const std::string ada = create_user(admin, "Ada", "ada@example.com")["id"];
  const std::string bob = create_user(admin, "Bob", "bob@example.com")["id"];
  auto setup = post_credits(admin, ada, 1'000, "setup", "setup-1");
  BOOST_TEST_REQUIRE(setup.status == 201, setup.body);
  auto key = create_key(admin, ada, {{"name", "laptop"}});
  const std::string user_key = key["key"];
  const std::string key_id = key["id"];
  auto me = gw.consumer(user_key).get("/v1/me");
  BOOST_TEST_REQUIRE(me.status == 200, me.body);

  const std::string admin_key = gw.process().admin_key();
  const std::string wrong_admin_key = "tg-admin-" + std::string(48, '0');
  const std::string unknown_user_key = "tg-live-" + std::string(48, 'a');
  const std::string users = "/admin/users";
  const std::string ada_path = users + "/" + ada;
  const std::string credits = ada_path + "/credits";
  const std::string keys = ada_path + "/keys";
  const std::string oversized =
      dump({{"name", std::string(body_limit, 'x')}, {"email", "big@example.com"}});
  const std::string oversized_credit =
      dump({{"amount", 5}, {"reason", std::string(body_limit, 'r')}});
  const std::string invalid = "invalid_request_error";
  const header_list text_plain{{"Content-Type", "text/plain"}};
  const header_list form{{"Content-Type", "application/x-www-form-urlencoded"}};
  auto user = [](const std::string& name, const std::string& email) {
    return dump({{"name", name}, {"email", email}});
  };
  auto idempotent = [](const std::string& value) {
    return header_list{{"Idempotency-Key", value}};
  };
  auto future = std::to_string(unix_now() + 3600);
  auto past = std::to_string(unix_now() - 10);

  // clang-format off
  std::vector<bad_request> cases{
    // Admin authentication.
    {"no admin key", "POST", users, user("Eve", "eve@example.com"), "", {}, 401, "authentication_error", "missing_api_key", {}},
    {"wrong admin key", "POST", users, user("Eve", "eve@example.com"), wrong_admin_key, {}, 401, "authentication_error", "invalid_api_key", {}},
    {"user key as admin key", "POST", credits, R"({"amount":100})", user_key, {}, 401, "authentication_error", "invalid_api_key", {}},
    {"no admin key on audit", "GET", "/admin/audit", "", "", {}, 401, "authentication_error", "missing_api_key", {}},
    {"wrong admin key on revoke", "DELETE", "/admin/keys/" + key_id, "", wrong_admin_key, {}, 401, "authentication_error", "invalid_api_key", {}},
    // Creating users.
    {"duplicate email", "POST", users, user("Ada 2", "ada@example.com"), admin_key, {}, 409, "conflict_error", "email_taken", {}},
    {"unknown field", "POST", users, R"({"name":"Eve","email":"eve@example.com","plan":"gold"})", admin_key, {}, 400, invalid, "unknown_field", "plan"},
    {"balance is not settable", "POST", users, R"({"name":"Eve","email":"eve@example.com","balance":100})", admin_key, {}, 400, invalid, "unknown_field", "balance"},
    {"missing name", "POST", users, R"({"email":"eve@example.com"})", admin_key, {}, 400, invalid, "missing_field", "name"},
    {"missing email", "POST", users, R"({"name":"Eve"})", admin_key, {}, 400, invalid, "missing_field", "email"},
    {"empty name", "POST", users, user("", "eve@example.com"), admin_key, {}, 400, invalid, "invalid_value", "name"},
    {"name not a string", "POST", users, R"({"name":7,"email":"eve@example.com"})", admin_key, {}, 400, invalid, "invalid_value", "name"},
    {"bad email", "POST", users, user("Eve", "eve-at-example.com"), admin_key, {}, 400, invalid, "invalid_value", "email"},
    {"email with space", "POST", users, user("Eve", "eve @example.com"), admin_key, {}, 400, invalid, "invalid_value", "email"},
    {"rpm zero", "POST", users, R"({"name":"Eve","email":"eve@example.com","rpm":0})", admin_key, {}, 400, invalid, "invalid_value", "rpm"},
    {"tpm negative", "POST", users, R"({"name":"Eve","email":"eve@example.com","tpm":-5})", admin_key, {}, 400, invalid, "invalid_value", "tpm"},
    {"rpd a string", "POST", users, R"({"name":"Eve","email":"eve@example.com","rpd":"10"})", admin_key, {}, 400, invalid, "invalid_value", "rpd"},
    {"truncated JSON", "POST", users, R"({"name":"Eve",)", admin_key, {}, 400, invalid, "invalid_json", {}},
    {"JSON array", "POST", users, R"(["Eve"])", admin_key, {}, 400, invalid, "invalid_json", {}},
    {"empty body", "POST", users, "", admin_key, {}, 400, invalid, "invalid_json", {}},
    {"text/plain body", "POST", users, user("Eve", "eve@example.com"), admin_key, text_plain, 415, invalid, "unsupported_media_type", {}},
    {"form body", "POST", users, "name=Eve&email=eve%40example.com", admin_key, form, 415, invalid, "unsupported_media_type", {}},
    {"body over the limit", "POST", users, oversized, admin_key, {}, 413, invalid, "request_too_large", {}},
    // Reading users.
    {"unknown user", "GET", users + "/usr_000000000000000000000000", "", admin_key, {}, 404, "not_found_error", "not_found", {}},
    {"limit zero", "GET", users + "?limit=0", "", admin_key, {}, 400, invalid, "invalid_value", "limit"},
    {"limit not a number", "GET", users + "?limit=ten", "", admin_key, {}, 400, invalid, "invalid_value", "limit"},
    {"negative offset", "GET", users + "?offset=-1", "", admin_key, {}, 400, invalid, "invalid_value", "offset"},
    {"ledger of unknown user", "GET", users + "/usr_000000000000000000000000/ledger", "", admin_key, {}, 404, "not_found_error", "not_found", {}},
    {"keys of unknown user", "GET", users + "/usr_000000000000000000000000/keys", "", admin_key, {}, 404, "not_found_error", "not_found", {}},
    // Changing users.
    {"empty patch", "PATCH", ada_path, "{}", admin_key, {}, 400, invalid, "empty_patch", {}},
    {"patch unknown user", "PATCH", users + "/usr_000000000000000000000000", R"({"name":"X"})", admin_key, {}, 404, "not_found_error", "not_found", {}},
    {"patch to a taken email", "PATCH", ada_path, R"({"email":"bob@example.com"})", admin_key, {}, 409, "conflict_error", "email_taken", {}},
    {"patch suspended not a bool", "PATCH", ada_path, R"({"suspended":"yes"})", admin_key, {}, 400, invalid, "invalid_value", "suspended"},
    {"patch balance", "PATCH", ada_path, R"({"balance":1000000})", admin_key, {}, 400, invalid, "unknown_field", "balance"},
    {"patch bad email", "PATCH", ada_path, R"({"email":"nope"})", admin_key, {}, 400, invalid, "invalid_value", "email"},
    {"patch rpm zero", "PATCH", ada_path, R"({"rpm":0})", admin_key, {}, 400, invalid, "invalid_value", "rpm"},
    {"patch invalid JSON", "PATCH", ada_path, "{", admin_key, {}, 400, invalid, "invalid_json", {}},
    // Credits.
    {"amount zero", "POST", credits, R"({"amount":0})", admin_key, {}, 400, invalid, "invalid_value", "amount"},
    {"amount over 1e15", "POST", credits, R"({"amount":1000000000000001})", admin_key, {}, 400, invalid, "invalid_value", "amount"},
    {"amount under -1e15", "POST", credits, R"({"amount":-1000000000000001})", admin_key, {}, 400, invalid, "invalid_value", "amount"},
    {"amount 2^63", "POST", credits, R"({"amount":9223372036854775808})", admin_key, {}, 400, invalid, "invalid_value", "amount"},
    {"amount 2^64-1", "POST", credits, R"({"amount":18446744073709551615})", admin_key, {}, 400, invalid, "invalid_value", "amount"},
    {"amount 2^64-100", "POST", credits, R"({"amount":18446744073709551516})", admin_key, {}, 400, invalid, "invalid_value", "amount"},
    {"amount fractional", "POST", credits, R"({"amount":1.5})", admin_key, {}, 400, invalid, "invalid_value", "amount"},
    {"amount a string", "POST", credits, R"({"amount":"100"})", admin_key, {}, 400, invalid, "invalid_value", "amount"},
    {"amount missing", "POST", credits, R"({"reason":"x"})", admin_key, {}, 400, invalid, "missing_field", "amount"},
    {"credit unknown field", "POST", credits, R"({"amount":5,"user_id":"x"})", admin_key, {}, 400, invalid, "unknown_field", "user_id"},
    {"reason empty", "POST", credits, R"({"amount":5,"reason":""})", admin_key, {}, 400, invalid, "invalid_value", "reason"},
    {"credit unknown user", "POST", users + "/usr_000000000000000000000000/credits", R"({"amount":5})", admin_key, {}, 404, "not_found_error", "not_found", {}},
    {"debit beyond balance", "POST", credits, R"({"amount":-1001})", admin_key, {}, 409, "conflict_error", "insufficient_balance", {}},
    {"keyed debit beyond balance", "POST", credits, R"({"amount":-5000})", admin_key, idempotent("debit-too-much"), 409, "conflict_error", "insufficient_balance", {}},
    {"idempotency key reused", "POST", credits, R"({"amount":2000,"reason":"setup"})", admin_key, idempotent("setup-1"), 409, "conflict_error", "idempotency_key_reused", {}},
    {"idempotency key too long", "POST", credits, R"({"amount":5})", admin_key, idempotent(std::string(256, 'k')), 400, invalid, "invalid_idempotency_key", "Idempotency-Key"},
    {"idempotency key with a space", "POST", credits, R"({"amount":5})", admin_key, idempotent("a b"), 400, invalid, "invalid_idempotency_key", "Idempotency-Key"},
    {"credit body over the limit", "POST", credits, oversized_credit, admin_key, {}, 413, invalid, "request_too_large", {}},
    {"credit as text/plain", "POST", credits, R"({"amount":5})", admin_key, text_plain, 415, invalid, "unsupported_media_type", {}},
    // Keys.
    {"bad environment", "POST", keys, R"({"environment":"prod"})", admin_key, {}, 400, invalid, "invalid_value", "environment"},
    {"bad allowed ip", "POST", keys, R"({"allowed_ips":["not-an-ip"]})", admin_key, {}, 400, invalid, "invalid_value", "allowed_ips"},
    {"bad CIDR length", "POST", keys, R"({"allowed_ips":["10.0.0.0/33"]})", admin_key, {}, 400, invalid, "invalid_value", "allowed_ips"},
    {"expiry in the past", "POST", keys, R"({"expires_at":)" + past + "}", admin_key, {}, 400, invalid, "invalid_value", "expires_at"},
    {"expiry a string", "POST", keys, R"({"expires_at":"tomorrow"})", admin_key, {}, 400, invalid, "invalid_value", "expires_at"},
    {"models not a list", "POST", keys, R"({"models":"echo-1"})", admin_key, {}, 400, invalid, "invalid_value", "models"},
    {"models with an empty name", "POST", keys, R"({"models":[""]})", admin_key, {}, 400, invalid, "invalid_value", "models"},
    {"key unknown field", "POST", keys, R"({"name":"x","scopes":["all"]})", admin_key, {}, 400, invalid, "unknown_field", "scopes"},
    {"key rpm zero", "POST", keys, R"({"rpm":0,"expires_at":)" + future + "}", admin_key, {}, 400, invalid, "invalid_value", "rpm"},
    {"key for unknown user", "POST", users + "/usr_000000000000000000000000/keys", R"({"name":"x"})", admin_key, {}, 404, "not_found_error", "not_found", {}},
    {"revoke unknown key", "DELETE", "/admin/keys/key_000000000000000000000000", "", admin_key, {}, 404, "not_found_error", "not_found", {}},
    // Consumer authentication.
    {"no user key", "GET", "/v1/me", "", "", {}, 401, "authentication_error", "missing_api_key", {}},
    {"malformed user key", "GET", "/v1/me", "", "sk-not-a-tollgate-key", {}, 401, "authentication_error", "invalid_api_key", {}},
    {"unknown user key", "GET", "/v1/me", "", unknown_user_key, {}, 401, "authentication_error", "invalid_api_key", {}},
    {"admin key as user key", "GET", "/v1/me", "", admin_key, {}, 401, "authentication_error", "invalid_api_key", {}},
    // Routing.
    {"unknown route", "GET", "/v2/nothing", "", admin_key, {}, 404, "not_found_error", "unknown_url", {}},
    {"unknown admin route", "POST", "/admin/nothing", "{}", admin_key, {}, 404, "not_found_error", "unknown_url", {}},
    {"DELETE on the user list", "DELETE", users, "", admin_key, {}, 405, invalid, "method_not_allowed", {}},
    {"PUT on a user", "PUT", ada_path, R"({"name":"X"})", admin_key, {}, 405, invalid, "method_not_allowed", {}},
    {"DELETE on credits", "DELETE", credits, "", admin_key, {}, 405, invalid, "method_not_allowed", {}},
    {"POST on /v1/me", "POST", "/v1/me", "{}", user_key, {}, 405, invalid, "method_not_allowed", {}},
    {"POST on /health", "POST", "/health", "{}", "", {}, 405, invalid, "method_not_allowed", {}},
  };
  // clang-format on

  auto baseline = take_snapshot(*gw.open_db());
  BOOST_TEST(baseline.users == 2);
  BOOST_TEST(baseline.api_keys == 1);
  BOOST_TEST(baseline.ledger_entries == 1);
  BOOST_TEST(baseline.balance_total == 1'000);
  auto shown = api_state(admin, {ada, bob});

  // Each case is compared with the state just before it, so that one case that wrongly
  // changes something is named alone.
  auto previous = baseline;
  for (const auto& c : cases) {
    auto client = gw.anonymous();
    client.bearer(c.token);
    auto response = client.request(c.method, c.path, c.body, c.headers);
    expect_error(response, c.status, c.type, c.code, c.param, c.what);
    auto now = take_snapshot(*gw.open_db());
    BOOST_TEST(now == previous, c.what << " changed the store: " << previous << " -> " << now);
    previous = now;
  }

  BOOST_TEST(take_snapshot(*gw.open_db()) == baseline);
  BOOST_TEST((api_state(admin, {ada, bob}) == shown), "the admin API shows a change");
  auto sql = gw.open_db();
  BOOST_TEST(check_ledger_invariants(*sql, ada) == 1'000);
  BOOST_TEST(check_ledger_invariants(*sql, bob) == 0);
  // The user key still works: nothing above touched it.
  auto still = gw.consumer(user_key).get("/v1/me");
  BOOST_TEST_REQUIRE(still.status == 200, still.body);
  BOOST_TEST(still.json()["balance"] == 1'000);
}

} // namespace

BOOST_AUTO_TEST_SUITE(bad_input_sqlite)

BOOST_AUTO_TEST_CASE(refused_and_nothing_changes) {
  check_bad_input_changes_nothing(store::sqlite);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(bad_input_live)

BOOST_AUTO_TEST_CASE(refused_and_nothing_changes) {
  check_bad_input_changes_nothing(store::postgresql);
}

BOOST_AUTO_TEST_SUITE_END()
