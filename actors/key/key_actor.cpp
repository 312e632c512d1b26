#include "actors/key/key_actor.hpp"

#include "storage/database.hpp"

namespace tollgate {

caf::behavior key_actor(caf::stateful_actor<key_state>* self, schemas::key_record key,
                        caf::actor user, caf::actor directory, std::chrono::seconds idle) {
  auto& init = self->state;
  init.policy = key_policy(key);
  init.key = std::move(key);
  init.user = std::move(user);
  init.directory = std::move(directory);
  return {
      [=](authenticate_atom, const std::string& client_ip) -> caf::result<key_grant> {
        auto& st = self->state;
        if (auto rejection = st.policy.admit(st.key, storage::unix_now(), client_ip))
          return make_api_failure(std::move(*rejection));
        return key_grant{st.key, st.user};
      },
      [=](revoke_atom, int64_t revoked_at) {
        self->state.key.revoked_at = revoked_at;
        return caf::unit;
      },
      caf::after(idle) >>
          [=] {
            auto& st = self->state;
            self->request(st.directory, caf::infinite, passivate_atom_v, std::string("key"),
                          st.key.key_hash)
                .await([=](bool ok) {
                  if (ok)
                    self->quit();
                });
          },
  };
}

} // namespace tollgate
