#include <boost/test/unit_test.hpp>

#include "tests/integration/harness.hpp"
#include "tests/support/mock_upstream_process.hpp"

// A caller's x-request-id is echoed back but never keys money: two calls that send the same
// id are two calls, each held and charged on its own.

using namespace tollgate;
using namespace tollgate::test;
using namespace tollgate::test::integration;

BOOST_AUTO_TEST_SUITE(proxy_ids_sqlite)

BOOST_AUTO_TEST_CASE(a_reused_request_id_is_charged_every_time) {
  mock_upstream mock;
  test_gateway gw(store::sqlite, options_with_config(mock_gateway_config(mock.base_url())));
  auto admin = gw.admin();
  auto ada = make_metered_user(admin, "ada@example.com", 10'000);
  auto client = gw.consumer(ada.key);
  std::vector<std::string> call_ids;
  for (int i = 0; i < 2; ++i) {
    auto r = client.post("/v1/chat/completions", dump(chat_body("gpt-mock", "same id twice", 10)),
                         {{"x-request-id", "caller-chosen-id"}});
    BOOST_TEST_REQUIRE(r.status == 200, r.body);
    BOOST_TEST(r.header("x-request-id") == "caller-chosen-id");
    BOOST_TEST(r.header("x-tollgate-cost") == "23"); // 3 prompt + 2 x 10 completion
    call_ids.push_back(r.header("x-tollgate-request-id"));
  }
  BOOST_TEST(call_ids[0] != call_ids[1]);
  auto sql = gw.open_db();
  int charges = 0;
  for (const auto& e : ledger_of(*sql, ada.id))
    if (e.kind == "charge") {
      ++charges;
      BOOST_TEST(e.amount == -23);
    }
  BOOST_TEST(charges == 2);
  BOOST_TEST(stored_balance(*sql, ada.id) == 10'000 - 46);
  check_ledger_invariants(*sql, ada.id);
}

BOOST_AUTO_TEST_SUITE_END()
