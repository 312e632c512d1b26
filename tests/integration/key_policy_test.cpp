#include <chrono>
#include <string>
#include <thread>

#include <boost/test/unit_test.hpp>

#include "tests/integration/harness.hpp"

using namespace tollgate::test;
using namespace tollgate::test::integration;
using nlohmann::json;

namespace {

/// GET /v1/me with `key`; must answer 200.
json me_ok(const test_gateway& gw, const std::string& key, const std::string& what) {
  auto response = gw.consumer(key).get("/v1/me");
  BOOST_TEST_REQUIRE(response.status == 200, what << ": " << response.body);
  return response.json();
}

void expect_me_refused(const test_gateway& gw, const std::string& key, long status,
                       const std::string& type, const std::string& code, const std::string& what) {
  expect_error(gw.consumer(key).get("/v1/me"), status, type, code, std::nullopt, what);
}

struct funded_user {
  std::string id;
  std::string key;
  std::string key_id;
};

funded_user make_funded_user(http_client& admin, const std::string& email,
                             const json& key_body = json::object()) {
  funded_user u;
  u.id = create_user(admin, "User " + email, email)["id"].get<std::string>();
  add_credits(admin, u.id, 10'000);
  auto key = create_key(admin, u.id, key_body);
  u.key = key["key"].get<std::string>();
  u.key_id = key["id"].get<std::string>();
  return u;
}

/// A revoked key fails on the very next request, whether its actor is active or not, and
/// only that key: the user's other keys keep working.
void check_revocation(store kind) {
  test_gateway gw(kind);
  auto admin = gw.admin();
  auto ada = make_funded_user(admin, "ada@example.com");
  auto spare = create_key(admin, ada.id, {{"name", "spare"}});
  auto unused = create_key(admin, ada.id, {{"name", "never used"}});
  me_ok(gw, ada.key, "before revocation");
  me_ok(gw, spare["key"].get<std::string>(), "spare before revocation");

  auto t0 = unix_now();
  auto revoked = admin.del("/admin/keys/" + ada.key_id);
  BOOST_TEST_REQUIRE(revoked.status == 200, revoked.body);
  auto body = revoked.json();
  BOOST_TEST(body["id"] == ada.key_id);
  BOOST_TEST_REQUIRE(body["revoked_at"].is_number_integer());
  BOOST_TEST(body["revoked_at"].get<int64_t>() >= t0);
  BOOST_TEST(body["revoked_at"].get<int64_t>() <= unix_now());
  BOOST_TEST(!body.contains("key"));
  expect_me_refused(gw, ada.key, 401, "authentication_error", "key_revoked",
                    "used key, right after revocation");
  expect_me_refused(gw, ada.key, 401, "authentication_error", "key_revoked",
                    "used key, second request after revocation");

  auto second = admin.del("/admin/keys/" + unused["id"].get<std::string>());
  BOOST_TEST_REQUIRE(second.status == 200, second.body);
  expect_me_refused(gw, unused["key"].get<std::string>(), 401, "authentication_error",
                    "key_revoked", "never used key, right after revocation");

  // Revoking again is harmless and keeps the first time.
  auto again = admin.del("/admin/keys/" + ada.key_id);
  BOOST_TEST_REQUIRE(again.status == 200, again.body);
  BOOST_TEST(again.json()["revoked_at"] == body["revoked_at"]);

  auto me = me_ok(gw, spare["key"].get<std::string>(), "spare after revocation");
  BOOST_TEST(me["balance"] == 10'000);
  auto listed = admin.get("/admin/users/" + ada.id + "/keys");
  BOOST_TEST_REQUIRE(listed.status == 200, listed.body);
  int revoked_listed = 0;
  auto listed_keys = listed.json();
  for (const auto& k : listed_keys["data"])
    revoked_listed += k["revoked_at"].is_null() ? 0 : 1;
  BOOST_TEST(revoked_listed == 2, listed.body);
  auto snapshot = take_snapshot(*gw.open_db());
  BOOST_TEST(snapshot.api_keys == 3);
  BOOST_TEST(snapshot.revoked_keys == 2);
}

/// Waits until the wall clock has reached unix second `when` (the gateway reads the same clock).
void wait_until_unix(int64_t when) {
  std::this_thread::sleep_until(std::chrono::system_clock::time_point{std::chrono::seconds{when}} +
                                std::chrono::milliseconds{20});
  while (unix_now() < when)
    std::this_thread::sleep_for(std::chrono::milliseconds{10});
}

/// A key that expires works until then and answers 401 key_expired from then on, whether
/// it was in use before or first used after.
void check_expiry(store kind) {
  test_gateway gw(kind);
  auto admin = gw.admin();
  auto expires_at = unix_now() + 2;
  auto ada = make_funded_user(admin, "ada@example.com", {{"expires_at", expires_at}});
  auto later = create_key(admin, ada.id, {{"name", "later"}, {"expires_at", expires_at}});
  auto lasting = create_key(admin, ada.id, {{"name", "lasting"}});

  auto response = gw.consumer(ada.key).get("/v1/me");
  if (unix_now() < expires_at) {
    // Answered before the expiry, so it must have been admitted.
    BOOST_TEST_REQUIRE(response.status == 200, response.body);
    BOOST_TEST(response.json()["key"]["expires_at"] == expires_at);
  } else {
    BOOST_TEST_MESSAGE("the machine was too slow to see the key before it expired");
  }

  wait_until_unix(expires_at);
  expect_me_refused(gw, ada.key, 401, "authentication_error", "key_expired",
                    "key used before it expired");
  expect_me_refused(gw, later["key"].get<std::string>(), 401, "authentication_error", "key_expired",
                    "key first used after it expired");
  me_ok(gw, lasting["key"].get<std::string>(), "key without expiry");
}

/// An IP allowlist that does not hold the client's address (127.0.0.1) refuses with 403.
void check_ip_allowlist(store kind) {
  test_gateway gw(kind);
  auto admin = gw.admin();
  auto ada =
      make_funded_user(admin, "ada@example.com", {{"allowed_ips", json::array({"10.0.0.0/8"})}});
  expect_me_refused(gw, ada.key, 403, "permission_error", "ip_not_allowed", "10.0.0.0/8 only");
  expect_me_refused(gw, ada.key, 403, "permission_error", "ip_not_allowed",
                    "10.0.0.0/8 only, again");
  auto v6 = create_key(admin, ada.id, {{"allowed_ips", json::array({"::1"})}});
  expect_me_refused(gw, v6["key"].get<std::string>(), 403, "permission_error", "ip_not_allowed",
                    "::1 only");

  auto exact = create_key(admin, ada.id, {{"allowed_ips", json::array({"127.0.0.1"})}});
  auto me = me_ok(gw, exact["key"].get<std::string>(), "127.0.0.1 allowed");
  BOOST_TEST(me["key"]["allowed_ips"] == json::array({"127.0.0.1"}));
  auto block =
      create_key(admin, ada.id, {{"allowed_ips", json::array({"10.0.0.0/8", "127.0.0.0/8"})}});
  me = me_ok(gw, block["key"].get<std::string>(), "127.0.0.0/8 allowed");
  BOOST_TEST(me["key"]["allowed_ips"] == json::array({"10.0.0.0/8", "127.0.0.0/8"}));
}

/// A suspended user's keys answer 403 at once, used or not; unsuspending lets them in again.
void check_suspension(store kind) {
  test_gateway gw(kind);
  auto admin = gw.admin();
  auto ada = make_funded_user(admin, "ada@example.com");
  auto bob = make_funded_user(admin, "bob@example.com");
  me_ok(gw, ada.key, "before suspension");

  auto suspended = admin.patch("/admin/users/" + ada.id, dump({{"suspended", true}}));
  BOOST_TEST_REQUIRE(suspended.status == 200, suspended.body);
  BOOST_TEST(suspended.json()["suspended"] == true);
  BOOST_TEST(suspended.json()["balance"] == 10'000);
  expect_me_refused(gw, ada.key, 403, "permission_error", "user_suspended",
                    "used key, right after suspension");
  auto fresh = create_key(admin, ada.id, {{"name", "made while suspended"}});
  expect_me_refused(gw, fresh["key"].get<std::string>(), 403, "permission_error", "user_suspended",
                    "new key of a suspended user");
  me_ok(gw, bob.key, "another user is not affected");
  auto snapshot = take_snapshot(*gw.open_db());
  BOOST_TEST(snapshot.suspended_users == 1);

  auto restored = admin.patch("/admin/users/" + ada.id, dump({{"suspended", false}}));
  BOOST_TEST_REQUIRE(restored.status == 200, restored.body);
  BOOST_TEST(restored.json()["suspended"] == false);
  auto me = me_ok(gw, ada.key, "right after unsuspension");
  BOOST_TEST(me["balance"] == 10'000);
  me_ok(gw, fresh["key"].get<std::string>(), "new key after unsuspension");
  auto sql = gw.open_db();
  BOOST_TEST(take_snapshot(*sql).suspended_users == 0);
  BOOST_TEST(check_ledger_invariants(*sql, ada.id) == 10'000);
}

} // namespace

BOOST_AUTO_TEST_SUITE(key_policy_sqlite)

BOOST_AUTO_TEST_CASE(revoked_key_fails_at_once) {
  check_revocation(store::sqlite);
}

BOOST_AUTO_TEST_CASE(expired_key_fails) {
  check_expiry(store::sqlite);
}

BOOST_AUTO_TEST_CASE(ip_allowlist) {
  check_ip_allowlist(store::sqlite);
}

BOOST_AUTO_TEST_CASE(suspended_user) {
  check_suspension(store::sqlite);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(key_policy_live)

BOOST_AUTO_TEST_CASE(revoked_key_fails_at_once) {
  check_revocation(store::postgresql);
}

BOOST_AUTO_TEST_CASE(expired_key_fails) {
  check_expiry(store::postgresql);
}

BOOST_AUTO_TEST_CASE(ip_allowlist) {
  check_ip_allowlist(store::postgresql);
}

BOOST_AUTO_TEST_CASE(suspended_user) {
  check_suspension(store::postgresql);
}

BOOST_AUTO_TEST_SUITE_END()
