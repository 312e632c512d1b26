#include "actors/cluster/cluster_agent.hpp"

#include <spdlog/spdlog.h>

namespace tollgate {

namespace {

using self_ptr = caf::stateful_actor<cluster_agent_state>*;
using clock_type = std::chrono::steady_clock;

/// Renewals come four times per lease: three may fail before the node must stop serving.
std::chrono::milliseconds renew_interval(const cluster_agent_state& st) {
  return std::max(std::chrono::milliseconds(100), st.lease / 4);
}

/// The node stops serving this long after the last renewal it sent that succeeded: a
/// quarter of a lease before the leases it renewed can expire.
std::chrono::milliseconds serve_window(const cluster_agent_state& st) {
  return st.lease - st.lease / 4;
}

template <class Fn>
auto on_db(self_ptr self, Fn fn) {
  return self->request(self->state.db, caf::infinite,
                       db_job{[fn = std::move(fn)](soci::session& sql, storage::session_cache&) {
                         storage::cluster_repository repo(sql);
                         return fn(repo);
                       }});
}

void publish_view(self_ptr self) {
  auto& st = self->state;
  cluster_view view;
  view.owners.assign(static_cast<std::size_t>(st.shards), std::string());
  for (const auto& lease : st.last.leases)
    if (lease.shard < st.shards && !lease.node_id.empty() && lease.expires_at > st.last.now)
      view.owners[static_cast<std::size_t>(lease.shard)] = lease.node_id;
  for (auto& [shard, epoch] : st.serving)
    view.owners[static_cast<std::size_t>(shard)] = st.self.node_id;
  for (const auto& m : st.last.members)
    view.addresses[m.node_id] = m.cluster_address;
  self->send(st.directory, std::move(view));
}

void answer_if_left(self_ptr self) {
  auto& st = self->state;
  if (!st.leaving)
    return;
  bool others = false;
  for (const auto& m : st.last.members)
    others = others || (m.node_id != st.self.node_id && m.state == "active");
  // The last node has nobody to hand over to: its leases simply expire after it stops.
  if (others && (!st.serving.empty() || !st.moving.empty()))
    return;
  for (auto& p : st.left)
    p.deliver(true);
  st.left.clear();
}

void drop_all(self_ptr self, const char* why) {
  auto& st = self->state;
  if (st.serving.empty())
    return;
  spdlog::warn("cluster: node {} stops serving its {} shards: {}", st.self.node_id,
               st.serving.size(), why);
  for (auto& [shard, epoch] : st.serving)
    self->send(st.directory, drop_atom_v, shard);
  st.serving.clear();
  publish_view(self);
}

void acquire(self_ptr self, int32_t shard) {
  auto& st = self->state;
  st.moving.insert(shard);
  auto node = st.self.node_id;
  auto lease_ms = static_cast<int64_t>(st.lease.count());
  on_db(self,
        [=](storage::cluster_repository& repo) {
          auto epoch = repo.acquire(shard, node, lease_ms);
          return caf::make_message(epoch ? *epoch : int64_t{0});
        })
      .then(
          [=](int64_t epoch) {
            auto& now = self->state;
            now.moving.erase(shard);
            if (epoch <= 0)
              return; // another node was faster
            if (now.leaving) {
              // Acquired while starting to drain: give it straight back.
              on_db(self, [=](storage::cluster_repository& repo) {
                repo.release(shard, node, epoch);
                return caf::make_message(true);
              });
              return;
            }
            now.serving[shard] = epoch;
            self->send(now.directory, own_atom_v, shard, epoch);
            publish_view(self);
          },
          [=](caf::error& err) {
            self->state.moving.erase(shard);
            spdlog::warn("cluster: acquiring shard {} failed: {}", shard, to_string(err));
          });
}

/// Akka-style hand-off: the directory stops admitting for the shard and waits for its open
/// holds to end, then the lease is released for the next owner to acquire.
void release(self_ptr self, int32_t shard) {
  auto& st = self->state;
  auto epoch = st.serving[shard];
  st.moving.insert(shard);
  auto node = st.self.node_id;
  self->request(st.directory, caf::infinite, release_atom_v, shard)
      .then(
          [=](bool) {
            on_db(self,
                  [=](storage::cluster_repository& repo) {
                    return caf::make_message(repo.release(shard, node, epoch));
                  })
                .then(
                    [=](bool) {
                      auto& now = self->state;
                      now.moving.erase(shard);
                      now.serving.erase(shard);
                      publish_view(self);
                      answer_if_left(self);
                    },
                    [=](caf::error& err) {
                      // The lease then simply expires; the shard is no longer served here.
                      auto& now = self->state;
                      now.moving.erase(shard);
                      now.serving.erase(shard);
                      spdlog::warn("cluster: releasing shard {} failed: {}", shard, to_string(err));
                      answer_if_left(self);
                    });
          },
          [=](caf::error& err) {
            self->state.moving.erase(shard);
            spdlog::warn("cluster: draining shard {} failed: {}", shard, to_string(err));
          });
}

void apply(self_ptr self, storage::cluster_snapshot snapshot) {
  auto& st = self->state;
  st.last = std::move(snapshot);
  auto plan = cluster::plan_moves(st.last, st.self.node_id, st.serving);
  for (auto shard : plan.lost) {
    if (st.moving.count(shard))
      continue;
    spdlog::warn("cluster: node {} lost shard {}", st.self.node_id, shard);
    st.serving.erase(shard);
    self->send(st.directory, drop_atom_v, shard);
  }
  auto node = st.self.node_id;
  for (auto shard : plan.stale) {
    // An acquisition whose answer is still on its way also looks held-but-not-served.
    if (st.moving.count(shard))
      continue;
    int64_t epoch = 0;
    for (const auto& lease : st.last.leases)
      if (lease.shard == shard)
        epoch = lease.epoch;
    on_db(self, [=](storage::cluster_repository& repo) {
      return caf::make_message(repo.release(shard, node, epoch));
    });
  }
  if (!st.leaving)
    for (auto shard : plan.acquire)
      if (!st.moving.count(shard) && shard < st.shards)
        acquire(self, shard);
  for (auto shard : plan.release)
    if (!st.moving.count(shard))
      release(self, shard);
  publish_view(self);
  answer_if_left(self);
}

void tick(self_ptr self) {
  auto& st = self->state;
  if (!st.serving.empty() && clock_type::now() - st.renewed_at > serve_window(st))
    drop_all(self, "no lease renewal succeeded in time");
  if (st.renewing)
    return;
  st.renewing = true;
  auto started = clock_type::now();
  auto node = st.self;
  auto lease_ms = static_cast<int64_t>(st.lease.count());
  bool leaving = st.leaving;
  on_db(self,
        [=](storage::cluster_repository& repo) {
          auto snapshot = repo.renew(node.node_id, lease_ms);
          if (snapshot.own_state.empty() && !leaving) {
            // Out of the cluster (lease lapsed, or removed): join again, then look afresh.
            repo.register_node(node, lease_ms);
            snapshot = repo.renew(node.node_id, lease_ms);
            snapshot.own_state.clear(); // nothing renewed in this round counts as renewed
          }
          return caf::make_message(std::move(snapshot));
        })
      .then(
          [=](storage::cluster_snapshot& snapshot) {
            auto& now = self->state;
            now.renewing = false;
            if (snapshot.own_state.empty()) {
              drop_all(self, "its membership had lapsed");
            } else {
              now.renewed_at = started;
              if (snapshot.own_state != "active" && !now.leaving) {
                spdlog::info("cluster: node {} is {}: handing its shards over", now.self.node_id,
                             snapshot.own_state);
                now.leaving = true;
              }
            }
            apply(self, std::move(snapshot));
          },
          [=](caf::error& err) {
            self->state.renewing = false;
            spdlog::warn("cluster: lease renewal failed: {}", to_string(err));
          });
}

} // namespace

caf::behavior cluster_agent(caf::stateful_actor<cluster_agent_state>* self, storage::node_row node,
                            int32_t shards, std::chrono::milliseconds lease, caf::actor db,
                            caf::actor directory) {
  auto& st = self->state;
  st.self = std::move(node);
  st.shards = shards;
  st.lease = lease;
  st.db = std::move(db);
  st.directory = std::move(directory);
  self->link_to(st.db);
  auto me = st.self;
  auto lease_ms = static_cast<int64_t>(lease.count());
  on_db(self,
        [=](storage::cluster_repository& repo) {
          repo.ensure_shards(shards);
          repo.register_node(me, lease_ms);
          return caf::make_message(true);
        })
      .then(
          [=](bool) {
            spdlog::info("cluster: node {} joined ({} at {})", me.node_id, me.http_address,
                         me.cluster_address);
            self->send(self, tick_atom_v);
          },
          [=](caf::error& err) {
            spdlog::error("cluster: could not join: {}", to_string(err));
            self->quit(err);
          });
  return {
      [=](tick_atom) {
        self->delayed_send(self, renew_interval(self->state), tick_atom_v);
        tick(self);
      },
      [=](leave_atom) {
        // Drain: marked draining in the database (other nodes stop choosing this one), then
        // every shard is handed over; the answer comes when none is left.
        auto& now = self->state;
        auto promise = self->make_response_promise();
        now.left.push_back(promise);
        now.leaving = true;
        auto id = now.self.node_id;
        on_db(self, [=](storage::cluster_repository& repo) {
          return caf::make_message(repo.set_state(id, "draining"));
        }).then([=](bool) { tick(self); }, [=](caf::error&) { tick(self); });
        return promise;
      },
  };
}

} // namespace tollgate
