#include "actors/key/key_actor.hpp"

#include "actors/metrics/metrics.hpp"
#include "storage/database.hpp"

namespace tollgate {

namespace {

schemas::rate_limits effective_limits(const schemas::rate_limits& own,
                                      const schemas::rate_limits& defaults) {
  return {own.rpm > 0 ? own.rpm : defaults.rpm, own.tpm > 0 ? own.tpm : defaults.tpm,
          own.rpd > 0 ? own.rpd : defaults.rpd};
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
  if (windows.taken_at_ms > 0)
    init.limiter.restore(windows, rate_clock::now(), wall_ms());
  init.key = std::move(key);
  init.user = std::move(user);
  init.directory = std::move(directory);
  // The user actor may live on another node and end first (passivated, crashed, or its
  // shard moved): this actor then ends too, and the next call resolves the user afresh.
  self->monitor(init.user);
  self->set_down_handler([=](caf::down_msg& msg) {
    if (msg.source == self->state.user.address())
      self->quit();
  });
  return {
      [=](authenticate_atom, const std::string& client_ip) -> caf::result<key_grant> {
        auto& st = self->state;
        if (auto rejection = st.policy.admit(st.key, storage::unix_now(), client_ip))
          return make_api_failure(std::move(*rejection));
        return key_grant{st.key, st.user};
      },
      [=](admit_atom, const admission_request& req) -> caf::result<admission> {
        auto& st = self->state;
        if (auto rejection = st.policy.admit(st.key, storage::unix_now(), req.client_ip))
          return make_api_failure(std::move(*rejection));
        if (auto rejection = st.policy.allows_model(st.key, req.model))
          return make_api_failure(std::move(*rejection));
        auto now = rate_clock::now();
        auto decision = st.limiter.admit(req.tokens, now);
        if (!decision.admitted) {
          gateway_metrics::global().rate_limited.at({"key"}).add();
          return make_api_failure(rate_limit_error(st.limiter, decision, now));
        }
        return admission{st.key, caf::actor_cast<caf::actor>(self), st.user,
                         st.limiter.headers(now)};
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
        auto taken = self->state.limiter.snapshot(rate_clock::now(), wall_ms()).to_text();
        self->quit();
        return taken;
      },
      caf::after(idle) >>
          [=] {
            auto& st = self->state;
            self->request(st.directory, caf::infinite, passivate_atom_v, std::string("key"),
                          st.key.key_hash)
                .await([=](bool ok) {
                  if (!ok)
                    return;
                  // Kept (in Redis, when there is one) for the key's next activation.
                  self->send(self->state.directory, caf::put_atom_v, self->state.key.key_hash,
                             self->state.limiter.snapshot(rate_clock::now(), wall_ms()).to_text());
                  self->quit();
                });
          },
  };
}

} // namespace tollgate
