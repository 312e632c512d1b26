#include <boost/test/unit_test.hpp>

#include <chrono>
#include <string>
#include <vector>

#include <caf/all.hpp>

#include "actors/messages.hpp"
#include "actors/user/user_actor.hpp"
#include "tests/support/gateway_messages.hpp"

// A user actor that ends while its ledger posts are under way (its shard moved to another
// node) answers each caller it still owes as never handled, so that the caller asks again,
// of the user's next owner: none is left waiting forever. The user actor is the real one;
// the ledger is an actor that takes posts and never answers, standing for a commit that
// outlives the user actor.

using namespace std::chrono_literals;

namespace {

struct held_posts {
  std::vector<caf::response_promise> promises;
};

/// Keeps every post it gets unanswered.
caf::behavior slow_ledger(caf::stateful_actor<held_posts>* self) {
  return {
      [=](tollgate::post_atom, tollgate::storage::ledger_post&) {
        auto promise = self->make_response_promise();
        self->state.promises.push_back(promise);
        return promise;
      },
  };
}

/// Stands for the directory, which a user actor does not ask on these paths.
caf::behavior idle_directory(caf::event_based_actor* self) {
  self->set_default_handler(caf::drop);
  return {
      [](int) {},
  };
}

struct ending_user {
  tollgate::test::gateway_messages config;
  caf::actor_system system{config};
  caf::scoped_actor self{system};
  caf::actor ledger = system.spawn(slow_ledger);
  caf::actor directory = system.spawn(idle_directory);
  caf::actor user;

  ending_user() {
    tollgate::schemas::user_record record;
    record.id = "usr_ending";
    record.name = "ending";
    record.balance = 1'000'000'000;
    user = system.spawn(tollgate::user_actor, record, ledger, directory, std::chrono::seconds(300),
                        tollgate::shard_fence{}, tollgate::rate_snapshot{});
  }

  ~ending_user() {
    self->send_exit(ledger, caf::exit_reason::user_shutdown);
    self->send_exit(directory, caf::exit_reason::user_shutdown);
  }

  /// How a request still owed when the actor ended was answered (a timeout if it never was).
  template <class Handle>
  caf::error outcome(Handle& pending) {
    caf::error failed;
    pending.receive(
        [&](tollgate::storage::ledger_result&) {
          BOOST_FAIL("the ledger never answered, yet the request got a result");
        },
        [&](caf::error& err) { failed = std::move(err); });
    return failed;
  }
};

} // namespace

BOOST_FIXTURE_TEST_SUITE(ending_user_actors, ending_user)

BOOST_AUTO_TEST_CASE(a_settlement_under_way_fails_as_never_handled) {
  tollgate::hold_request hold;
  hold.hold_id = "req_settling";
  hold.price = {1000, 2000};
  hold.prompt_tokens = 10;
  hold.max_tokens = 16;
  bool held = false;
  self->request(user, 10s, tollgate::hold_atom_v, hold)
      .receive([&](tollgate::hold_grant&) { held = true; },
               [&](caf::error& err) { BOOST_FAIL("no hold: " << to_string(err)); });
  BOOST_TEST_REQUIRE(held);

  tollgate::settlement charge;
  charge.hold_id = hold.hold_id;
  charge.cost = 42;
  charge.usage.request_id = hold.hold_id;
  charge.usage.user_id = "usr_ending";
  // Not answered within 10 s unless the ending actor fails it: the test then fails.
  auto settling = self->request(user, 10s, tollgate::settle_atom_v, charge);
  self->send(user, tollgate::release_atom_v);
  BOOST_TEST((outcome(settling) == caf::sec::request_receiver_down));
}

BOOST_AUTO_TEST_CASE(credits_under_way_fail_as_never_handled) {
  tollgate::credit_order order{"idem_credit", 500, "top-up", "admin", "req_admin"};
  auto first = self->request(user, 10s, tollgate::credit_atom_v, order);
  auto replay = self->request(user, 10s, tollgate::credit_atom_v, order); // waits for the first
  self->send(user, tollgate::release_atom_v);
  BOOST_TEST((outcome(first) == caf::sec::request_receiver_down));
  BOOST_TEST((outcome(replay) == caf::sec::request_receiver_down));
}

BOOST_AUTO_TEST_SUITE_END()
