#include "http/gateway.hpp"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <memory>
#include <thread>

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <caf/openssl/all.hpp>
#include <caf/scheduler/coordinator.hpp>
#include <spdlog/spdlog.h>

#include "actors/admin/admin_actor.hpp"
#include "actors/cluster/cluster_agent.hpp"
#include "actors/directory/directory_actor.hpp"
#include "actors/ledger/ledger_writer.hpp"
#include "actors/messages.hpp"
#include "actors/provider/provider_supervisor.hpp"
#include "actors/router/router_actor.hpp"
#include "actors/scheduling/gateway_scheduler.hpp"
#include "actors/storage/db_worker.hpp"
#include "actors/storage/redis_worker.hpp"
#include "http/json_log.hpp"
#include "http/server.hpp"
#include "http/worker_io.hpp"
#include "storage/admin_key.hpp"
#include "storage/cluster_repository.hpp"
#include "storage/database.hpp"

namespace tollgate::http {

namespace {

/// The actor system's settings: our message types, and a scheduler sized to the machine.
class system_config : public caf::actor_system_config {
public:
  system_config(const config::actors_config& actors, const config::cluster_config& cluster) {
    add_message_types<caf::id_block::tollgate>();
    set("logger.verbosity", caf::atom("quiet"));
    // A call is a chain of short actor hops: each runs on the worker that sent it (see
    // local_first_policy), and the actor that ends it wakes no clock thread (quiet_clock).
    load<gateway_scheduler>();
    // CAF starts at least 4 workers; more workers than cores only add thread switches.
    auto workers = actors.workers != 0 ? actors.workers : std::thread::hardware_concurrency();
    set("scheduler.max-threads", static_cast<std::size_t>(std::max(workers, 1u)));
    if (!cluster.enabled())
      return;
    load<caf::io::middleman>();
    // CAF sends no heartbeats unless asked: without them a silent peer is never noticed.
    set("middleman.heartbeat-interval", caf::timespan(std::chrono::milliseconds(500)));
    set("middleman.connection-timeout", caf::timespan(cluster.lease / 2));
    // No automatic connections: they open another listening port on every interface.
    // Directories connect to each other directly on the cluster addresses.
    set("middleman.enable-automatic-connections", false);
    if (!cluster.tls_certificate.empty()) {
      load<caf::openssl::manager>();
      set("openssl.certificate", cluster.tls_certificate);
      set("openssl.key", cluster.tls_key);
      set("openssl.cafile", cluster.tls_ca);
    }
  }
};

/// The actor that connects to other nodes: the TLS one when certificates are configured.
caf::actor middleman_of(caf::actor_system& sys, const config::cluster_config& cluster) {
  if (!cluster.tls_certificate.empty())
    return caf::actor_cast<caf::actor>(sys.openssl_manager().actor_handle());
  return caf::actor_cast<caf::actor>(sys.middleman().actor_handle());
}

/// Whether a TCP connection to `where` can be made within a second.
bool tcp_reachable(const config::listen_address& where) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(where.host.c_str(), std::to_string(where.port).c_str(), &hints, &found) != 0)
    return false;
  bool ok = false;
  for (auto* a = found; a && !ok; a = a->ai_next) {
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK, a->ai_protocol);
    if (fd < 0)
      continue;
    if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
      ok = true;
    } else if (errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      int err = 0;
      socklen_t len = sizeof(err);
      ok = poll(&p, 1, 1000) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 &&
           err == 0;
    }
    close(fd);
  }
  freeaddrinfo(found);
  return ok;
}

/// Publishes this node's directory on the cluster address; false (logged) on failure.
bool publish_directory(caf::actor_system& sys, const config::cluster_config& cluster,
                       const caf::actor& directory) {
  const auto& where = *cluster.listen;
  auto port = cluster.tls_certificate.empty()
                  ? sys.middleman().publish(directory, where.port, where.host.c_str(), true)
                  : caf::openssl::publish(directory, where.port, where.host.c_str(), true);
  if (!port) {
    std::fprintf(stderr, "tollgate: cannot listen for cluster nodes on %s: %s\n",
                 config::to_string(where).c_str(), sys.render(port.error()).c_str());
    return false;
  }
  return true;
}

