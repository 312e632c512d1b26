#include "actors/key/key_actor.hpp"

#include "actors/metrics/metrics.hpp"
#include "actors/request_timeouts.hpp"
#include "storage/database.hpp"

namespace tollgate {

namespace {

schemas::rate_limits effective_limits(const schemas::rate_limits& own,
                                      const schemas::rate_limits& defaults) {
  return {own.rpm > 0 ? own.rpm : defaults.rpm, own.tpm > 0 ? own.tpm : defaults.tpm,
          own.rpd > 0 ? own.rpd : defaults.rpd};
}

using self_ptr = caf::stateful_actor<key_state>*;

/// How long a key waits for its user actor to be found (the directory itself gives up on a
/// shard that does not settle sooner).
constexpr auto resolve_timeout = std::chrono::seconds(30);

/// Answers with `answer(user)`, given the key's user actor: the one this actor holds, or,
/// once that one ended (passivated, or its shard moved to another node) or a call found it
/// gone (`stale`), the one the directory finds now, wherever it lives. The key's rate
/// windows stay with this actor either way.
template <class T, class Fn>
caf::result<T> with_user(self_ptr self, bool stale, Fn answer) {
  auto& st = self->state;
  if (st.user && !stale)
    return answer(st.user);
  auto promise = self->make_response_promise<T>();
  // Answered below, or, if this actor ends first, failed as CAF fails a request it never
  // handled: the caller then asks the directory again.
  auto id = st.waiting.add(promise);
  self->request(st.directory, resolve_timeout, resolve_user_atom_v, st.key.user_id)
      .then(
          [=](caf::actor& user) mutable {
            forget_request_timeout(self);
            auto& now = self->state;
            now.waiting.take(id); // answered below, through the typed promise
            if (user != now.user) {
              if (now.user)
                self->demonitor(now.user);
              now.user = user;
              self->monitor(user);
            }
            auto answered = answer(user);
            if (answered)
              promise.deliver(std::move(*answered));
            else
              promise.deliver(answered.error());
          },
          [=](caf::error& err) mutable {
            forget_request_timeout(self);
            self->state.waiting.take(id);
            promise.deliver(err);
          });
  return promise;
}

/// Ends the actor; calls still waiting for their user are failed as never handled.
void end_key(self_ptr self, caf::error reason = {}) {
  self->state.waiting.fail_all();
  self->quit(std::move(reason));
}

} // namespace

schemas::api_error rate_limit_error(const rate_limiter& limiter,
                                    const rate_limiter::decision& decision,
                                    rate_clock::time_point now) {
  auto err = schemas::rate_limited(decision.reason);
  auto seconds = std::chrono::ceil<std::chrono::seconds>(decision.retry_after).count();
  err.headers = {"retry-after", std::to_string(std::max<int64_t>(seconds, 1))};
  auto fields = limiter.headers(now).fields;
  err.headers.insert(err.headers.end(), fields.begin(), fields.end());
  return err;
}

std::string windows_now(const rate_limiter& limiter) {
  return limiter.snapshot(rate_clock::now(), wall_ms()).to_text();
}

void restore_windows(rate_limiter& limiter, const rate_snapshot& windows) {
  if (windows.taken_at_ms > 0)
    limiter.restore(windows, rate_clock::now(), wall_ms());
}

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

caf::behavior key_actor(caf::stateful_actor<key_state>* self, schemas::key_record key,
                        caf::actor user, caf::actor directory, schemas::rate_limits defaults,
                        std::chrono::seconds idle, rate_snapshot windows) {
  auto& init = self->state;
  init.policy = key_policy(key);
  init.limiter = rate_limiter(effective_limits(key.limits, defaults));
  restore_windows(init.limiter, windows);
  init.key = std::move(key);
  init.user = std::move(user);
  init.directory = std::move(directory);
  init.idle = idle_timer(idle);
  self->delayed_send(self, idle, idle_atom_v);
  // The user actor may live on another node and end first (passivated, crashed, or its
  // shard moved): the next call finds the user afresh; the windows stay here.
  self->monitor(init.user);
  self->set_down_handler([=](caf::down_msg& msg) {
    auto& st = self->state;
    if (st.user && msg.source == st.user.address())
      st.user = nullptr;
  });
  // Stopped by the directory (its shard left this node, or the node stops).
  self->set_exit_handler([=](caf::exit_msg& msg) { end_key(self, std::move(msg.reason)); });
  return {
      [=](authenticate_atom, const std::string& client_ip) -> caf::result<key_grant> {
        self->state.idle.touch();
        return with_user<key_grant>(
            self, false, [=](const caf::actor& owner) -> caf::expected<key_grant> {
              auto& st = self->state;
              if (auto rejection = st.policy.admit(st.key, storage::unix_now(), client_ip))
                return make_api_failure(std::move(*rejection));
              return key_grant{st.key, owner};
            });
      },
      [=](admit_atom, const admission_request& req) -> caf::result<admission> {
        self->state.idle.touch();
        return with_user<admission>(
            self, req.again, [=](const caf::actor& owner) -> caf::expected<admission> {
              auto& st = self->state;
              if (auto rejection = st.policy.admit(st.key, storage::unix_now(), req.client_ip))
                return make_api_failure(std::move(*rejection));
              if (auto rejection = st.policy.allows_model(st.key, req.model))
                return make_api_failure(std::move(*rejection));
              auto now = rate_clock::now();
              if (!req.again) { // a call admitted again was counted the first time
                auto decision = st.limiter.admit(req.tokens, now);
                if (!decision.admitted) {
                  gateway_metrics::global().rate_limited.at({"key"}).add();
                  return make_api_failure(rate_limit_error(st.limiter, decision, now));
                }
              }
              return admission{st.key.id,
                               st.key.user_id,
                               st.key.environment,
                               caf::actor_cast<caf::actor>(self),
                               owner,
                               st.limiter.headers(now)};
            });
      },
      [=](usage_atom, int64_t token_delta) {
        self->state.limiter.correct_tokens(token_delta, rate_clock::now());
      },
      [=](revoke_atom, int64_t revoked_at) {
        self->state.key.revoked_at = revoked_at;
        return caf::unit;
      },
      [=](release_atom) {
        // The key's shard moves to another node: its windows go along.
        auto taken = windows_now(self->state.limiter);
        end_key(self);
        return taken;
      },
      [=](idle_atom) {
        auto& st = self->state;
        if (auto wait = st.idle.next_tick()) {
          self->delayed_send(self, *wait, idle_atom_v);
          return;
        }
        // The directory keeps the key's record and windows to start it again from (or
        // passivates it, keeping the windows, in Redis if there is one, for the key's next
        // activation).
        auto kept = windows_now(st.limiter);
        self->request(st.directory, caf::infinite, passivate_atom_v, st.key, kept)
            .await([=](bool ok) {
              if (ok)
                end_key(self);
              else
                self->delayed_send(self, self->state.idle.limit(), idle_atom_v);
            });
      },
  };
}

} // namespace tollgate
