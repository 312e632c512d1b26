#include "actors/directory/directory_actor.hpp"

#include "actors/cluster/shard_map.hpp"
#include "actors/key/key_actor.hpp"
#include "actors/metrics/metrics.hpp"
#include "actors/request_timeouts.hpp"
#include "actors/user/user_actor.hpp"
#include "storage/keys_repository.hpp"
#include "storage/users_repository.hpp"

#include <optional>
#include <type_traits>

#include <spdlog/spdlog.h>

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

/// Keeps the hibernated gauge true to the records kept.
void count_records(const directory_state& st) {
  static auto& users = gateway_metrics::global().hibernated.at({"user"});
  static auto& keys = gateway_metrics::global().hibernated.at({"key"});
  users.set(static_cast<int64_t>(st.sleeping_users.size()));
  keys.set(static_cast<int64_t>(st.sleeping_keys.size()));
}

/// An actor started, from storage or from its hibernated record.
void count_activation(const char* kind, bool from_record) {
  gateway_metrics::global().activations.at({kind, from_record ? "hibernation" : "storage"}).add();
}

void finish_loading(std::unordered_map<std::string, std::vector<waiter>>& loading,
                    const std::string& id, const caf::expected<caf::actor>& result) {
  auto node = loading.extract(id);
  if (node.empty())
    return;
  for (auto& w : node.mapped())
    w(result);
}

void resolve_user(self_ptr self, const std::string& user_id, waiter done);

/// Where a key's rate windows wait in Redis between two of its actors.
std::string windows_key(const std::string& key_hash) {
  return "tollgate:windows:" + key_hash;
}

/// And a user's own windows (its user-level limits).
std::string user_windows_key(const std::string& user_id) {
  return "tollgate:user-windows:" + user_id;
}

/// A day and a minute: the longest window, and then some.
constexpr int64_t windows_ttl_ms = (24 * 60 + 1) * 60 * 1000;

/// Keeps the windows of an ending key or user actor (`where`: its windows_key or
/// user_windows_key) for its next activation: in Redis, where any node finds them, or else
/// in this directory. `stored`, if given, runs once they are (in Redis: once it confirms, or
/// fails).
void keep_windows(self_ptr self, const std::string& where, std::string windows,
                  std::function<void()> stored = {}) {
  auto& st = self->state;
  if (st.redis) {
    if (!stored) {
      self->send(st.redis, caf::put_atom_v, where, std::move(windows), windows_ttl_ms);
      return;
    }
    self->request(st.redis, std::chrono::seconds(2), caf::put_atom_v, where, std::move(windows),
                  windows_ttl_ms)
        .then([=](bool) { stored(); }, [=](caf::error&) { stored(); });
    return;
  }
  auto& kept = st.kept_windows;
  if (auto snapshot = rate_snapshot::from_text(windows))
    kept[where] = *snapshot;
  else
    kept.erase(where);
  if (stored)
    stored();
  // Entities that never come back would keep their entries forever: each keep looks at the
  // next two buckets of the map for entries older than the longest window. (A sweep of all
  // of them at once held up the directory for about 1.4 s per 2 million entries.) Two buckets
  // per entry added, at most one entry per bucket on average: the sweep goes round faster
  // than the map grows.
  auto oldest = wall_ms() - windows_ttl_ms;
  kept.sweep(
      st.kept_sweep, 2, [&](const auto& entry) { return entry.second.taken_at_ms < oldest; },
      [](auto&&) {});
}

/// The windows the last actor of a key or user left at `where` (in Redis, or in this
/// directory without one); none if there are none, or Redis is down.
void load_windows(self_ptr self, const std::string& where,
                  std::function<void(rate_snapshot)> then) {
  auto& st = self->state;
  if (!st.redis) {
    auto kept = st.kept_windows.extract(where);
    then(kept.empty() ? rate_snapshot{} : kept.mapped());
    return;
  }
  self->request(st.redis, std::chrono::seconds(2), caf::get_atom_v, where)
      .then(
          [=](const std::string& text) {
            then(rate_snapshot::from_text(text).value_or(rate_snapshot{}));
          },
          [=](caf::error&) { then({}); });
}

/// How long an idle actor waits before it ends: until it hibernates, or, without hibernation,
/// until it is passivated.
std::chrono::seconds actor_idle(const directory_state& st) {
  return st.hibernate.count() > 0 && st.hibernate < st.idle ? st.hibernate : st.idle;
}

bool hibernates(const directory_state& st) {
  return actor_idle(st) < st.idle;
}

