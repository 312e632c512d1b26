#include "actors/user/user_actor.hpp"

#include <limits>

#include <spdlog/spdlog.h>

#include "actors/key/key_actor.hpp"
#include "actors/metrics/metrics.hpp"
#include "storage/database.hpp"

namespace tollgate {

namespace {

using self_ptr = caf::stateful_actor<user_state>*;

constexpr auto ledger_retry_delay = std::chrono::seconds(1);
constexpr int ledger_attempts = 30;

/// Fails the settlements and credits still waiting for the ledger as CAF fails a request it
/// never handled: their calls then settle with whichever actor owns the user next, and the
/// directory passes the credits on to it (request ids keep each to one ledger entry).
void fail_work_under_way(self_ptr self) {
  if (auto& work = self->state.work) {
    if (!work->owed.empty())
      spdlog::warn("user {} ends with {} charges and credits under way: they go to its next "
                   "owner",
                   self->state.user.id, work->owed.size());
    work->owed.fail_all();
    work->credits_in_flight.clear();
  }
}

/// Ends the actor, failing the work under way first.
void end_user(self_ptr self, caf::error reason = {}) {
  fail_work_under_way(self);
  self->quit(std::move(reason));
}

/// Answers the request numbered `id` in the open work's `owed` once its change is durable
/// or refused.
void answer_owed(self_ptr self, uint64_t id, storage::ledger_result result) {
  if (!self->state.work)
    return;
  auto promise = self->state.work->owed.take(id);
  if (promise.pending())
    promise.deliver(std::move(result));
}

/// Sends `post` to the ledger until it is durable (or the attempts run out): a charge is
/// never dropped because the store hiccuped. `done` gets the final result.
void post_durably(self_ptr self, storage::ledger_post post, int attempts,
                  std::function<void(storage::ledger_result)> done) {
  post.shard = self->state.fence.shard;
  post.epoch = self->state.fence.epoch;
  // The message takes a copy; the handlers share the original, kept for a retry.
  auto kept = std::make_shared<storage::ledger_post>(std::move(post));
  self->request(self->state.ledger, caf::infinite, post_atom_v, *kept)
      .then(
          [=](storage::ledger_result& result) mutable {
            if (result.status == storage::apply_status::fenced) {
              // This node lost the user's shard: its view of the balance may be stale.
              spdlog::warn("ledger refused {} for {}: {}", kept->change.request_id,
                           self->state.user.id, result.error);
              done(std::move(result));
              end_user(self);
              return;
            }
            if (result.status == storage::apply_status::failed && attempts > 1) {
              spdlog::warn("ledger commit failed for {}, retrying: {}", kept->change.request_id,
                           result.error);
              auto id = kept->change.request_id;
              self->state.busy().retries[id] = {std::move(*kept), attempts - 1, std::move(done)};
              self->delayed_send(self, ledger_retry_delay, restart_atom_v, id);
              return;
            }
            done(std::move(result));
          },
          [=](caf::error& err) mutable {
            done(storage::ledger_result{storage::apply_status::failed, kept->change,
                                        to_string(err)});
          });
}

/// The ledger post of a call's charge, with its usage record.
storage::ledger_post charge_post(const user_state& st, settlement s, int64_t charge) {
  storage::ledger_post post;
  post.change = {0, st.user.id,    s.hold_id,      "charge",           -charge,
                 0, s.usage.model, s.usage.key_id, storage::unix_now()};
  post.usage = std::move(s.usage);
  post.usage.cost = charge;
  post.usage.user_id = st.user.id;
  post.usage.created_at = post.change.created_at;
  return post;
}

user_view view_of(const user_state& st) {
  auto user = st.user;
  user.balance = st.account.balance();
  return {std::move(user), st.account.held(), st.account.available(),
          static_cast<int64_t>(st.account.open_holds())};
}

} // namespace

bool apply_policy_change(schemas::user_record& user, schemas::user_record& changed) {
  bool limits_changed = !(user.limits == changed.limits);
  user.name = std::move(changed.name);
  user.email = std::move(changed.email);
  user.suspended = changed.suspended;
  user.limits = changed.limits;
  user.updated_at = changed.updated_at;
  return limits_changed;
}

caf::behavior user_actor(caf::stateful_actor<user_state>* self, schemas::user_record user,
                         caf::actor ledger, caf::actor directory, std::chrono::seconds idle,
                         shard_fence fence, rate_snapshot windows) {
  auto& init = self->state;
  init.fence = fence;
  init.account = credit_account(user.balance);
  init.limiter = rate_limiter(user.limits);
  restore_windows(init.limiter, windows);
  // A request actor that dies with a hold open (it crashed) never settles it: void it here.
  self->set_down_handler([=](caf::down_msg& msg) {
    auto& st = self->state;
    if (!st.work)
      return;
    auto& owners = st.work->hold_owners;
    for (auto it = owners.begin(); it != owners.end();) {
      if (it->second.holder == msg.source) {
        spdlog::warn("voiding hold {}: its request ended without settling", it->first);
        st.account.void_hold(it->first);
        it = owners.erase(it);
      } else {
        ++it;
      }
    }
  });
  // A handler that threw ends the actor too. Calls on this node do not monitor it (they
  // need not: it answers them, now as well), so none is left waiting for an answer.
  self->set_exception_handler([=](caf::scheduled_actor* ptr, std::exception_ptr& e) {
    fail_work_under_way(self);
    return caf::scheduled_actor::default_exception_handler(ptr, e);
  });
  // Ended from outside (its shard left this node, or the node stops).
  self->set_exit_handler([=](caf::exit_msg& msg) {
    if (msg.reason != caf::exit_reason::normal)
      end_user(self, std::move(msg.reason));
  });
  init.user = std::move(user);
  init.ledger = std::move(ledger);
  init.directory = std::move(directory);
  init.idle = idle_timer(idle);
  self->delayed_send(self, idle, idle_atom_v);
  return {
      [=](caf::get_atom) {
        self->state.idle.touch();
        return view_of(self->state);
      },
      [=](update_atom, schemas::user_record& changed) {
        auto& st = self->state;
        if (apply_policy_change(st.user, changed))
          st.limiter = rate_limiter(st.user.limits);
        return caf::unit;
      },
      [=](restart_atom, const std::string& request_id) {
        auto node = self->state.busy().retries.extract(request_id);
        if (!node.empty()) {
          auto& r = node.mapped();
          post_durably(self, std::move(r.post), r.attempts_left, std::move(r.done));
        }
      },
      [=](hold_atom, const hold_request& req) -> caf::result<hold_grant> {
        auto& st = self->state;
        st.idle.touch();
        if (st.closing)
          return shard_moving();
        if (st.user.suspended)
          return make_api_failure(
              schemas::forbidden("this account is suspended", "user_suspended"));
        auto plan = schemas::plan_hold(req.price, req.prompt_tokens, req.max_tokens, req.choices,
                                       req.default_max_tokens, st.account.available());
        if (!plan)
          return make_api_failure(schemas::insufficient_quota(
              "your available balance of " + std::to_string(st.account.available()) +
              " micro-credits cannot cover this call; add credits and retry"));
        auto completion = plan->max_tokens > 0 ? plan->max_tokens : req.max_tokens;
        auto tokens = req.prompt_tokens + completion * req.choices;
        auto now = rate_clock::now();
        auto decision = st.limiter.admit(tokens, now);
        if (!decision.admitted) {
          gateway_metrics::global().rate_limited.at({"user"}).add();
          return make_api_failure(rate_limit_error(st.limiter, decision, now));
        }
        if (!st.account.open_hold(req.hold_id, plan->amount))
          return make_api_failure(
              schemas::conflict("a call with this request id is in flight", "duplicate_request"));
        auto holder = caf::actor_cast<caf::actor>(self->current_sender());
        if (holder)
          self->monitor(holder);
        st.busy().hold_owners[req.hold_id] = {holder ? holder.address() : caf::actor_addr{},
                                              tokens};
        return hold_grant{plan->amount, plan->max_tokens, plan->capped};
      },
      [=](settle_atom, settlement& s) -> caf::result<storage::ledger_result> {
        auto& st = self->state;
        st.idle.touch();
        auto owner = st.busy().hold_owners.extract(s.hold_id);
        if (owner.empty())
          return make_api_failure(
              schemas::conflict("no open hold for request " + s.hold_id, "hold_not_open"));
        if (owner.mapped().holder)
          self->demonitor(owner.mapped().holder);
        // The tokens counted at admission are corrected to what the call used.
        auto used = s.usage.prompt_tokens + s.usage.completion_tokens;
        st.limiter.correct_tokens(used - owner.mapped().tokens, rate_clock::now());
        auto charge = st.account.settle_hold(s.hold_id, s.cost);
        auto hold_id = s.hold_id; // the settlement moves into the post
        auto post = charge_post(st, std::move(s), charge);
        auto promise = self->make_response_promise();
        auto settlement = st.busy().owed.add(promise);
        post_durably(self, std::move(post), ledger_attempts, [=](storage::ledger_result result) {
          auto committed = result.status == storage::apply_status::committed;
          self->state.account.finish_change(-charge, committed);
          if (!committed)
            spdlog::error("charge of {} for {} not recorded: {}", charge, hold_id, result.error);
          answer_owed(self, settlement, std::move(result));
        });
        return promise;
      },
      [=](settle_atom, settlement& s, bool) -> caf::result<storage::ledger_result> {
        // A late settlement: the call's hold was opened on a node that lost the user's shard
        // (or went down) before the charge was durable. The charge comes here, to the
        // current owner, without a hold: at most what is available, never an overdraft,
        // and keyed by the call's request id, so a charge the old owner did commit is
        // answered as a replay and never taken twice.
        auto& st = self->state;
        auto charge = std::min(s.cost, std::max<int64_t>(st.account.available(), 0));
        st.account.begin_change(-charge);
        auto post = charge_post(st, std::move(s), charge);
        auto promise = self->make_response_promise();
        auto settlement = st.busy().owed.add(promise);
        post_durably(self, std::move(post), ledger_attempts, [=](storage::ledger_result result) {
          self->state.account.finish_change(-charge,
                                            result.status == storage::apply_status::committed);
          answer_owed(self, settlement, std::move(result));
        });
        return promise;
      },
      [=](credit_atom, credit_order& order) -> caf::result<storage::ledger_result> {
        auto& st = self->state;
        st.idle.touch();
        auto promise = self->make_response_promise();
        auto& work = st.busy();
        auto [waiting, first] = work.credits_in_flight.try_emplace(order.request_id);
        waiting->second.push_back(work.owed.add(promise));
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
        post.shard = st.fence.shard;
        post.epoch = st.fence.epoch;
        post.audit = {0,
                      order.actor,
                      order.amount > 0 ? "credits.add" : "credits.remove",
                      st.user.id,
                      {},
                      {},
                      order.http_request_id,
                      post.change.created_at};
        auto finish = [=](storage::ledger_result result) {
          auto& now = self->state;
          bool fenced = result.status == storage::apply_status::fenced;
          if (reserved)
            now.account.finish_change(order.amount,
                                      result.status == storage::apply_status::committed);
          if (result.status == storage::apply_status::insufficient)
            result.error = "available balance is " + std::to_string(now.account.available());
          auto node = now.busy().credits_in_flight.extract(order.request_id);
          // The first asker gets the outcome; those that asked meanwhile replayed it.
          bool first_asker = true;
          for (auto asker : node.mapped()) {
            if (!first_asker && result.status == storage::apply_status::committed)
              result.status = storage::apply_status::replayed;
            answer_owed(self, asker, result);
            first_asker = false;
          }
          if (fenced)
            end_user(self); // the shard moved: the new owner loads the user afresh
        };
        self->request(st.ledger, caf::infinite, post_atom_v, std::move(post))
            .then([=](storage::ledger_result& result) { finish(std::move(result)); },
                  [=](caf::error& err) {
                    finish({storage::apply_status::failed, {}, to_string(err)});
                  });
        return promise;
      },
      [=](release_atom) {
        // The user's shard moves to another node (its open work has ended): its own windows
        // go along.
        auto taken = windows_now(self->state.limiter);
        end_user(self);
        return taken;
      },
      [=](open_work_atom) {
        // Asked while the node hands the user's shard over: what still has to end here.
        auto& st = self->state;
        st.closing = true;
        return static_cast<int64_t>(st.open_count() + (st.account.idle() ? 0 : 1));
      },
      [=](idle_atom) {
        auto& st = self->state;
        auto again = [=](idle_timer::clock::duration wait) {
          self->delayed_send(self, wait, idle_atom_v);
        };
        if (st.work && st.open_count() == 0)
          st.work.reset();
        if (auto wait = st.idle.next_tick()) {
          again(*wait);
          return;
        }
        if (!st.account.idle() || st.open_count() > 0) {
          again(st.idle.limit());
          return;
        }
        // While the directory decides, this actor takes no work: after a yes, senders see it
        // gone and resolve the user again. The directory keeps the user's record (committed
        // balance, policy) to start it again from, or passivates it (the next actor loads
        // the committed state from storage); its own windows stay with the directory (or
        // Redis) for its next activation either way.
        auto record = st.user;
        record.balance = st.account.balance();
        auto kept = windows_now(st.limiter);
        self->request(st.directory, caf::infinite, passivate_user_atom_v, std::move(record), kept)
            .await([=](bool ok) {
              if (ok)
                self->quit();
              else
                again(self->state.idle.limit());
            });
      },
  };
}

} // namespace tollgate
