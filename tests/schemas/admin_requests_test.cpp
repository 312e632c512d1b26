#include <boost/test/unit_test.hpp>

#include "schemas/admin_requests.hpp"

using namespace tollgate::schemas;

namespace {

/// Asserts that parsing failed with a 400 naming `param` (empty: no particular field).
template <class T>
void expect_invalid(const result<T>& r, const std::string& param, const std::string& code = {}) {
  BOOST_REQUIRE_MESSAGE(!r.ok(), "expected a validation error");
  BOOST_TEST(r.error().status == 400);
  BOOST_TEST(r.error().type == "invalid_request_error");
  BOOST_TEST(r.error().param == param);
  if (!code.empty())
    BOOST_TEST(r.error().code == code);
}

constexpr int64_t now = 1'800'000'000;

} // namespace

BOOST_AUTO_TEST_SUITE(admin_requests)

BOOST_AUTO_TEST_CASE(new_user_accepts_name_email_and_limits) {
  auto r = parse_new_user(R"({"name":"Ada","email":"ada@example.com","rpm":60,"tpm":null})");
  BOOST_REQUIRE(r.ok());
  BOOST_TEST(r->name == "Ada");
  BOOST_TEST(r->email == "ada@example.com");
  BOOST_TEST(r->limits.rpm == 60);
  BOOST_TEST(r->limits.tpm == 0);
}

BOOST_AUTO_TEST_CASE(new_user_rejects_each_bad_field) {
  expect_invalid(parse_new_user("{not json"), "", "invalid_json");
  expect_invalid(parse_new_user("[1,2]"), "", "invalid_json");
  expect_invalid(parse_new_user(R"({"email":"a@b.co"})"), "name", "missing_field");
  expect_invalid(parse_new_user(R"({"name":"A"})"), "email", "missing_field");
  expect_invalid(parse_new_user(R"({"name":5,"email":"a@b.co"})"), "name");
  expect_invalid(parse_new_user(R"({"name":"","email":"a@b.co"})"), "name");
  expect_invalid(parse_new_user(R"({"name":"A","email":"nope"})"), "email");
  expect_invalid(parse_new_user(R"({"name":"A","email":"a@@b.co"})"), "email");
  expect_invalid(parse_new_user(R"({"name":"A","email":"a@b.co","rpm":0})"), "rpm");
  expect_invalid(parse_new_user(R"({"name":"A","email":"a@b.co","rpm":1.5})"), "rpm");
  expect_invalid(parse_new_user(R"({"name":"A","email":"a@b.co","admin":true})"), "admin",
                 "unknown_field");
  expect_invalid(parse_new_user(R"({"name":")" + std::string(201, 'x') + R"(","email":"a@b.co"})"),
                 "name");
}

BOOST_AUTO_TEST_CASE(credit_requires_a_nonzero_integer_amount) {
  auto r = parse_credit_request(R"({"amount":-250,"reason":"refund"})");
  BOOST_REQUIRE(r.ok());
  BOOST_TEST(r->amount == -250);
  BOOST_TEST(r->reason == "refund");
  expect_invalid(parse_credit_request("{}"), "amount", "missing_field");
  expect_invalid(parse_credit_request(R"({"amount":0})"), "amount");
  expect_invalid(parse_credit_request(R"({"amount":1.5})"), "amount");
  expect_invalid(parse_credit_request(R"({"amount":"100"})"), "amount");
  expect_invalid(parse_credit_request(R"({"amount":1000000000000000001})"), "amount");
  expect_invalid(parse_credit_request(R"({"amount":9223372036854775807})"), "amount");
  expect_invalid(parse_credit_request(R"({"amount":5,"reason":7})"), "reason");
  expect_invalid(parse_credit_request(R"({"amount":5,"currency":"usd"})"), "currency");
}

BOOST_AUTO_TEST_CASE(new_key_defaults_and_checks) {
  auto r = parse_new_key("{}", now);
  BOOST_REQUIRE(r.ok());
  BOOST_TEST(r->name == "default");
  BOOST_TEST(r->environment == "live");
  auto full = parse_new_key(R"({"name":"ci","environment":"test","rpm":5,"tpm":1000,"rpd":50,
    "models":["echo-1"],"allowed_ips":["10.0.0.0/8","::1"],"expires_at":1800000100})",
                            now);
  BOOST_REQUIRE(full.ok());
  BOOST_TEST(full->environment == "test");
  BOOST_TEST(full->limits.rpd == 50);
  BOOST_TEST(full->models.size() == 1u);
  BOOST_TEST(full->allowed_ips.size() == 2u);
  BOOST_TEST(full->expires_at == 1800000100);
  expect_invalid(parse_new_key(R"({"environment":"staging"})", now), "environment");
  expect_invalid(parse_new_key(R"({"models":"echo-1"})", now), "models");
  expect_invalid(parse_new_key(R"({"models":[""]})", now), "models");
  expect_invalid(parse_new_key(R"({"allowed_ips":["10.0.0.0/33"]})", now), "allowed_ips");
  expect_invalid(parse_new_key(R"({"allowed_ips":["example.com"]})", now), "allowed_ips");
  expect_invalid(parse_new_key(R"({"expires_at":1700000000})", now), "expires_at");
  expect_invalid(parse_new_key(R"({"expires_at":"tomorrow"})", now), "expires_at");
  expect_invalid(parse_new_key(R"({"tpm":-1})", now), "tpm");
}

BOOST_AUTO_TEST_CASE(user_patch_changes_only_what_it_names) {
  user_record user{"usr_1", "Ada", "ada@example.com", false, {10, 20, 30}, 500, 1, 1};
  auto r = parse_user_patch(R"({"suspended":true,"rpm":null,"tpm":99})");
  BOOST_REQUIRE(r.ok());
  auto after = r->apply(user);
  BOOST_TEST(after.suspended);
  BOOST_TEST(after.limits.rpm == 0);
  BOOST_TEST(after.limits.tpm == 99);
  BOOST_TEST(after.limits.rpd == 30);
  BOOST_TEST(after.name == "Ada");
  BOOST_TEST(after.balance == 500);
  expect_invalid(parse_user_patch("{}"), "", "empty_patch");
  expect_invalid(parse_user_patch(R"({"suspended":"yes"})"), "suspended");
  expect_invalid(parse_user_patch(R"({"balance":100})"), "balance", "unknown_field");
  expect_invalid(parse_user_patch(R"({"email":"bad"})"), "email");
}

BOOST_AUTO_TEST_CASE(idempotency_keys_are_printable_and_bounded) {
  BOOST_TEST(!check_idempotency_key("topup-2026-11-22-0001"));
  BOOST_TEST(check_idempotency_key("").has_value());
  BOOST_TEST(check_idempotency_key("has space").has_value());
  BOOST_TEST(check_idempotency_key(std::string(256, 'k')).has_value());
}

BOOST_AUTO_TEST_SUITE_END()
