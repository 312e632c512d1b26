#include <regex>
#include <string>

#include <boost/test/unit_test.hpp>

#include "schemas/key_format.hpp"
#include "storage/keys_repository.hpp"
#include "tests/integration/harness.hpp"

using namespace tollgate::test;
using namespace tollgate::test::integration;
using nlohmann::json;

namespace {

/// The README's first session: a user, credits, a key, and the key asking who it is.
void check_first_session(store kind) {
  test_gateway gw(kind);
  auto anonymous = gw.anonymous();
  auto health = anonymous.get("/health");
  BOOST_TEST(health.status == 200);
  BOOST_TEST(health.json() == json({{"status", "ok"}}));
  BOOST_TEST(!health.header("x-request-id").empty());
  auto ready = anonymous.get("/ready");
  BOOST_TEST(ready.status == 200);
  BOOST_TEST(ready.json() == json({{"status", "ready"}}));
  BOOST_TEST(!ready.header("x-request-id").empty());

  auto admin = gw.admin();
  auto t0 = unix_now();
  auto created =
      admin.post("/admin/users", dump({{"name", "Ada Lovelace"}, {"email", "ada@example.com"}}));
  BOOST_TEST_REQUIRE(created.status == 201, created.body);
  BOOST_TEST(!created.header("x-request-id").empty());
  auto user = created.json();
  const std::string user_id = user["id"];
  BOOST_TEST(std::regex_match(user_id, std::regex("usr_[0-9a-f]+")), user_id);
  BOOST_TEST(user["object"] == "user");
  BOOST_TEST(user["name"] == "Ada Lovelace");
  BOOST_TEST(user["email"] == "ada@example.com");
  BOOST_TEST(user["balance"] == 0);
  BOOST_TEST(user["suspended"] == false);
  BOOST_TEST(user["limits"] == json({{"rpm", nullptr}, {"tpm", nullptr}, {"rpd", nullptr}}));
  BOOST_TEST(user["created_at"].get<int64_t>() >= t0);
  BOOST_TEST(user["created_at"].get<int64_t>() <= unix_now());
  BOOST_TEST(user["updated_at"] == user["created_at"]);

  auto credited = admin.post("/admin/users/" + user_id + "/credits",
                             dump({{"amount", 5'000'000}, {"reason", "welcome"}}));
  BOOST_TEST_REQUIRE(credited.status == 201, credited.body);
  auto credit = credited.json();
  BOOST_TEST(credit["balance"] == 5'000'000);
  const auto& entry = credit["entry"];
  BOOST_TEST(entry["object"] == "ledger_entry");
  BOOST_TEST(entry["user_id"] == user_id);
  BOOST_TEST(entry["kind"] == "credit");
  BOOST_TEST(entry["amount"] == 5'000'000);
  BOOST_TEST(entry["balance_after"] == 5'000'000);
  BOOST_TEST(entry["reason"] == "welcome");
  BOOST_TEST(entry["actor"] == "admin");
  BOOST_TEST(entry["id"].is_number_integer());
  BOOST_TEST(!entry["request_id"].get<std::string>().empty());
  BOOST_TEST(credited.header("idempotent-replayed").empty());

  auto key_created = admin.post("/admin/users/" + user_id + "/keys", dump({{"name", "laptop"}}));
  BOOST_TEST_REQUIRE(key_created.status == 201, key_created.body);
  auto key = key_created.json();
  const std::string secret = key["key"];
  const std::string key_id = key["id"];
  BOOST_TEST(std::regex_match(secret, std::regex("tg-live-[0-9a-f]{48}")), secret);
  BOOST_TEST(secret.starts_with(key["prefix"].get<std::string>()));
  BOOST_TEST(key["prefix"].get<std::string>().size() < secret.size());
  BOOST_TEST(key["name"] == "laptop");
  BOOST_TEST(key["environment"] == "live");
  BOOST_TEST(key["user_id"] == user_id);
  BOOST_TEST(!key.contains("key_hash"));

  auto me = gw.consumer(secret).get("/v1/me");
  BOOST_TEST_REQUIRE(me.status == 200, me.body);
  BOOST_TEST(!me.header("x-request-id").empty());
  auto body = me.json();
  BOOST_TEST(body["object"] == "me");
  BOOST_TEST(body["user"]["id"] == user_id);
  BOOST_TEST(body["user"]["name"] == "Ada Lovelace");
  BOOST_TEST(body["user"]["email"] == "ada@example.com");
  BOOST_TEST(body["user"]["limits"] == user["limits"]);
  BOOST_TEST(body["balance"] == 5'000'000);
  BOOST_TEST(body["available"] == 5'000'000);
  BOOST_TEST(body["held"] == 0);
  const auto& me_key = body["key"];
  BOOST_TEST(me_key["id"] == key_id);
  BOOST_TEST(me_key["name"] == "laptop");
  BOOST_TEST(me_key["environment"] == "live");
  BOOST_TEST(me_key["prefix"] == key["prefix"]);
  BOOST_TEST(me_key["limits"] == key["limits"]);
  BOOST_TEST(me_key["models"] == json::array());
  BOOST_TEST(me_key["allowed_ips"] == json::array());
  BOOST_TEST(me_key["expires_at"].is_null());
  BOOST_TEST(me_key["created_at"] == key["created_at"]);
  BOOST_TEST(!me_key.contains("key"));
  BOOST_TEST(!me_key.contains("key_hash"));
  BOOST_TEST(me.body.find(secret.substr(8)) == std::string::npos);

  auto fetched = admin.get("/admin/users/" + user_id);
  BOOST_TEST_REQUIRE(fetched.status == 200, fetched.body);
  BOOST_TEST(fetched.json()["balance"] == 5'000'000);

  auto keys = admin.get("/admin/users/" + user_id + "/keys");
  BOOST_TEST_REQUIRE(keys.status == 200, keys.body);
  auto key_list = keys.json();
  BOOST_TEST(key_list["object"] == "list");
  BOOST_TEST_REQUIRE(key_list["data"].size() == 1u);
  BOOST_TEST(key_list["data"][0]["id"] == key_id);
  BOOST_TEST(!key_list["data"][0].contains("key"));
  BOOST_TEST(!key_list["data"][0].contains("key_hash"));
  BOOST_TEST(keys.body.find(secret.substr(8)) == std::string::npos);
  BOOST_TEST(keys.body.find(tollgate::schemas::sha256_hex(secret)) == std::string::npos);

  auto sql = gw.open_db();
  BOOST_TEST(check_ledger_invariants(*sql, user_id) == 5'000'000);
  auto entries = ledger_of(*sql, user_id);
  BOOST_TEST_REQUIRE(entries.size() == 1u);
  BOOST_TEST(entries[0].id == entry["id"].get<int64_t>());
  BOOST_TEST(entries[0].amount == 5'000'000);
  // Keys are stored by hash only.
  auto stored = tollgate::storage::keys_repository(*sql).find(key_id);
  BOOST_TEST_REQUIRE(stored.has_value());
  BOOST_TEST(stored->key_hash == tollgate::schemas::sha256_hex(secret));
  long long holding_secret = 0;
  *sql << "SELECT COUNT(*) FROM api_keys WHERE key_hash = :s OR prefix = :s2 OR name = :s3",
      soci::use(secret), soci::use(secret), soci::use(secret), soci::into(holding_secret);
  BOOST_TEST(holding_secret == 0);
}

struct restart_state {
  json users;
  json ledger_ada;
  json ledger_bob;
  json keys_ada;
  json keys_bob;
  json audit;
  json me_ada;
  json me_bob;
  db_snapshot snapshot;
};

restart_state read_state(test_gateway& gw, const std::string& ada, const std::string& bob,
                         const std::string& ada_key, const std::string& bob_key) {
  auto admin = gw.admin();
  auto get = [&](http_client& client, const std::string& path) {
    auto response = client.get(path);
    BOOST_TEST_REQUIRE(response.status == 200, "GET " << path << ": " << response.body);
    return response.json();
  };
  restart_state s;
  s.users = get(admin, "/admin/users?limit=100");
  s.ledger_ada = get(admin, "/admin/users/" + ada + "/ledger?limit=100");
  s.ledger_bob = get(admin, "/admin/users/" + bob + "/ledger?limit=100");
  s.keys_ada = get(admin, "/admin/users/" + ada + "/keys");
  s.keys_bob = get(admin, "/admin/users/" + bob + "/keys");
  s.audit = get(admin, "/admin/audit?limit=100");
  auto ada_client = gw.consumer(ada_key);
  s.me_ada = get(ada_client, "/v1/me");
  auto bob_client = gw.consumer(bob_key);
  s.me_bob = get(bob_client, "/v1/me");
  s.snapshot = take_snapshot(*gw.open_db());
  return s;
}

void expect_same_state(const restart_state& before, const restart_state& after) {
  BOOST_TEST(before.users == after.users);
  BOOST_TEST(before.ledger_ada == after.ledger_ada);
  BOOST_TEST(before.ledger_bob == after.ledger_bob);
  BOOST_TEST(before.keys_ada == after.keys_ada);
  BOOST_TEST(before.keys_bob == after.keys_bob);
  BOOST_TEST(before.audit == after.audit);
  BOOST_TEST(before.me_ada == after.me_ada);
  BOOST_TEST(before.me_bob == after.me_bob);
  BOOST_TEST(before.snapshot == after.snapshot);
}

/// Users, balances, ledger and keys survive a clean restart and a SIGKILL; the same keys
/// still work and idempotency keys still hold.
void check_restart(store kind) {
  test_gateway gw(kind);
  std::string ada, bob, ada_key, bob_key, revoked_key, replay_entry;
  {
    auto admin = gw.admin();
    ada = create_user(admin, "Ada", "ada@example.com")["id"].get<std::string>();
    bob = create_user(admin, "Bob", "bob@example.com")["id"].get<std::string>();
    auto topup = post_credits(admin, ada, 3'000'000, "top up", "restart-topup-1");
    BOOST_TEST_REQUIRE(topup.status == 201, topup.body);
    replay_entry = topup.json()["entry"].dump();
    add_credits(admin, ada, -250'000, "refund");
    add_credits(admin, bob, 42);
    ada_key =
        create_key(admin, ada,
                   {{"name", "laptop"}, {"rpm", 60}, {"models", json::array({"echo-1"})}})["key"]
            .get<std::string>();
    auto old = create_key(admin, ada, {{"name", "old"}});
    revoked_key = old["key"].get<std::string>();
    auto revoke = admin.del("/admin/keys/" + old["id"].get<std::string>());
    BOOST_TEST_REQUIRE(revoke.status == 200, revoke.body);
    bob_key =
        create_key(admin, bob, {{"name", "ci"}, {"environment", "test"}})["key"].get<std::string>();
    auto patch = admin.patch("/admin/users/" + bob, dump({{"rpm", 10}}));
    BOOST_TEST_REQUIRE(patch.status == 200, patch.body);
  }
  auto before = read_state(gw, ada, bob, ada_key, bob_key);
  BOOST_TEST(before.me_ada["balance"] == 2'750'000);
  BOOST_TEST(before.me_bob["balance"] == 42);
  BOOST_TEST(before.me_bob["key"]["environment"] == "test");

  BOOST_TEST(gw.process().stop() == 0);
  gw.process().start();
  auto after = read_state(gw, ada, bob, ada_key, bob_key);
  expect_same_state(before, after);
  expect_error(gw.consumer(revoked_key).get("/v1/me"), 401, "authentication_error", "key_revoked",
               std::nullopt, "revoked key after restart");

  {
    // The idempotency key still holds: the replay changes nothing.
    auto admin = gw.admin();
    auto replay = post_credits(admin, ada, 3'000'000, "top up", "restart-topup-1");
    BOOST_TEST_REQUIRE(replay.status == 201, replay.body);
    BOOST_TEST(replay.header("idempotent-replayed") == "true");
    BOOST_TEST(replay.json()["entry"].dump() == replay_entry);
    BOOST_TEST(take_snapshot(*gw.open_db()) == before.snapshot);
    // The user's balance carries on from the stored one.
    auto more = add_credits(admin, ada, 1'000);
    BOOST_TEST(more["balance"] == 2'751'000);
    BOOST_TEST(more["entry"]["balance_after"] == 2'751'000);
  }
  auto acknowledged = read_state(gw, ada, bob, ada_key, bob_key);
  BOOST_TEST(acknowledged.me_ada["balance"] == 2'751'000);

  // Every answered change is durable: SIGKILL loses none of them.
  gw.process().kill();
  gw.process().start();
  auto revived = read_state(gw, ada, bob, ada_key, bob_key);
  expect_same_state(acknowledged, revived);

  auto sql = gw.open_db();
  BOOST_TEST(check_ledger_invariants(*sql, ada) == 2'751'000);
  BOOST_TEST(check_ledger_invariants(*sql, bob) == 42);
  BOOST_TEST(ledger_of(*sql, ada).size() == 3u);
  BOOST_TEST(ledger_of(*sql, bob).size() == 1u);
}

} // namespace

BOOST_AUTO_TEST_SUITE(accounts_sqlite)

BOOST_AUTO_TEST_CASE(first_session) {
  check_first_session(store::sqlite);
}

BOOST_AUTO_TEST_CASE(state_survives_restart) {
  check_restart(store::sqlite);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(accounts_live)

BOOST_AUTO_TEST_CASE(first_session) {
  check_first_session(store::postgresql);
}

BOOST_AUTO_TEST_CASE(state_survives_restart) {
  check_restart(store::postgresql);
}

BOOST_AUTO_TEST_SUITE_END()