/// What stays of an idle key or user whose actor ended: its record (`entity` and its
/// windows), to start the next actor from, if this node hibernates them; else only its
/// windows, kept at `where` for its next activation (passivated).
template <class Record, class Entity>
void keep_idle(self_ptr self, hibernation_store<Record>& records, Entity entity,
               std::string windows, const std::string& where) {
  auto& st = self->state;
  if (!hibernates(st)) {
    keep_windows(self, where, std::move(windows));
    return;
  }
  records.put({std::move(entity), rate_snapshot::from_text(windows).value_or(rate_snapshot{})});
  count_records(st);
}

/// Starts the actor of `user` (loaded, or woken from its record) for those waiting for it.
void start_user(self_ptr self, schemas::user_record user, const rate_snapshot& windows,
                bool from_record) {
  auto& st = self->state;
  auto user_id = user.id;
  shard_fence fence;
  if (st.cluster.enabled) {
    fence.shard = cluster::shard_of(user_id, st.cluster.shards);
    auto served = st.cluster.serving.find(fence.shard);
    if (served == st.cluster.serving.end()) {
      // The shard left this node while the user loaded: the caller retries.
      finish_loading(st.loading_users, user_id, shard_moving());
      return;
    }
    fence.epoch = served->second;
  }
  auto handle = self->spawn(user_actor, std::move(user), st.ledger,
                            caf::actor_cast<caf::actor>(self), actor_idle(st), fence, windows);
  self->monitor(handle);
  st.users.emplace(user_id, handle);
  user_actors().add(1);
  count_activation("user", from_record);
  finish_loading(st.loading_users, user_id, handle);
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
  if (auto record = st.sleeping_users.take(user_id)) {
    count_records(st);
    start_user(self, std::move(record->user), record->windows, true);
    return;
  }
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
            load_windows(self, user_windows_key(user_id), [=](rate_snapshot windows) mutable {
              start_user(self, std::move(user), windows, false);
            });
          },
          [=](caf::error& err) { finish_loading(self->state.loading_users, user_id, err); });
}

