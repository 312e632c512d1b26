#include "actors/directory/directory_actor.hpp"

#include "actors/key/key_actor.hpp"
#include "actors/metrics/metrics.hpp"
#include "actors/user/user_actor.hpp"
#include "storage/keys_repository.hpp"
#include "storage/users_repository.hpp"

namespace tollgate {

namespace {

using self_ptr = caf::stateful_actor<directory_state>*;
using waiter = directory_state::waiter;

metric_value& user_actors() {
  static auto& v = gateway_metrics::global().actors.at({"user"});
  return v;
}

metric_value& key_actors() {
  static auto& v = gateway_metrics::global().actors.at({"key"});
  return v;
}

void finish_loading(std::unordered_map<std::string, std::vector<waiter>>& loading,
                    const std::string& id, const caf::expected<caf::actor>& result) {
  auto node = loading.extract(id);
  if (node.empty())
    return;
  for (auto& w : node.mapped())
    w(result);
}

void activate_user(self_ptr self, const std::string& user_id, waiter done) {
  auto& st = self->state;
  if (auto it = st.users.find(user_id); it != st.users.end()) {
    done(it->second);
    return;
  }
  auto [pending, first] = st.loading_users.try_emplace(user_id);
  pending->second.push_back(std::move(done));
  if (!first)
    return;
  run_db(self, st.db,
         [user_id](soci::session& sql) {
           auto user = storage::users_repository(sql).find(user_id);
           if (!user)
             return caf::make_message(
                 make_api_failure(schemas::not_found("no user with id '" + user_id + "'")));
           return caf::make_message(std::move(*user));
         })
      .then(
          [=](schemas::user_record& user) {
            auto& now = self->state;
            auto handle = self->spawn(user_actor, std::move(user), now.ledger,
                                      caf::actor_cast<caf::actor>(self), now.idle);
            self->monitor(handle);
            now.users.emplace(user_id, handle);
            user_actors().add(1);
            finish_loading(now.loading_users, user_id, handle);
          },
          [=](caf::error& err) { finish_loading(self->state.loading_users, user_id, err); });
}

void activate_key(self_ptr self, const std::string& key_hash, waiter done) {
  auto& st = self->state;
  if (auto it = st.keys.find(key_hash); it != st.keys.end()) {
    done(it->second.handle);
    return;
  }
  auto [pending, first] = st.loading_keys.try_emplace(key_hash);
  pending->second.push_back(std::move(done));
  if (!first)
    return;
  run_db(self, st.db,
         [key_hash](soci::session& sql) {
           auto key = storage::keys_repository(sql).find_by_hash(key_hash);
           if (!key)
             return caf::make_message(
                 make_api_failure(schemas::unauthenticated("incorrect API key provided")));
           return caf::make_message(std::move(*key));
         })
      .then(
          [=](schemas::key_record& key) {
            auto user_id = key.user_id;
            activate_user(self, user_id, [=](caf::expected<caf::actor> user) mutable {
              auto& now = self->state;
              if (!user) {
                finish_loading(now.loading_keys, key_hash, user.error());
                return;
              }
              auto handle =
                  self->spawn(key_actor, std::move(key), *user, caf::actor_cast<caf::actor>(self),
                              now.default_limits, now.idle);
              self->monitor(handle);
              now.keys.emplace(key_hash, directory_state::key_entry{handle, user_id});
              key_actors().add(1);
              ++now.keys_per_user[user_id];
              finish_loading(now.loading_keys, key_hash, handle);
            });
          },
          [=](caf::error& err) { finish_loading(self->state.loading_keys, key_hash, err); });
}

/// Delivers to `promise` what `target` answers to `msg`, or the activation error.
template <class... Ts>
waiter delegate_to(caf::response_promise promise, Ts... xs) {
  return [=](caf::expected<caf::actor> target) mutable {
    if (!target)
      promise.deliver(target.error());
    else
      promise.delegate(*target, xs...);
  };
}

/// Passes `xs` on to the entity's actor if it is active; an inactive one has nothing to
/// update (it loads the stored state when activated).
template <class... Ts>
caf::response_promise forward_if_active(self_ptr self, const caf::actor* target, Ts... xs) {
  auto promise = self->make_response_promise();
  if (target)
    promise.delegate(*target, xs...);
  else
    promise.deliver(caf::unit);
  return promise;
}

/// Forgets an actor that ended without being passivated (it crashed): the next call
/// activates a fresh one from the committed state.
void forget(self_ptr self, const caf::actor_addr& gone) {
  auto& st = self->state;
  for (auto it = st.keys.begin(); it != st.keys.end(); ++it) {
    if (it->second.handle.address() == gone) {
      if (--st.keys_per_user[it->second.user_id] <= 0)
        st.keys_per_user.erase(it->second.user_id);
      st.keys.erase(it);
      key_actors().add(-1);
      return;
    }
  }
  for (auto it = st.users.begin(); it != st.users.end(); ++it) {
    if (it->second.address() == gone) {
      st.users.erase(it);
      user_actors().add(-1);
      return;
    }
  }
}

bool is_sender(self_ptr self, const caf::actor& handle) {
  return self->current_sender() == caf::actor_cast<caf::strong_actor_ptr>(handle);
}

} // namespace

caf::behavior directory_actor(caf::stateful_actor<directory_state>* self, db_pool db,
                              caf::actor ledger, schemas::rate_limits default_limits,
                              std::chrono::seconds idle) {
  self->state.default_limits = default_limits;
  self->state.db = std::move(db);
  self->state.ledger = std::move(ledger);
  self->state.idle = idle;
  self->set_down_handler([=](caf::down_msg& msg) { forget(self, msg.source); });
  // Key and user actors end with the directory (node shutdown).
  self->set_exit_handler([=](caf::exit_msg& msg) {
    for (auto& [hash, entry] : self->state.keys)
      self->send_exit(entry.handle, msg.reason);
    for (auto& [id, handle] : self->state.users)
      self->send_exit(handle, msg.reason);
    self->quit(msg.reason);
  });
  return {
      [=](authenticate_atom, const std::string& key_hash, const std::string& client_ip) {
        auto promise = self->make_response_promise();
        activate_key(self, key_hash, delegate_to(promise, authenticate_atom_v, client_ip));
        return promise;
      },
      [=](admit_atom, const std::string& key_hash, admission_request& req) {
        auto promise = self->make_response_promise();
        activate_key(self, key_hash, delegate_to(promise, admit_atom_v, std::move(req)));
        return promise;
      },
      [=](resolve_user_atom, const std::string& user_id) {
        auto promise = self->make_response_promise();
        activate_user(self, user_id, [=](caf::expected<caf::actor> user) mutable {
          if (user)
            promise.deliver(*user);
          else
            promise.deliver(user.error());
        });
        return promise;
      },
      [=](credit_atom, const std::string& user_id, credit_order& order) {
        auto promise = self->make_response_promise();
        activate_user(self, user_id, delegate_to(promise, credit_atom_v, std::move(order)));
        return promise;
      },
      [=](user_changed_atom, schemas::user_record& user) {
        auto& users = self->state.users;
        auto it = users.find(user.id);
        return forward_if_active(self, it == users.end() ? nullptr : &it->second, update_atom_v,
                                 std::move(user));
      },
      [=](revoke_atom, const std::string& key_hash, int64_t revoked_at) {
        auto& keys = self->state.keys;
        auto it = keys.find(key_hash);
        return forward_if_active(self, it == keys.end() ? nullptr : &it->second.handle,
                                 revoke_atom_v, revoked_at);
      },
      [=](passivate_atom, const std::string& kind, const std::string& id) {
        auto& st = self->state;
        if (kind == "key") {
          auto it = st.keys.find(id);
          if (it == st.keys.end() || !is_sender(self, it->second.handle))
            return false;
          if (--st.keys_per_user[it->second.user_id] <= 0)
            st.keys_per_user.erase(it->second.user_id);
          // Passivated actors end normally: only a crash needs the down message (and its
          // scan of every entry).
          self->demonitor(it->second.handle);
          st.keys.erase(it);
          key_actors().add(-1);
          return true;
        }
        auto it = st.users.find(id);
        // A user actor outlives every key actor that hands out its handle.
        if (it == st.users.end() || !is_sender(self, it->second) || st.keys_per_user.count(id) > 0)
          return false;
        self->demonitor(it->second);
        st.users.erase(it);
        user_actors().add(-1);
        return true;
      },
      [=](stats_atom) {
        auto& st = self->state;
        return std::make_tuple(static_cast<int64_t>(st.users.size()),
                               static_cast<int64_t>(st.keys.size()));
      },
  };
}

} // namespace tollgate
