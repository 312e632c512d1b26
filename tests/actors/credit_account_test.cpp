#include <boost/test/unit_test.hpp>

#include "actors/key/key_policy.hpp"
#include "actors/user/credit_account.hpp"

using tollgate::credit_account;

BOOST_AUTO_TEST_SUITE(credit_account_state)

BOOST_AUTO_TEST_CASE(debits_reserve_until_the_ledger_answers) {
  credit_account acct(1000);
  BOOST_TEST(acct.begin_change(-600));
  BOOST_TEST(acct.available() == 400);
  BOOST_TEST(!acct.begin_change(-401)); // would overdraw what is left
  BOOST_TEST(acct.available() == 400);
  BOOST_TEST(!acct.idle());
  acct.finish_change(-600, true);
  BOOST_TEST(acct.balance() == 400);
  BOOST_TEST(acct.available() == 400);
  BOOST_TEST(acct.idle());
}

BOOST_AUTO_TEST_CASE(failed_changes_leave_the_balance) {
  credit_account acct(1000);
  BOOST_TEST(acct.begin_change(-300));
  acct.finish_change(-300, false);
  BOOST_TEST(acct.balance() == 1000);
  BOOST_TEST(acct.available() == 1000);
  BOOST_TEST(acct.begin_change(500));
  BOOST_TEST(acct.available() == 1000); // credits count only once committed
  acct.finish_change(500, true);
  BOOST_TEST(acct.balance() == 1500);
}

BOOST_AUTO_TEST_CASE(holds_keep_money_aside_and_settle_at_most_the_hold) {
  credit_account acct(1000);
  BOOST_TEST(acct.open_hold("a", 700));
  BOOST_TEST(!acct.open_hold("b", 301));
  BOOST_TEST(acct.open_hold("b", 300));
  BOOST_TEST(!acct.open_hold("b", 0)); // ids are unique
  BOOST_TEST(acct.available() == 0);
  BOOST_TEST(acct.floor() == 1000);
  auto charge = acct.settle_hold("a", 900);
  BOOST_TEST(charge == 700); // never more than held
  BOOST_TEST(acct.available() == 0);
  acct.finish_change(-charge, true);
  BOOST_TEST(acct.balance() == 300);
  BOOST_TEST(acct.void_hold("b"));
  BOOST_TEST(!acct.void_hold("b")); // a hold ends once
  BOOST_TEST(acct.available() == 300);
  BOOST_TEST(acct.idle());
}

BOOST_AUTO_TEST_CASE(negative_costs_charge_nothing) {
  credit_account acct(100);
  BOOST_TEST(acct.open_hold("h", 50));
  BOOST_TEST(acct.settle_hold("h", -5) == 0);
  acct.finish_change(0, true);
  BOOST_TEST(acct.balance() == 100);
  BOOST_TEST(acct.settle_hold("unknown", 10) == 0);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(key_policy_checks)

BOOST_AUTO_TEST_CASE(revoked_expired_and_ip) {
  using namespace tollgate;
  schemas::key_record key;
  key.allowed_ips = {"10.0.0.0/8"};
  key.models = {"echo-1"};
  key_policy policy(key);
  BOOST_TEST(!policy.admit(key, 100, "10.1.1.1"));
  auto ip = policy.admit(key, 100, "8.8.8.8");
  BOOST_REQUIRE(ip);
  BOOST_TEST(ip->status == 403);
  BOOST_TEST(ip->code == "ip_not_allowed");
  key.expires_at = 100;
  BOOST_TEST(policy.admit(key, 100, "10.1.1.1")->code == "key_expired");
  key.revoked_at = 50;
  BOOST_TEST(policy.admit(key, 10, "10.1.1.1")->code == "key_revoked");
  BOOST_TEST(policy.admit(key, 10, "10.1.1.1")->status == 401);
  BOOST_TEST(!policy.allows_model(key, "echo-1"));
  auto model = policy.allows_model(key, "gpt-4o");
  BOOST_REQUIRE(model);
  BOOST_TEST(model->status == 403);
  BOOST_TEST(model->message.find("gpt-4o") != std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()