/// Starts the actor of `key` (loaded, or woken from its record) for those waiting for it,
/// once its user is found.
void start_key(self_ptr self, schemas::key_record key, rate_snapshot windows, bool from_record) {
  auto user_id = key.user_id;
  resolve_user(self, user_id, [=](caf::expected<caf::actor> user) mutable {
    auto& now = self->state;
    auto key_hash = key.key_hash;
    if (!user) {
      // The windows wait for the key's next activation, which loads it again.
      if (windows.taken_at_ms > 0)
        keep_windows(self, windows_key(key_hash), windows.to_text());
      finish_loading(now.loading_keys, key_hash, user.error());
      return;
    }
    auto handle = self->spawn(key_actor, std::move(key), *user, caf::actor_cast<caf::actor>(self),
                              now.default_limits, actor_idle(now), windows);
    self->monitor(handle);
    now.keys.emplace(key_hash, directory_state::key_entry{handle, user_id});
    if (now.handles)
      now.handles->put(key_hash, handle);
    key_actors().add(1);
    count_activation("key", from_record);
    ++now.keys_per_user[user_id];
    finish_loading(now.loading_keys, key_hash, handle);
  });
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
  if (auto record = st.sleeping_keys.take(key_hash)) {
    count_records(st);
    start_key(self, std::move(record->key), record->windows, true);
    return;
  }
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
            load_windows(self, windows_key(key_hash), [=](rate_snapshot windows) mutable {
              start_key(self, std::move(key), windows, false);
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

/// Asks `target` (an entity's actor) `xs` and delivers its answer, a `Reply`, to `promise`.
/// An actor that ended before it took the call (it went idle meanwhile: its record, or the
/// stored state, now holds what it knew) fails it as never handled; then `again` runs, which
/// sends the call wherever the entity is now.
template <class Reply, class... Ts>
void ask_or_again(self_ptr self, caf::response_promise promise, const caf::actor& target,
                  std::function<void()> again, Ts... xs) {
  auto failed = [promise, again](caf::error& err) mutable {
    if (is_receiver_gone(err))
      again();
    else
      promise.deliver(std::move(err));
  };
  if constexpr (std::is_same_v<Reply, caf::unit_t>)
    self->request(target, caf::infinite, xs...)
        .then([promise]() mutable { promise.deliver(caf::unit); }, std::move(failed));
  else
    self->request(target, caf::infinite, xs...)
        .then([promise](Reply& reply) mutable { promise.deliver(std::move(reply)); },
              std::move(failed));
}

/// Passes an admin's change (`xs`) on to the entity's actor: the live one, or the one being
/// started (which may have read the entity before the change). A hibernated entity takes it
/// in its record (`change_record`, given the record if there is one); a passivated one has
/// nothing to update (it loads the stored state when activated). `again` dispatches the
/// change anew, for an actor that ends before it takes it.
template <class Record, class ChangeRecord, class... Ts>
void forward_change(self_ptr self, caf::response_promise promise, const caf::actor* live,
                    std::unordered_map<std::string, std::vector<waiter>>& loading,
                    const std::string& id, Record* record, ChangeRecord change_record,
                    std::function<void()> again, Ts... xs) {
  if (live) {
    ask_or_again<caf::unit_t>(self, promise, *live, again, xs...);
  } else if (auto starting = loading.find(id); starting != loading.end()) {
    // If it fails to start, the next activation loads the changed state from storage.
    starting->second.push_back([=](caf::expected<caf::actor> started) mutable {
      if (started)
        ask_or_again<caf::unit_t>(self, promise, *started, again, xs...);
      else
        promise.deliver(caf::unit);
    });
  } else {
    if (record)
      change_record(*record);
    promise.deliver(caf::unit);
  }
}

void forget_entry(self_ptr self, decltype(directory_state::keys)::iterator it) {
  auto& st = self->state;
  if (--st.keys_per_user[it->second.user_id] <= 0)
    st.keys_per_user.erase(it->second.user_id);
  if (st.handles)
    st.handles->erase(it->first);
  st.keys.erase(it);
  key_actors().add(-1);
}

/// Forgets an actor that ended without being passivated (it crashed, or its user actor
/// ended): the next call activates a fresh one from the committed state.
void forget(self_ptr self, const caf::actor_addr& gone, const caf::error& reason = {}) {
  auto& st = self->state;
  for (auto it = st.keys.begin(); it != st.keys.end(); ++it) {
    if (it->second.handle.address() == gone) {
      forget_entry(self, it);
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
  auto& remote = st.cluster.remote;
  for (auto it = remote.begin(); it != remote.end(); ++it) {
    if (it->second.address() == gone) {
      auto node = it->first;
      spdlog::info("cluster: lost the connection to node {}: {}", node, to_string(reason));
      remote.erase(it);
      // Calls it had not answered go to wherever their shard is served next.
      auto pending = std::move(st.cluster.relays[node]);
      st.cluster.relays.erase(node);
      for (auto& [id, reroute] : pending)
        reroute();
      return;
    }
  }
}

bool is_sender(self_ptr self, const caf::actor& handle) {
  return self->current_sender() == caf::actor_cast<caf::strong_actor_ptr>(handle);
}

// -- cluster routing ---------------------------------------------------------------------

/// How often the directory looks for hibernated keys and users to passivate (a slice of them
/// each time).
constexpr auto sweep_interval = std::chrono::seconds(1);

/// How often a call may be passed between nodes before it waits for the views to agree.
constexpr int max_hops = 2;
/// How long a call waits for its shard to settle on a node.
constexpr auto park_limit = std::chrono::seconds(20);

/// The entity's shard; 0 on a single node (one shard, always here).
int32_t shard_of(self_ptr self, const std::string& id) {
  const auto& c = self->state.cluster;
  return c.enabled ? cluster::shard_of(id, c.shards) : 0;
}

bool serves(self_ptr self, int32_t shard) {
  const auto& c = self->state.cluster;
  return c.serving.count(shard) > 0 && c.releasing.count(shard) == 0;
}

void retry_waiting(self_ptr self) {
  auto waiting = std::move(self->state.cluster.waiting);
  self->state.cluster.waiting.clear();
  auto now = std::chrono::steady_clock::now();
  for (auto& w : waiting) {
    if (now >= w.deadline)
      w.expire();
    else
      w.retry();
  }
}

using park_deadline = std::chrono::steady_clock::time_point;

/// When a call that starts waiting now must be answered: parked again after a retry, it
/// keeps the deadline of its first wait.
park_deadline park_deadline_from_now() {
  return std::chrono::steady_clock::now() + park_limit;
}

void park(self_ptr self, park_deadline deadline, std::function<void()> retry,
          std::function<void()> expire) {
  self->state.cluster.waiting.push_back({deadline, std::move(retry), std::move(expire)});
}

/// Opens a middleman connection to a member's directory; parked calls retry once it is up.
void connect(self_ptr self, const std::string& node) {
  auto& c = self->state.cluster;
  auto address = c.addresses.find(node);
  if (address == c.addresses.end() || c.connecting.count(node) || !c.middleman)
    return;
  // One connection per pair of nodes, opened by the one with the smaller id: the other
  // learns this directory from its hello. (Two connections between the same two nodes,
  // one each way, make CAF drop the route over TLS.)
  if (!(c.self_id < node))
    return;
  if (auto failed = c.unreachable.find(node);
      failed != c.unreachable.end() &&
      std::chrono::steady_clock::now() - failed->second < std::chrono::seconds(1))
    return;
  config::listen_address where;
  try {
    where = config::parse_listen_address(address->second);
  } catch (const std::exception& e) {
    spdlog::warn("cluster: node {} has a bad address {}: {}", node, address->second, e.what());
    return;
  }
  c.connecting.insert(node);
  self->request(c.middleman, caf::infinite, caf::connect_atom::value, where.host, where.port)
      .then(
          [=](const caf::node_id&, caf::strong_actor_ptr& peer, const std::set<std::string>&) {
            auto& now = self->state.cluster;
            now.connecting.erase(node);
            if (!peer) {
              spdlog::warn("cluster: node {} publishes no directory", node);
              return;
            }
            auto handle = caf::actor_cast<caf::actor>(peer);
            self->monitor(handle);
            now.remote[node] = handle;
            now.unreachable.erase(node);
            self->send(handle, cluster_atom_v, now.self_id, caf::actor_cast<caf::actor>(self));
            spdlog::info("cluster: connected to node {} at {}", node, to_string(where));
            retry_waiting(self);
          },
          [=](caf::error& err) {
            auto& now = self->state.cluster;
            now.connecting.erase(node);
            // Once per outage: a dead node is retried every second until its leases move.
            if (!now.unreachable.count(node))
              spdlog::warn("cluster: cannot reach node {}: {}", node, to_string(err));
            now.unreachable[node] = std::chrono::steady_clock::now();
          });
}

using local_action = std::function<void(caf::response_promise)>;
using relay_done = std::function<void(caf::expected<caf::message>)>;
/// Sends a call to another node's directory and reports its typed answer; empty: the call
/// is delegated and answered by the other node directly.
using relay_action =
    std::function<void(const caf::actor& remote, caf::message call, int hops, relay_done)>;

/// How long a relayed call may take (the other node may itself wait for a hand-off).
constexpr auto relay_timeout = std::chrono::seconds(60);

/// Relays calls whose answer is a `Reply`.
template <class Reply>
relay_action relay_for(self_ptr self) {
  return [self](const caf::actor& remote, caf::message call, int hops, relay_done done) {
    self->request(remote, relay_timeout, relay_atom_v, hops, std::move(call))
        .then(
            [self, done](Reply& reply) {
              forget_request_timeout(self);
              done(caf::make_message(std::move(reply)));
            },
            [self, done](caf::error& err) {
              forget_request_timeout(self);
              done(err);
            });
  };
}

bool is_shard_moving(const caf::error& err) {
  auto failure = api_failure_of(err);
  return failure.code == "shard_moving";
}

/// Runs `local` if this node serves `shard`; passes `msg` to the owning node's directory if
/// another node holds the shard; otherwise (a hand-off under way) waits for the views to
/// settle, then tries again, until `deadline` (park_limit after the first wait).
void route(self_ptr self, int32_t shard, caf::message msg, int hops, caf::response_promise promise,
           local_action local, relay_action relay = {},
           std::optional<park_deadline> deadline = std::nullopt) {
  auto& c = self->state.cluster;
  auto wait_then_again = [=]() mutable {
    auto until = deadline.value_or(park_deadline_from_now());
    park(
        self, until, [=] { route(self, shard, msg, hops, promise, local, relay, until); },
        [promise]() mutable { promise.deliver(shard_moving()); });
  };
  if (!c.enabled || serves(self, shard)) {
    local(std::move(promise));
    return;
  }
  const auto& owner = static_cast<std::size_t>(shard) < c.owners.size()
                          ? c.owners[static_cast<std::size_t>(shard)]
                          : std::string();
  if (!owner.empty() && owner != c.self_id && hops < max_hops) {
    if (auto it = c.remote.find(owner); it != c.remote.end()) {
      if (!relay) {
        promise.delegate(it->second, relay_atom_v, hops + 1, std::move(msg));
        return;
      }
      auto id = ++c.next_relay;
      auto finished = std::make_shared<bool>(false);
      c.relays[owner][id] = [=]() mutable {
        if (std::exchange(*finished, true))
          return;
        wait_then_again();
      };
      relay(it->second, msg, hops + 1, [=](caf::expected<caf::message> reply) mutable {
        if (auto node = self->state.cluster.relays.find(owner);
            node != self->state.cluster.relays.end())
          node->second.erase(id);
        if (std::exchange(*finished, true))
          return;
        if (reply)
          promise.deliver(std::move(*reply));
        else if (is_shard_moving(reply.error()) || is_receiver_gone(reply.error()))
          wait_then_again();
        else
          promise.deliver(reply.error());
      });
      return;
    }
    connect(self, owner);
  }
  wait_then_again();
}

/// Resolves a user actor wherever its shard lives: here, or through its node's directory.
void resolve_user(self_ptr self, const std::string& user_id, waiter done) {
  auto& c = self->state.cluster;
  if (!c.enabled || serves(self, shard_of(self, user_id))) {
    activate_user(self, user_id, std::move(done));
    return;
  }
  self->request(caf::actor_cast<caf::actor>(self), caf::infinite, resolve_user_atom_v, user_id)
      .then([=](caf::actor& user) { done(user); }, [=](caf::error& err) { done(err); });
}

/// Handles a call addressed to an entity, here or on the node that owns it. The same code
/// serves calls from this node's requests and calls relayed by other nodes (`hops` > 0).
void dispatch(self_ptr self, caf::message msg, int hops, caf::response_promise promise) {
  if (msg.match_elements<authenticate_atom, std::string, std::string>()) {
    auto key_hash = msg.get_as<std::string>(1);
    auto client_ip = msg.get_as<std::string>(2);
    route(
        self, shard_of(self, key_hash), std::move(msg), hops, std::move(promise),
        [=](caf::response_promise p) {
          activate_key(self, key_hash, delegate_to(p, authenticate_atom_v, client_ip));
        },
        relay_for<key_grant>(self));
  } else if (msg.match_elements<admit_atom, std::string, admission_request>()) {
    auto key_hash = msg.get_as<std::string>(1);
    auto req = msg.get_as<admission_request>(2);
    route(
        self, shard_of(self, key_hash), std::move(msg), hops, std::move(promise),
        [=](caf::response_promise p) {
          activate_key(self, key_hash, delegate_to(p, admit_atom_v, req));
        },
        relay_for<admission>(self));
  } else if (msg.match_elements<resolve_user_atom, std::string>()) {
    auto user_id = msg.get_as<std::string>(1);
    route(
        self, shard_of(self, user_id), std::move(msg), hops, std::move(promise),
        [=](caf::response_promise p) {
          activate_user(self, user_id, [p](caf::expected<caf::actor> user) mutable {
            if (user)
              p.deliver(*user);
            else
              p.deliver(user.error());
          });
        },
        relay_for<caf::actor>(self));
  } else if (msg.match_elements<credit_atom, std::string, credit_order>()) {
    auto user_id = msg.get_as<std::string>(1);
    auto order = msg.get_as<credit_order>(2);
    route(
        self, shard_of(self, user_id), msg, hops, std::move(promise),
        [=](caf::response_promise p) {
          activate_user(self, user_id, [=](caf::expected<caf::actor> user) mutable {
            if (!user) {
              p.deliver(user.error());
              return;
            }
            ask_or_again<storage::ledger_result>(
                self, p, *user, [=] { dispatch(self, msg, hops, p); }, credit_atom_v, order);
          });
        },
        relay_for<storage::ledger_result>(self));
  } else if (msg.match_elements<user_changed_atom, schemas::user_record>()) {
    auto user = msg.get_as<schemas::user_record>(1);
    route(self, shard_of(self, user.id), msg, hops, std::move(promise),
          [=](caf::response_promise p) {
            auto& st = self->state;
            auto it = st.users.find(user.id);
            forward_change(
                self, p, it == st.users.end() ? nullptr : &it->second, st.loading_users, user.id,
                st.sleeping_users.find(user.id),
                [user](hibernated_user& slept) mutable {
                  if (apply_policy_change(slept.user, user))
                    slept.windows = {}; // new limits, fresh windows (as in the actor)
                },
                [=] { dispatch(self, msg, hops, p); }, update_atom_v, user);
          });
  } else if (msg.match_elements<revoke_atom, std::string, int64_t>()) {
    auto key_hash = msg.get_as<std::string>(1);
    auto revoked_at = msg.get_as<int64_t>(2);
    route(self, shard_of(self, key_hash), msg, hops, std::move(promise),
          [=](caf::response_promise p) {
            auto& st = self->state;
            auto it = st.keys.find(key_hash);
            forward_change(
                self, p, it == st.keys.end() ? nullptr : &it->second.handle, st.loading_keys,
                key_hash, st.sleeping_keys.find(key_hash),
                [=](hibernated_key& slept) { slept.key.revoked_at = revoked_at; },
                [=] { dispatch(self, msg, hops, p); }, revoke_atom_v, revoked_at);
          });
  } else {
    promise.deliver(
        make_api_failure(schemas::internal_error("the directory got a call it does not know")));
  }
}

caf::response_promise dispatch_here(self_ptr self, caf::message msg) {
  auto promise = self->make_response_promise();
  dispatch(self, std::move(msg), 0, promise);
  return promise;
}

/// Ends the key and user actors of a shard that left this node (its hibernated keys and
/// users left with `save_windows_then`, which always runs first).
void stop_shard(self_ptr self, int32_t shard) {
  auto& st = self->state;
  for (auto it = st.keys.begin(); it != st.keys.end();) {
    auto next = std::next(it);
    if (shard_of(self, it->first) == shard) {
      self->demonitor(it->second.handle);
      self->send_exit(it->second.handle, caf::exit_reason::user_shutdown);
      forget_entry(self, it);
    }
    it = next;
  }
  for (auto it = st.users.begin(); it != st.users.end();) {
    if (shard_of(self, it->first) == shard) {
      self->demonitor(it->second);
      self->send_exit(it->second, caf::exit_reason::user_shutdown);
      it = st.users.erase(it);
      user_actors().add(-1);
    } else {
      ++it;
    }
  }
}

/// Before a shard leaves: its key and user actors end, and their windows (and those of its
/// hibernated keys and users, whose records this node forgets) wait in Redis for the next
/// owner, which reads them when it activates each; then `then`.
void save_windows_then(self_ptr self, int32_t shard, std::function<void()> then) {
  auto& st = self->state;
  std::vector<std::pair<std::string, caf::actor>> leaving; // where its windows go, actor
  for (auto& [hash, entry] : st.keys)
    if (shard_of(self, hash) == shard)
      leaving.emplace_back(windows_key(hash), entry.handle);
  for (auto& [id, handle] : st.users)
    if (shard_of(self, id) == shard)
      leaving.emplace_back(user_windows_key(id), handle);
  std::vector<std::pair<std::string, std::string>> asleep; // where its windows go, windows
  auto in_shard = [=](const std::string& id) { return shard_of(self, id) == shard; };
  st.sleeping_keys.take_if(in_shard, [&](hibernated_key&& slept) {
    asleep.emplace_back(windows_key(slept.key.key_hash), slept.windows.to_text());
  });
  st.sleeping_users.take_if(in_shard, [&](hibernated_user&& slept) {
    asleep.emplace_back(user_windows_key(slept.user.id), slept.windows.to_text());
  });
  count_records(st);
  if (!st.redis || (leaving.empty() && asleep.empty())) {
    then();
    return;
  }
  auto pending = std::make_shared<std::size_t>(leaving.size() + asleep.size());
  auto one_done = [=] {
    if (--*pending == 0)
      then();
  };
  for (auto& [where, windows] : asleep)
    keep_windows(self, where, std::move(windows), one_done);
  for (auto& [where, handle] : leaving) {
    auto to = where;
    self->request(handle, std::chrono::seconds(2), release_atom_v)
        .then([=](std::string& windows) { keep_windows(self, to, std::move(windows), one_done); },
              [=](caf::error&) { one_done(); });
  }
}

/// A hand-off in progress: done once the shard's users have no open holds (or in time).
struct release_job {
  std::chrono::steady_clock::time_point deadline;
  std::vector<caf::response_promise> waiting;
};
/// How long a hand-off waits for open calls of the shard to end.
constexpr auto release_limit = std::chrono::seconds(30);

void check_release(self_ptr self, int32_t shard,
                   std::shared_ptr<std::map<int32_t, release_job>> jobs) {
  auto& st = self->state;
  auto finish = [=] {
    save_windows_then(self, shard, [=] {
      auto& now = self->state;
      stop_shard(self, shard);
      now.cluster.serving.erase(shard);
      now.cluster.releasing.erase(shard);
      auto node = jobs->extract(shard);
      if (!node.empty())
        for (auto& p : node.mapped().waiting)
          p.deliver(true);
      retry_waiting(self);
    });
  };
  std::vector<caf::actor> users;
  for (auto& [id, handle] : st.users)
    if (shard_of(self, id) == shard)
      users.push_back(handle);
  if (users.empty() || std::chrono::steady_clock::now() >= (*jobs)[shard].deadline) {
    finish();
    return;
  }
  auto open = std::make_shared<int64_t>(0);
  auto pending = std::make_shared<std::size_t>(users.size());
  auto answered = [=] {
    if (--*pending > 0)
      return;
    if (*open == 0)
      finish();
    else
      self->delayed_send(self, std::chrono::milliseconds(50), release_atom_v, shard, true);
  };
  for (auto& user : users)
    self->request(user, std::chrono::seconds(5), open_work_atom_v)
        .then(
            [=](int64_t n) {
              *open += n;
              answered();
            },
            [=](caf::error&) { answered(); });
}

caf::behavior directory_behavior(self_ptr self) {
  self->set_down_handler([=](caf::down_msg& msg) { forget(self, msg.source, msg.reason); });
  // Key and user actors end with the directory (node shutdown).
  self->set_exit_handler([=](caf::exit_msg& msg) {
    for (auto& [hash, entry] : self->state.keys)
      self->send_exit(entry.handle, msg.reason);
    for (auto& [id, handle] : self->state.users)
      self->send_exit(handle, msg.reason);
    if (self->state.handles)
      self->state.handles->clear();
    self->quit(msg.reason);
  });
  auto releases = std::make_shared<std::map<int32_t, release_job>>();
  return {
      [=](authenticate_atom, const std::string& key_hash, const std::string& client_ip) {
        return dispatch_here(self, caf::make_message(authenticate_atom_v, key_hash, client_ip));
      },
      [=](admit_atom, const std::string& key_hash, admission_request& req) {
        return dispatch_here(self, caf::make_message(admit_atom_v, key_hash, std::move(req)));
      },
      [=](resolve_user_atom, const std::string& user_id) {
        return dispatch_here(self, caf::make_message(resolve_user_atom_v, user_id));
      },
      [=](credit_atom, const std::string& user_id, credit_order& order) {
        return dispatch_here(self, caf::make_message(credit_atom_v, user_id, std::move(order)));
      },
      [=](user_changed_atom, schemas::user_record& user) {
        return dispatch_here(self, caf::make_message(user_changed_atom_v, std::move(user)));
      },
      [=](revoke_atom, const std::string& key_hash, int64_t revoked_at) {
        return dispatch_here(self, caf::make_message(revoke_atom_v, key_hash, revoked_at));
      },
      [=](relay_atom, int hops, caf::message& inner) {
        auto promise = self->make_response_promise();
        dispatch(self, std::move(inner), hops, promise);
        return promise;
      },
      [=](passivate_atom, schemas::key_record& key, std::string& windows) {
        // An idle key's actor ends, leaving its record to start the next one from
        // (hibernated), or only its rate windows for the key's next activation
        // (passivated); kept in the same step, so that no activation in between starts
        // with fresh windows.
        auto& st = self->state;
        auto it = st.keys.find(key.key_hash);
        if (it == st.keys.end() || !is_sender(self, it->second.handle))
          return false;
        // Idle actors end normally: only a crash needs the down message (and its scan of
        // every entry).
        self->demonitor(it->second.handle);
        forget_entry(self, it);
        auto where = windows_key(key.key_hash);
        keep_idle(self, st.sleeping_keys, std::move(key), std::move(windows), where);
        return true;
      },
      [=](passivate_user_atom, schemas::user_record& user, std::string& windows) {
        // The same for a user actor; its record holds the committed balance.
        auto& st = self->state;
        auto it = st.users.find(user.id);
        // A user actor outlives every key actor here that hands out its handle (key actors
        // on other nodes look it up again when it has ended).
        if (it == st.users.end() || !is_sender(self, it->second) ||
            st.keys_per_user.count(user.id) > 0)
          return false;
        self->demonitor(it->second);
        st.users.erase(it);
        user_actors().add(-1);
        auto where = user_windows_key(user.id);
        keep_idle(self, st.sleeping_users, std::move(user), std::move(windows), where);
        return true;
      },
      [=](idle_atom) {
        // Hibernated keys and users whose time is up are passivated: their windows stay
        // for their next activation, which loads them from storage.
        auto& st = self->state;
        auto slice = [](std::size_t records) { return std::max<std::size_t>(4096, records / 32); };
        st.sleeping_keys.sweep(slice(st.sleeping_keys.size()), [&](hibernated_key&& slept) {
          keep_windows(self, windows_key(slept.key.key_hash), slept.windows.to_text());
        });
        st.sleeping_users.sweep(slice(st.sleeping_users.size()), [&](hibernated_user&& slept) {
          keep_windows(self, user_windows_key(slept.user.id), slept.windows.to_text());
        });
        count_records(st);
        self->delayed_send(self, sweep_interval, idle_atom_v);
      },
      [=](stats_atom) {
        auto& st = self->state;
        return std::make_tuple(static_cast<int64_t>(st.users.size()),
                               static_cast<int64_t>(st.keys.size()));
      },
      // -- from this node's cluster agent
      [=](own_atom, int32_t shard, int64_t epoch) {
        auto& c = self->state.cluster;
        c.serving[shard] = epoch;
        c.releasing.erase(shard);
        if (static_cast<std::size_t>(shard) < c.owners.size())
          c.owners[static_cast<std::size_t>(shard)] = c.self_id;
        retry_waiting(self);
      },
      [=](drop_atom, int32_t shard) {
        // The lease is lost (or could not be renewed in time): nothing new starts here, and
        // the keys' windows are still saved, so that a key activated again (here or on the
        // next owner) does not start with fresh windows.
        auto& c = self->state.cluster;
        c.serving.erase(shard);
        c.releasing.erase(shard);
        save_windows_then(self, shard, [=] {
          stop_shard(self, shard);
          retry_waiting(self);
        });
      },
      [=](release_atom, int32_t shard) {
        auto& c = self->state.cluster;
        auto promise = self->make_response_promise();
        if (!c.serving.count(shard)) {
          promise.deliver(true);
          return promise;
        }
        c.releasing.insert(shard);
        auto [job, first] = releases->try_emplace(shard);
        job->second.waiting.push_back(promise);
        if (first) {
          job->second.deadline = std::chrono::steady_clock::now() + release_limit;
          check_release(self, shard, releases);
        }
        return promise;
      },
      [=](release_atom, int32_t shard, bool) { check_release(self, shard, releases); },
      [=](cluster_atom, const std::string& node, const caf::actor& peer) {
        // Hello from a node with a smaller id that connected to this one: its directory,
        // reached over that same connection.
        auto& c = self->state.cluster;
        if (!peer || node == c.self_id)
          return;
        if (auto old = c.remote.find(node); old != c.remote.end() && old->second != peer)
          self->demonitor(old->second);
        self->monitor(peer);
        c.remote[node] = peer;
        c.unreachable.erase(node);
        spdlog::info("cluster: node {} connected to this one", node);
        retry_waiting(self);
      },
      [=](cluster_view& view) {
        auto& c = self->state.cluster;
        c.owners = std::move(view.owners);
        for (auto& [shard, epoch] : c.serving)
          if (static_cast<std::size_t>(shard) < c.owners.size())
            c.owners[static_cast<std::size_t>(shard)] = c.self_id;
        c.addresses = std::move(view.addresses);
        // A connection stays while it is up, even to a node missing from this view (its
        // membership lapsed for a moment, or it is leaving): only its end (the down message)
        // forgets it. Of two nodes the one with the smaller id connects; if the other
        // forgot a connection that is still up, the smaller would never connect again and
        // calls for its shards would wait at the other.
        // A direct connection to every member: actor handles learned through a third node
        // would otherwise route through it, and this node would not see their node die.
        for (auto& [node, address] : c.addresses)
          if (node != c.self_id && !c.remote.count(node))
            connect(self, node);
        retry_waiting(self);
      },
  };
}

void init(self_ptr self, db_pool db, caf::actor ledger, schemas::rate_limits default_limits,
          const config::actors_config& lifetimes, caf::actor redis, key_handles_ptr handles) {
  auto& st = self->state;
  st.handles = std::move(handles);
  st.redis = std::move(redis);
  st.default_limits = default_limits;
  st.db = std::move(db);
  st.ledger = std::move(ledger);
  st.idle = lifetimes.idle;
  st.hibernate = lifetimes.hibernate;
  if (hibernates(st)) {
    st.sleeping_keys.keep_for(st.idle - st.hibernate);
    st.sleeping_users.keep_for(st.idle - st.hibernate);
    self->delayed_send(self, sweep_interval, idle_atom_v);
  }
}

} // namespace

caf::behavior directory_actor(caf::stateful_actor<directory_state>* self, db_pool db,
                              caf::actor ledger, schemas::rate_limits default_limits,
                              config::actors_config lifetimes, caf::actor redis,
                              key_handles_ptr handles) {
  init(self, std::move(db), std::move(ledger), default_limits, lifetimes, std::move(redis),
       std::move(handles));
  return directory_behavior(self);
}

caf::behavior clustered_directory_actor(caf::stateful_actor<directory_state>* self, db_pool db,
                                        caf::actor ledger, schemas::rate_limits default_limits,
                                        config::actors_config lifetimes, std::string node_id,
                                        int32_t shards, caf::actor middleman, caf::actor redis,
                                        key_handles_ptr handles) {
  init(self, std::move(db), std::move(ledger), default_limits, lifetimes, std::move(redis),
       std::move(handles));
  auto& c = self->state.cluster;
  c.enabled = true;
  c.self_id = std::move(node_id);
  c.shards = shards;
  c.owners.assign(static_cast<std::size_t>(shards), std::string());
  c.middleman = std::move(middleman);
  return directory_behavior(self);
}

} // namespace tollgate