/// Blocks SIGINT and SIGTERM in every thread started from now on, so that the main thread
/// can wait for them.
sigset_t block_stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return set;
}

/// Refuses new calls and waits (up to `limit`) for the calls in flight to finish: each one
/// ends only once its charge is durable.
void drain(route_context& ctx, std::chrono::seconds limit) {
  ctx.draining->store(true);
  auto deadline = std::chrono::steady_clock::now() + limit;
  auto left = ctx.active_calls->load();
  spdlog::info("draining: {} calls in flight", left);
  while (left > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    left = ctx.active_calls->load();
  }
  if (left > 0)
    spdlog::warn("drain timed out with {} calls in flight", left);
  else
    spdlog::info("drained; shutting down");
}

} // namespace

int run_gateway(const config::gateway_config& cfg, std::function<config::gateway_config()> reread) {
  spdlog::set_level(spdlog::level::from_str(cfg.log_level));
  use_json_logs();
  auto signals = block_stop_signals();

  const auto& cluster = cfg.cluster;
  auto node_id = cluster.node_id.empty() && cluster.enabled() ? config::to_string(*cluster.listen)
                                                              : cluster.node_id;
  auto db = std::make_shared<const storage::database>(
      config::parse_database_url(cfg.database),
      cluster.enabled() ? storage::cluster_repository::session_name(node_id) : std::string());
  if (cluster.enabled() && db->is_sqlite()) {
    std::fprintf(stderr,
                 "tollgate: a cluster needs PostgreSQL, but the database is SQLite (%s). Nodes "
                 "share their ledger and shard leases through one PostgreSQL: start every node "
                 "with --database postgresql://..., or drop --cluster-listen to run a single "
                 "node on SQLite.\n",
                 cfg.database.c_str());
    return 1;
  }
  std::string admin_hash;
  try {
    auto sql = db->open();
    auto applied = storage::apply_migrations(*sql, db->backend_name());
    for (int version : applied)
      spdlog::info("applied migration {}", version);
    auto admin = storage::ensure_admin_key(*sql, cfg.data_dir, cfg.admin_key);
    admin_hash = admin.key_hash;
    std::printf("%s\n", admin.notice.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tollgate: cannot open the database %s: %s\n", cfg.database.c_str(),
                 e.what());
    return 1;
  }

  system_config sys_cfg(cfg.actors, cluster);
  caf::actor_system sys{sys_cfg};
  // The actor workers serve the upstream's sockets and, by default, the front end's.
  workers_io_context on_workers(sys);
  std::size_t readers = db->is_sqlite() ? 2 : 4;
  db_pool pool(sys, db, readers);
  auto ledger = sys.spawn<caf::detached>(ledger_writer, db);
  schemas::rate_limits default_limits{cfg.limits.rpm.value_or(0), cfg.limits.tpm.value_or(0),
                                      cfg.limits.rpd.value_or(0)};
  // Redis keeps rate windows of keys between activations and across nodes.
  caf::actor redis;
  if (cfg.redis)
    redis = sys.spawn<caf::detached>(redis_worker, config::parse_redis_url(*cfg.redis));
  // Calls reach the key actors of this node without a hop through the directory.
  auto keys = std::make_shared<key_handles>();
  auto directory =
      cluster.enabled()
          ? sys.spawn(clustered_directory_actor, pool, ledger, default_limits, cfg.actors, node_id,
                      static_cast<int32_t>(cluster.shards), middleman_of(sys, cluster), redis, keys)
          : sys.spawn(directory_actor, pool, ledger, default_limits, cfg.actors, redis, keys);
  auto loop = std::make_shared<upstream_loop>(on_workers.io);
  auto model_router = sys.spawn(router_actor, model_catalog(cfg), cfg.routing);
  auto providers = sys.spawn(provider_supervisor, cfg.providers, loop, model_router);
  auto admin = sys.spawn(admin_actor, pool, directory, model_router, providers, std::move(reread),
                         node_id, static_cast<int32_t>(cluster.shards));

  auto ctx = std::make_shared<route_context>();
  ctx->system = &sys;
  ctx->directory = directory;
  ctx->keys = keys;
  ctx->admin = admin;
  ctx->router = model_router;
  ctx->routing = cfg.routing;
  ctx->admin_key_hash = admin_hash;
  ctx->max_body_bytes = cfg.http.max_body_bytes;

  // Every long-lived actor ends with the gateway (the actor system waits for them).
  auto stop_actors = [&] {
    for (auto& a : {admin, directory, ledger, model_router, providers, redis})
      if (a)
        caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
    for (auto& w : pool.workers())
      caf::anon_send_exit(w, caf::exit_reason::user_shutdown);
  };

  server front(cfg, ctx, on_workers.io);
  try {
    front.start();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tollgate: cannot listen on %s: %s\n",
                 config::to_string(cfg.listen).c_str(), e.what());
    stop_actors();
    return 1;
  }
  caf::actor agent;
  if (cluster.enabled()) {
    if (!publish_directory(sys, cluster, directory)) {
      front.stop();
      stop_actors();
      return 1;
    }
    // Members are learned from the database; seeds are checked so that a wrong address
    // shows at start. (A CAF connection here could duplicate one a peer opens.)
    for (const auto& seed : cluster.seeds)
      if (!tcp_reachable(seed))
        spdlog::warn("cluster: seed {} is not reachable; members are also found in the database",
                     config::to_string(seed));
    storage::node_row me{
        node_id, config::to_string(*cluster.listen), config::to_string(cfg.listen), "active", 0, 0};
    agent = sys.spawn(cluster_agent, me, static_cast<int32_t>(cluster.shards), cluster.lease,
                      sys.spawn<caf::detached>(db_worker, db, "tg-cluster-db"), directory);
    std::printf("tollgate cluster node %s: peers reach it on %s\n", node_id.c_str(),
                config::to_string(*cluster.listen).c_str());
  }
  std::printf("tollgate %s listening on http://%s (database %s)\n",
              std::string(config::version()).c_str(), config::to_string(cfg.listen).c_str(),
              db->is_sqlite() ? db->url().sqlite_path.c_str() : "postgresql");
  std::fflush(stdout);

  // SIGHUP reloads models and prices; SIGTERM and SIGINT drain, then exit.
  int sig = 0;
  for (;;) {
    sigwait(&signals, &sig);
    if (sig != SIGHUP)
      break;
    spdlog::info("SIGHUP: reloading the configuration");
    caf::anon_send(admin, reload_atom_v, admin_meta{"signal", ""});
  }
  if (agent) {
    // Hand every shard over first: calls keep coming and are relayed to the new owners.
    spdlog::info("cluster: draining node {}", node_id);
    caf::scoped_actor waiter{sys};
    waiter->request(agent, cfg.http.request_timeout, leave_atom_v)
        .receive([](bool) {},
                 [&](caf::error& err) {
                   spdlog::warn("cluster: hand-over incomplete: {}", sys.render(err));
                 });
  }
  drain(*ctx, cfg.http.request_timeout);
  front.stop();
  if (agent) {
    caf::anon_send_exit(agent, caf::exit_reason::user_shutdown);
    try {
      auto sql = db->open();
      storage::cluster_repository(*sql).set_state(node_id, "left");
    } catch (const std::exception& e) {
      spdlog::warn("cluster: could not record leaving: {}", e.what());
    }
  }
  stop_actors();
  return 0;
}

} // namespace tollgate::http
