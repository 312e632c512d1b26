#include "actors/user/user_actor.hpp"

#include <limits>

#include "storage/database.hpp"

namespace tollgate {

namespace {

user_view view_of(const user_state& st) {
  auto user = st.user;
  user.balance = st.account.balance();
  return {std::move(user), st.account.held(), st.account.available(),
          static_cast<int64_t>(st.account.open_holds())};
}

} // namespace

caf::behavior user_actor(caf::stateful_actor<user_state>* self, schemas::user_record user,
                         caf::actor ledger, caf::actor directory, std::chrono::seconds idle) {
  auto& init = self->state;
  init.account = credit_account(user.balance);
  init.user = std::move(user);
  init.ledger = std::move(ledger);
  init.directory = std::move(directory);
  return {
      [=](caf::get_atom) { return view_of(self->state); },
      [=](update_atom, schemas::user_record& changed) {
        // Policy fields only: the balance is this actor's, never taken from outside.
        auto& u = self->state.user;
        u.name = std::move(changed.name);
        u.email = std::move(changed.email);
        u.suspended = changed.suspended;
        u.limits = changed.limits;
        u.updated_at = changed.updated_at;
        return caf::unit;
      },
      [=](credit_atom, credit_order& order) -> caf::result<storage::ledger_result> {
        auto& st = self->state;
        auto promise = self->make_response_promise();
        auto [waiting, first] = st.credits_in_flight.try_emplace(order.request_id);
        waiting->second.push_back(promise);
        if (!first)
          return promise;
        // A debit that does not fit is still sent, with an unreachable floor: the ledger then
        // answers a replay of an earlier request with its entry, and anything else with
        // "insufficient", changing nothing.
        bool reserved = st.account.begin_change(order.amount);
        int64_t floor = reserved ? st.account.floor() : std::numeric_limits<int64_t>::max();
        storage::ledger_post post;
        post.change = {0, st.user.id,   order.request_id, "credit",           order.amount,
                       0, order.reason, order.actor,      storage::unix_now()};
        post.floor = floor;
        post.audit = {0,
                      order.actor,
                      order.amount > 0 ? "credits.add" : "credits.remove",
                      st.user.id,
                      "{\"balance\":" + std::to_string(st.account.balance()) + "}",
                      {},
                      order.http_request_id,
                      post.change.created_at};
        auto finish = [=](storage::ledger_result result) {
          auto& now = self->state;
          if (reserved)
            now.account.finish_change(order.amount,
                                      result.status == storage::apply_status::committed);
          if (result.status == storage::apply_status::insufficient)
            result.error = "available balance is " + std::to_string(now.account.available());
          auto node = now.credits_in_flight.extract(order.request_id);
          for (auto& p : node.mapped())
            p.deliver(result);
        };
        self->request(st.ledger, caf::infinite, post_atom_v, std::move(post))
            .then([=](storage::ledger_result& result) { finish(std::move(result)); },
                  [=](caf::error& err) {
                    finish({storage::apply_status::failed, {}, to_string(err)});
                  });
        return promise;
      },
      caf::after(idle) >>
          [=] {
            auto& st = self->state;
            if (!st.account.idle() || !st.credits_in_flight.empty())
              return;
            // While the directory decides, this actor takes no work: after a yes, senders see it
            // gone and resolve the user again, which loads the committed state afresh.
            self->request(st.directory, caf::infinite, passivate_atom_v, std::string("user"),
                          st.user.id)
                .await([=](bool ok) {
                  if (ok)
                    self->quit();
                });
          },
  };
}

} // namespace tollgate
