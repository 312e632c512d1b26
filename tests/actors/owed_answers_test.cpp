#include <boost/test/unit_test.hpp>

#include <chrono>
#include <cstdint>

#include <caf/all.hpp>

#include "actors/owed_answers.hpp"

using namespace std::chrono_literals;
using tollgate::owed_answers;

namespace {

struct quiet_config : caf::actor_system_config {
  quiet_config() { set("logger.verbosity", caf::atom("quiet")); }
};

struct debtor_state {
  owed_answers owed;
};

/// Takes each `int` request and answers it later: `pay` answers one by its number, `quit`
/// ends the actor the way the gateway's actors end.
caf::behavior debtor(caf::stateful_actor<debtor_state>* self) {
  return {
      [=](int) -> caf::result<int> {
        auto promise = self->make_response_promise<int>();
        self->state.owed.add(promise);
        return promise;
      },
      [=](caf::atom_constant<caf::atom("pay")>, uint64_t id, int value) {
        auto promise = self->state.owed.take(id);
        if (promise.pending())
          promise.deliver(value);
      },
      [=](caf::atom_constant<caf::atom("quit")>) {
        self->state.owed.fail_all();
        self->quit();
      },
  };
}

} // namespace

BOOST_AUTO_TEST_SUITE(owed_answer_lists)

BOOST_AUTO_TEST_CASE(each_number_is_taken_once) {
  owed_answers owed;
  auto first = owed.add({});
  auto second = owed.add({});
  auto third = owed.add({});
  BOOST_TEST(first < second);
  BOOST_TEST(second < third);
  BOOST_TEST(owed.size() == 3u);
  owed.take(second);
  BOOST_TEST(owed.size() == 2u);
  owed.take(second); // already taken: nothing else goes
  owed.take(third + 1);
  BOOST_TEST(owed.size() == 2u);
  owed.take(first);
  owed.take(third);
  BOOST_TEST(owed.empty());
  // Numbers are not reused once taken.
  BOOST_TEST(owed.add({}) > third);
}

BOOST_AUTO_TEST_CASE(an_ending_actor_fails_what_it_still_owes_as_never_handled) {
  quiet_config config;
  caf::actor_system system{config};
  caf::scoped_actor self{system};
  auto owner = system.spawn(debtor);
  // Numbered 1, 2 and 3 in the order they arrive. Without fail_all, the unpaid requests
  // would wait forever: they time out here instead, which fails the test.
  auto first = self->request(owner, 10s, 10);
  auto second = self->request(owner, 10s, 20);
  auto third = self->request(owner, 10s, 30);
  self->send(owner, caf::atom_constant<caf::atom("pay")>::value, uint64_t{2}, 21);
  self->send(owner, caf::atom_constant<caf::atom("quit")>::value);

  int paid = 0;
  second.receive(
      [&](int value) { paid = value; },
      [&](caf::error& err) { BOOST_FAIL("the paid request failed: " << to_string(err)); });
  BOOST_TEST(paid == 21);
  for (auto* unpaid : {&first, &third}) {
    caf::error failed;
    unpaid->receive([&](int value) { BOOST_FAIL("an unpaid request got " << value); },
                    [&](caf::error& err) { failed = std::move(err); });
    BOOST_TEST((failed == caf::sec::request_receiver_down));
  }
}

BOOST_AUTO_TEST_SUITE_END()
