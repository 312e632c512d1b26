#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <boost/test/unit_test.hpp>

#include "actors/cluster/shard_map.hpp"
#include "config/config.hpp"
#include "schemas/key_format.hpp"
#include "storage/database.hpp"
#include "tests/integration/harness.hpp"
#include "tests/support/mock_upstream_process.hpp"
#include "tests/support/ports.hpp"
#include "tests/support/temp_dir.hpp"
#include "tests/support/test_certificates.hpp"

// A cluster of real tollgate processes on loopback sharing one PostgreSQL: calls spread over
// every node, nodes join, drain, crash and stall, and each test ends by checking the
// invariants in the database itself.

using namespace tollgate::test;
using namespace tollgate::test::integration;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

constexpr int32_t shards = 256;
/// Short leases keep crash tests quick: renewals every 750 ms, takeover after 3 s.
constexpr int lease_seconds = 3;

/// 22 one-letter words: 22 prompt tokens, counted alike by the mock and the gateway.
const std::string exact_prompt = "a b c d e f g h i j k l m n o p q r s t u v";
constexpr int64_t max_tokens = 10;
/// gpt-mock costs 1 micro-credit per prompt token and 2 per completion token.
constexpr int64_t cost = 22 + 2 * max_tokens;

/// N tollgate nodes on one fresh PostgreSQL database, in front of one mock upstream.
class test_cluster {
public:
  /// `cluster_extra` adds to the nodes' "cluster" settings, `config_extra` to their config.
  test_cluster(int nodes, const std::string& mock_url, const json& cluster_extra = json::object(),
               const json& config_extra = json::object())
      : pg_(require_pg_url()) {
    config_ = mock_gateway_config(mock_url);
    config_["cluster"] = {{"lease_seconds", lease_seconds}, {"shards", shards}};
    config_["cluster"].update(cluster_extra);
    config_.update(config_extra);
    admin_key_ = "tg-admin-" + std::string(48, 'c');
    for (int i = 0; i < nodes; ++i)
      add_node(false);
    BOOST_TEST_REQUIRE(wait_settled(), "the cluster did not settle: " << state().dump());
  }

  /// Starts one more node; with `settle`, waits until every live node holds shards.
  gateway_process& add_node(bool settle = true) {
    gateway_options options;
    options.config_json = config_.dump();
    options.database_url = pg_.url();
    options.env["TOLLGATE_ADMIN_KEY"] = admin_key_;
    auto id = "node-" + std::to_string(nodes_.size() + 1);
    cluster_addresses_.push_back("127.0.0.1:" + std::to_string(free_loopback_port()));
    options.args = {
        "--cluster-listen", cluster_addresses_.back(), "--node-id", id, "--log-level", "info",
        "--redis",          require_redis_url()};
    nodes_.push_back(std::make_unique<gateway_process>(options));
    nodes_.back()->start();
    ids_.push_back(id);
    if (settle)
      BOOST_TEST_REQUIRE(wait_settled(),
                         "no settling after " << id << " joined: " << state().dump());
    return *nodes_.back();
  }

  std::size_t size() const { return nodes_.size(); }
  gateway_process& node(std::size_t i) { return *nodes_.at(i); }
  const std::string& id(std::size_t i) const { return ids_.at(i); }
  const std::string& cluster_address(std::size_t i) const { return cluster_addresses_.at(i); }

  http_client admin(std::size_t i, std::chrono::milliseconds timeout = 30000ms) {
    http_client c(node(i).base_url());
    c.timeouts(std::min(timeout, 5000ms), timeout);
    c.bearer(admin_key_);
    return c;
  }

  /// GET /admin/cluster from the first node that answers.
  json state() {
    for (std::size_t i = 0; i < nodes_.size(); ++i) {
      if (!node(i).running())
        continue;
      try {
        auto r = admin(i, 3000ms).get("/admin/cluster"); // a stalled node does not answer
        if (r.status == 200)
          return r.json();
      } catch (const std::exception&) {
      }
    }
    return json::object();
  }

  /// Shards held per live node id.
  std::map<std::string, int64_t> holdings() {
    std::map<std::string, int64_t> out;
    auto s = state();
    if (!s.contains("members"))
      return out;
    for (const auto& m : s["members"])
      if (m["alive"].get<bool>())
        out[m["node_id"].get<std::string>()] = m["shards"].get<int64_t>();
    return out;
  }

  /// Every shard held by the node that rendezvous hashing gives it among the active nodes
  /// that are running: the hand-offs of the last join or drain are over.
  bool wait_settled(std::chrono::milliseconds timeout = 30s) {
    std::vector<std::string> expected;
    for (std::size_t i = 0; i < nodes_.size(); ++i)
      if (node(i).running() && !draining_.count(ids_[i]))
        expected.push_back(ids_[i]);
    return wait_until(timeout, [&] {
      auto s = state();
      if (!s.contains("leases") || s["free_shards"].get<int64_t>() != 0)
        return false;
      int32_t settled = 0;
      for (const auto& lease : s["leases"]) {
        auto shard = lease["shard"].get<int32_t>();
        settled += lease["node_id"].is_string() && lease["node_id"].get<std::string>() ==
                                                       tollgate::cluster::owner_of(shard, expected);
      }
      return settled == shards;
    });
  }

  void mark_draining(const std::string& id) { draining_.insert(id); }

  /// The node that holds the shard of `id` (a user id, or a key's hash) now.
  std::size_t owner_of_user(const std::string& id) {
    auto shard = tollgate::cluster::shard_of(id, shards);
    auto s = state();
    for (const auto& lease : s["leases"])
      if (lease["shard"] == shard && lease["node_id"].is_string())
        for (std::size_t i = 0; i < ids_.size(); ++i)
          if (ids_[i] == lease["node_id"].get<std::string>())
            return i;
    BOOST_FAIL("no owner for shard " << shard);
    return 0;
  }

  int64_t epoch_of_user(const std::string& user_id) {
    auto shard = tollgate::cluster::shard_of(user_id, shards);
    auto s = state(); // the loop must not run over a temporary's member
    for (const auto& lease : s["leases"])
      if (lease["shard"] == shard)
        return lease["epoch"].get<int64_t>();
    return -1;
  }

  std::unique_ptr<soci::session> open_db() const {
    tollgate::storage::database db(tollgate::config::parse_database_url(pg_.url()));
    return db.open();
  }

private:
  scoped_pg_database pg_; // outlives the nodes: dropped once they have stopped
  json config_;
  std::string admin_key_;
  std::vector<std::string> ids_;
  std::vector<std::string> cluster_addresses_;
  std::set<std::string> draining_;
  std::vector<std::unique_ptr<gateway_process>> nodes_;
};

/// One call of exactly `cost` through `client`.
http_response exact_call(http_client& client, bool stream = false) {
  return client.post("/v1/chat/completions",
                     dump(chat_body("gpt-mock", exact_prompt, max_tokens, stream)));
}

/// Spends 6 of a key's `per_day` calls through node `via`, drains node `drained`, then
/// expects the day's window to have held through the moves: of 8 more calls, only what was
/// left of the day is admitted. The key's owner, `user_id`, was given its credits in one
/// entry: the ledger then holds that entry and one charge per admitted call.
void expect_day_window_survives_drain(test_cluster& cluster, std::size_t via,
                                      const std::string& key, const std::string& user_id,
                                      std::size_t drained, int per_day,
                                      const std::function<void()>& before_drain = {}) {
  http_client client(cluster.node(via).base_url());
  client.bearer(key);
  for (int i = 0; i < 6; ++i)
    BOOST_TEST(exact_call(client).status == 200);
  if (before_drain)
    before_drain();
  auto answer = cluster.admin(via).post("/admin/cluster/drain/" + cluster.id(drained), "{}");
  BOOST_TEST_REQUIRE(answer.status == 202, answer.body);
  cluster.mark_draining(cluster.id(drained));
  BOOST_TEST_REQUIRE(cluster.wait_settled(), cluster.state().dump());
  int admitted = 0;
  int limited = 0;
  for (int i = 0; i < 8; ++i) {
    auto status = exact_call(client).status;
    admitted += status == 200;
    limited += status == 429;
  }
  BOOST_TEST(admitted == per_day - 6);
  BOOST_TEST(limited == 8 - (per_day - 6));
  auto sql = cluster.open_db();
  check_ledger_invariants(*sql, user_id);
  BOOST_TEST(ledger_of(*sql, user_id).size() == static_cast<std::size_t>(per_day) + 1);
}

/// What one call got back.
struct outcome {
  std::size_t node = 0;
  long status = 0;
  std::string request_id;
  std::string failure; ///< Transport error.
  std::string body;
  std::chrono::milliseconds took{0};
};

/// Calls from several threads, each spreading its calls over the nodes in `targets()`,
/// until stopped.
class traffic {
public:
  traffic(test_cluster& cluster, std::string key, int threads, bool stream_some = true)
      : cluster_(cluster)
      , key_(std::move(key)) {
    for (std::size_t i = 0; i < cluster.size(); ++i)
      targets_.push_back(i);
    for (int t = 0; t < threads; ++t)
      workers_.emplace_back([this, t, stream_some] { run(t, stream_some); });
  }
  ~traffic() { stop(); }

  /// Sends no more calls to `node` (its calls in flight finish).
  void avoid(std::size_t node) {
    std::lock_guard lock(mutex_);
    std::erase(targets_, node);
  }

  std::vector<outcome> stop() {
    running_ = false;
    for (auto& w : workers_)
      if (w.joinable())
        w.join();
    std::lock_guard lock(mutex_);
    return outcomes_;
  }

  std::size_t count() {
    std::lock_guard lock(mutex_);
    return outcomes_.size();
  }

private:
  void run(int t, bool stream_some) {
    std::map<std::size_t, std::unique_ptr<http_client>> clients;
    for (int i = 0; running_; ++i) {
      std::size_t node = 0;
      {
        std::lock_guard lock(mutex_);
        if (targets_.empty())
          return;
        node = targets_[static_cast<std::size_t>(t + i) % targets_.size()];
      }
      auto& client = clients[node];
      if (!client) {
        client = std::make_unique<http_client>(cluster_.node(node).base_url());
        client->timeouts(5000ms, 60000ms);
        client->bearer(key_);
      }
      bool stream = stream_some && i % 3 == 0;
      outcome out;
      out.node = node;
      auto started = std::chrono::steady_clock::now();
      try {
        auto r = client->post("/v1/chat/completions",
                              dump(chat_body("gpt-mock", exact_prompt, max_tokens, stream)));
        out.status = r.status;
        out.request_id = r.header("x-request-id");
        bool complete = !stream || (r.status == 200 && !sse_data(r.body).empty() &&
                                    sse_data(r.body).back() == "[DONE]");
        if (!complete)
          out.status = -1;
        if (r.status != 200 || !complete)
          out.body = r.body.substr(0, 400);
      } catch (const std::exception& e) {
        out.failure = e.what();
        clients.erase(node);
      }
      out.took = std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::steady_clock::now() - started);
      std::lock_guard lock(mutex_);
      outcomes_.push_back(std::move(out));
    }
  }

  test_cluster& cluster_;
  std::string key_;
  std::mutex mutex_;
  std::vector<std::size_t> targets_;
  std::vector<outcome> outcomes_;
  std::atomic<bool> running_{true};
  std::vector<std::thread> workers_;
};

/// Every call succeeded (200 and, for streams, [DONE]).
void expect_all_succeeded(const std::vector<outcome>& outcomes, const std::string& what) {
  BOOST_TEST(!outcomes.empty());
  int failed = 0;
  for (const auto& o : outcomes) {
    if (o.status == 200 && o.failure.empty())
      continue;
    if (++failed <= 5)
      BOOST_ERROR(what << ": call through node " << o.node << " got " << o.status << " "
                       << o.failure << o.body);
  }
  BOOST_TEST(failed == 0, what << ": " << failed << " of " << outcomes.size() << " calls failed");
}

/// I1-I4 from the database: the ledger adds up; every completed call (a 200) has exactly
/// one charge at its cost and one usage record; nothing else was charged. `unknown` are calls
/// whose outcome the client never saw (a node died under them): charged once or not at all.
void expect_charged_exactly(test_cluster& cluster, const metered_user& user, int64_t opening,
                            const std::vector<outcome>& outcomes,
                            const std::set<std::string>& unknown = {}) {
  auto sql = cluster.open_db();
  auto balance = check_ledger_invariants(*sql, user.id);
  BOOST_TEST(balance >= 0);
  std::set<std::string> completed;
  for (const auto& o : outcomes)
    if (o.status == 200 && o.failure.empty()) {
      auto [_, fresh] = completed.insert(o.request_id);
      BOOST_TEST(fresh, "request id answered twice: " << o.request_id);
    }
  auto entries = ledger_of(*sql, user.id);
  std::set<std::string> charged;
  int64_t charges = 0;
  for (const auto& e : entries) {
    if (e.kind != "charge")
      continue;
    auto [_, fresh] = charged.insert(e.request_id);
    BOOST_TEST(fresh, "charged twice: " << e.request_id);
    BOOST_TEST(e.amount == -cost, e.request_id);
    charges += -e.amount;
  }
  for (const auto& id : completed)
    BOOST_TEST(charged.count(id) == 1u, "a completed call was not charged: " << id);
  for (const auto& id : charged)
    BOOST_TEST((completed.count(id) == 1u || unknown.count(id) == 1u),
               "charged for a call that did not complete: " << id);
  BOOST_TEST(balance == opening - charges);
  auto usage = usage_of(*sql, user.id);
  std::set<std::string> used;
  for (const auto& row : usage)
    if (row.cost > 0)
      used.insert(row.request_id);
  BOOST_TEST((used == charged));
}

/// A node started with `options` and --cluster-listen exits at once, saying `why`.
void expect_refused_node(gateway_options options, const std::string& why) {
  options.args = {"--cluster-listen", "127.0.0.1:" + std::to_string(free_loopback_port())};
  options.start_timeout = 10s;
  gateway_process node(options);
  BOOST_CHECK_THROW(node.start(), std::exception);
  BOOST_TEST(node.log().find(why) != std::string::npos, node.log());
}

} // namespace

BOOST_AUTO_TEST_SUITE(cluster_live)

BOOST_AUTO_TEST_CASE(sqlite_is_refused) {
  expect_refused_node({}, "a cluster needs PostgreSQL");
}

BOOST_AUTO_TEST_CASE(nodes_talk_over_tls) {
  // A CA and one node certificate for both nodes.
  temp_dir certs;
  auto made = make_test_certificates(certs.path());
  mock_upstream mock;
  json tls{{"tls_certificate", made.certificate.string()},
           {"tls_key", made.key.string()},
           {"tls_ca", made.ca.string()}};
  test_cluster cluster(2, mock.base_url(), tls);
  auto admin = cluster.admin(0);
  const int64_t opening = 1'000'000;
  auto hal = make_metered_user(admin, "hal@example.com", opening);
  // Through both nodes: one of them relays to the other over TLS.
  std::vector<outcome> outcomes;
  for (std::size_t i = 0; i < 10; ++i) {
    http_client client(cluster.node(i % 2).base_url());
    client.bearer(hal.key);
    auto r = exact_call(client, i % 3 == 0);
    outcome o;
    o.node = i % 2;
    o.status = r.status;
    o.request_id = r.header("x-request-id");
    o.body = r.body.substr(0, 300);
    outcomes.push_back(o);
  }
  expect_all_succeeded(outcomes, "calls over a TLS cluster");
  expect_charged_exactly(cluster, hal, opening, outcomes);
  // The cluster port speaks TLS with the configured CA.
  auto probe = "openssl s_client -brief -connect " + cluster.cluster_address(1) + " -CAfile '" +
               made.ca.string() + "' -cert '" + made.certificate.string() + "' -key '" +
               made.key.string() + "' </dev/null 2>&1 | grep -q 'Verification: OK'";
  BOOST_TEST(std::system(probe.c_str()) == 0, probe);
}

BOOST_AUTO_TEST_CASE(concurrent_spend_never_exceeds_the_balance) {
  mock_upstream mock;
  mock.settings({{"latency_ms", 20}, {"ttft_ms", 20}});
  test_cluster cluster(3, mock.base_url());
  auto admin = cluster.admin(0);
  constexpr int covered = 40;
  const int64_t opening = covered * cost + cost / 2;
  auto ada = make_metered_user(admin, "ada@example.com", opening);

  // 10x the balance, from 12 threads spread over all three nodes.
  std::vector<outcome> outcomes(400);
  std::vector<std::thread> threads;
  for (int t = 0; t < 12; ++t)
    threads.emplace_back([&, t] {
      std::vector<std::unique_ptr<http_client>> clients;
      for (std::size_t n = 0; n < cluster.size(); ++n)
        clients.push_back(std::make_unique<http_client>(cluster.node(n).base_url()));
      for (std::size_t i = static_cast<std::size_t>(t); i < outcomes.size(); i += 12) {
        auto n = i % cluster.size();
        auto& out = outcomes[i];
        out.node = n;
        try {
          auto r = clients[n]->post("/v1/chat/completions",
                                    dump(chat_body("gpt-mock", exact_prompt, max_tokens)),
                                    {{"Authorization", "Bearer " + ada.key}});
          out.status = r.status;
          out.request_id = r.header("x-request-id");
          out.body = r.body.substr(0, 300);
        } catch (const std::exception& e) {
          out.failure = e.what();
        }
      }
    });
  for (auto& t : threads)
    t.join();
  int ok = 0;
  for (const auto& o : outcomes) {
    BOOST_TEST_REQUIRE(o.failure.empty(), o.failure);
    if (o.status == 200)
      ++ok;
    else
      BOOST_TEST(o.status == 402, o.status << " " << o.body);
  }
  BOOST_TEST(ok == covered); // each call holds exactly its cost
  expect_charged_exactly(cluster, ada, opening, outcomes);
}

BOOST_AUTO_TEST_CASE(rate_limits_are_cluster_exact) {
  mock_upstream mock;
  test_cluster cluster(3, mock.base_url());
  auto admin = cluster.admin(0);
  constexpr int rpm = 15;
  auto bob = make_metered_user(admin, "bob@example.com", 1'000'000, {{"rpm", rpm}});
  std::vector<long> statuses(60);
  std::vector<std::thread> threads;
  for (std::size_t n = 0; n < cluster.size(); ++n)
    threads.emplace_back([&, n] {
      http_client client(cluster.node(n).base_url());
      client.bearer(bob.key);
      for (std::size_t i = n; i < statuses.size(); i += cluster.size())
        statuses[i] = exact_call(client).status;
    });
  for (auto& t : threads)
    t.join();
  int admitted = 0;
  int limited = 0;
  for (auto s : statuses) {
    admitted += s == 200;
    limited += s == 429;
  }
  BOOST_TEST(admitted == rpm);
  BOOST_TEST(limited == static_cast<int>(statuses.size()) - rpm);
  auto sql = cluster.open_db();
  check_ledger_invariants(*sql, bob.id);
  BOOST_TEST(ledger_of(*sql, bob.id).size() == static_cast<std::size_t>(rpm) + 1);
}

BOOST_AUTO_TEST_CASE(rate_windows_follow_a_moving_key) {
  mock_upstream mock;
  test_cluster cluster(2, mock.base_url());
  auto admin = cluster.admin(0);
  constexpr int per_day = 10;
  auto gus = make_metered_user(admin, "gus@example.com", 1'000'000, {{"rpd", per_day}});
  auto owner = cluster.owner_of_user(tollgate::schemas::sha256_hex(gus.key));
  auto other = 1 - owner;
  // The key's owner hands its shards over: the key's windows go along through Redis.
  expect_day_window_survives_drain(cluster, other, gus.key, gus.id, owner, per_day);
  BOOST_TEST(cluster.owner_of_user(tollgate::schemas::sha256_hex(gus.key)) == other);
}

// A key that hibernated (its actor ended, its record kept by its node) moves with its shard
// like a live one: its windows go along through Redis, and the next owner loads it from
// PostgreSQL.
BOOST_AUTO_TEST_CASE(rate_windows_follow_a_moving_hibernated_key) {
  mock_upstream mock;
  test_cluster cluster(2, mock.base_url(), json::object(),
                       {{"actors", {{"hibernate_seconds", 1}}}});
  auto admin = cluster.admin(0);
  constexpr int per_day = 10;
  auto gus = make_metered_user(admin, "gus@example.com", 1'000'000, {{"rpd", per_day}});
  auto owner = cluster.owner_of_user(tollgate::schemas::sha256_hex(gus.key));
  auto other = 1 - owner;
  expect_day_window_survives_drain(cluster, other, gus.key, gus.id, owner, per_day, [&] {
    http_client scraper(cluster.node(owner).base_url());
    BOOST_TEST_REQUIRE(wait_until(20s, [&] {
      auto m = parse_prometheus(scraper.get("/metrics").body);
      return m.sum("tollgate_actors", {{"kind", "key"}}) == 0 &&
             m.sum("tollgate_hibernated", {{"kind", "key"}}) == 1;
    }));
  });
  BOOST_TEST(cluster.owner_of_user(tollgate::schemas::sha256_hex(gus.key)) == other);
}

BOOST_AUTO_TEST_CASE(rate_windows_survive_a_move_of_the_keys_user) {
  mock_upstream mock;
  test_cluster cluster(3, mock.base_url());
  auto admin = cluster.admin(0);
  constexpr int per_day = 10;
  auto hal = make_metered_user(admin, "hal@example.com", 1'000'000);
  // A key whose shard lives on another node than its user's.
  auto user_owner = cluster.owner_of_user(hal.id);
  std::string key;
  std::size_t key_owner = user_owner;
  for (int tries = 0; tries < 20 && key_owner == user_owner; ++tries) {
    key = create_key(admin, hal.id, {{"rpd", per_day}})["key"].get<std::string>();
    key_owner = cluster.owner_of_user(tollgate::schemas::sha256_hex(key));
  }
  BOOST_TEST_REQUIRE(key_owner != user_owner);
  // The user's node hands its shards over; the key's actor stays where it is, and so do its
  // windows.
  expect_day_window_survives_drain(cluster, key_owner, key, hal.id, user_owner, per_day);
  BOOST_TEST(cluster.owner_of_user(hal.id) != user_owner);
  BOOST_TEST(cluster.owner_of_user(tollgate::schemas::sha256_hex(key)) == key_owner);
}

BOOST_AUTO_TEST_CASE(a_users_own_windows_follow_it) {
  mock_upstream mock;
  test_cluster cluster(2, mock.base_url());
  auto admin = cluster.admin(0);
  constexpr int per_day = 10;
  auto ivy = make_metered_user(admin, "ivy@example.com", 1'000'000);
  auto patched = admin.patch("/admin/users/" + ivy.id, dump({{"rpd", per_day}}));
  BOOST_TEST_REQUIRE(patched.status == 200, patched.body);
  auto owner = cluster.owner_of_user(ivy.id);
  // The user's owner hands its shards over: the user's own windows go along through Redis.
  expect_day_window_survives_drain(cluster, 1 - owner, ivy.key, ivy.id, owner, per_day);
  BOOST_TEST(cluster.owner_of_user(ivy.id) == 1 - owner);
}

BOOST_AUTO_TEST_CASE(join_under_load_fails_no_call) {
  mock_upstream mock;
  mock.settings({{"latency_ms", 10}, {"ttft_ms", 10}});
  test_cluster cluster(3, mock.base_url());
  auto admin = cluster.admin(0);
  const int64_t opening = 100'000'000;
  auto cy = make_metered_user(admin, "cy@example.com", opening);
  auto before = cluster.holdings();
  traffic load(cluster, cy.key, 6);
  BOOST_TEST_REQUIRE(wait_until(10s, [&] { return load.count() > 30; }));
  cluster.add_node(); // waits until the fourth node holds its shards
  auto sent = load.count();
  BOOST_TEST_REQUIRE(wait_until(10s, [&] { return load.count() > sent + 30; }));
  auto outcomes = load.stop();
  auto after = cluster.holdings();
  BOOST_TEST(after.size() == 4u);
  BOOST_TEST(after["node-4"] > 0);
  for (auto& [node, n] : before)
    BOOST_TEST(after[node] < n, node << " kept all its shards");
  expect_all_succeeded(outcomes, "join");
  expect_charged_exactly(cluster, cy, opening, outcomes);
}

BOOST_AUTO_TEST_CASE(drain_fails_no_call) {
  mock_upstream mock;
  mock.settings({{"latency_ms", 10}, {"ttft_ms", 10}});
  test_cluster cluster(3, mock.base_url());
  auto admin = cluster.admin(0);
  const int64_t opening = 100'000'000;
  auto dee = make_metered_user(admin, "dee@example.com", opening);
  traffic load(cluster, dee.key, 6);
  BOOST_TEST_REQUIRE(wait_until(10s, [&] { return load.count() > 30; }));
  auto drained = admin.post("/admin/cluster/drain/node-2", "{}");
  BOOST_TEST_REQUIRE(drained.status == 202, drained.body);
  cluster.mark_draining("node-2");
  BOOST_TEST_REQUIRE(cluster.wait_settled(), "node-2 kept shards: " << cluster.state().dump());
  BOOST_TEST(cluster.holdings()["node-2"] == 0);
  // Calls through node-2 are still served (relayed) until it leaves.
  auto sent = load.count();
  BOOST_TEST_REQUIRE(wait_until(10s, [&] { return load.count() > sent + 30; }));
  load.avoid(1);
  BOOST_TEST(cluster.node(1).stop() == 0);
  sent = load.count();
  BOOST_TEST_REQUIRE(wait_until(10s, [&] { return load.count() > sent + 20; }));
  auto outcomes = load.stop();
  expect_all_succeeded(outcomes, "drain");
  expect_charged_exactly(cluster, dee, opening, outcomes);
  auto state = cluster.state();
  bool left = false;
  for (const auto& m : state["members"])
    left = left || (m["node_id"] == "node-2" && m["state"] == "left");
  BOOST_TEST(left, state["members"].dump());
}

BOOST_AUTO_TEST_CASE(a_killed_node_is_replaced_within_its_lease) {
  mock_upstream mock;
  mock.settings({{"latency_ms", 300}, {"ttft_ms", 50}});
  test_cluster cluster(3, mock.base_url());
  auto admin = cluster.admin(0);
  const int64_t opening = 100'000'000;
  auto eve = make_metered_user(admin, "eve@example.com", opening);
  auto victim = cluster.owner_of_user(eve.id);
  auto survivor = (victim + 1) % cluster.size();
  traffic load(cluster, eve.key, 6);
  BOOST_TEST_REQUIRE(wait_until(10s, [&] { return load.count() > 20; }));
  cluster.node(victim).kill(); // mid-call: calls are in flight on it
  load.avoid(victim);
  auto killed_at = std::chrono::steady_clock::now();
  // Calls through the survivors work again once the lease has expired and moved.
  http_client probe(cluster.node(survivor).base_url());
  probe.bearer(eve.key);
  std::string probe_id; // the probe that got through is charged like any call
  BOOST_TEST_REQUIRE(wait_until(lease_seconds * 1000ms + 15s, [&] {
    auto r = exact_call(probe);
    probe_id = r.header("x-request-id");
    return r.status == 200;
  }));
  auto back_after = std::chrono::steady_clock::now() - killed_at;
  BOOST_TEST_MESSAGE("service back after "
                     << std::chrono::duration_cast<std::chrono::milliseconds>(back_after).count()
                     << " ms");
  BOOST_TEST(cluster.owner_of_user(eve.id) != victim);
  auto sent = load.count();
  BOOST_TEST_REQUIRE(wait_until(15s, [&] { return load.count() > sent + 20; }));
  BOOST_TEST_MESSAGE("traffic resumed");
  auto outcomes = load.stop();
  BOOST_TEST_MESSAGE("traffic stopped");
  for (const auto& o : outcomes)
    if (o.took > 5s)
      BOOST_TEST_MESSAGE("slow call via node " << o.node << ": " << o.took.count() << " ms, "
                                               << o.status << " " << o.failure << o.body);
  // Only calls sent to the dead node itself may have failed (cut off): calls through the
  // others waited for the move, even those whose user actor died under them (their charge
  // went to the new owner). What completed was charged once; what was charged completed or
  // was cut off on the dead node.
  std::vector<outcome> through_survivors;
  std::size_t cut = 0;
  for (const auto& o : outcomes) {
    if (o.node != victim)
      through_survivors.push_back(o);
    else if (o.status != 200 || !o.failure.empty())
      ++cut;
  }
  expect_all_succeeded(through_survivors, "calls through the surviving nodes");
  // A cut-off call's request id never reached the client: match charges to completed calls
  // and count the others.
  auto sql = cluster.open_db();
  auto balance = check_ledger_invariants(*sql, eve.id);
  std::set<std::string> completed{probe_id};
  for (const auto& o : outcomes)
    if (o.status == 200)
      completed.insert(o.request_id);
  std::set<std::string> charged;
  for (const auto& e : ledger_of(*sql, eve.id))
    if (e.kind == "charge") {
      BOOST_TEST(charged.insert(e.request_id).second, "charged twice: " << e.request_id);
      BOOST_TEST(e.amount == -cost);
    }
  for (const auto& id : completed)
    BOOST_TEST(charged.count(id) == 1u, "a completed call was not charged: " << id);
  auto cut_off = charged.size() - completed.size();
  BOOST_TEST(cut_off <= cut,
             cut_off << " charges for calls nobody saw complete, " << cut << " calls cut off");
  BOOST_TEST(balance == opening - static_cast<int64_t>(charged.size()) * cost);
}

/// Runs `done` when the scope ends, on a failed requirement too.
struct at_scope_end {
  std::function<void()> done;
  ~at_scope_end() { done(); }
};

BOOST_AUTO_TEST_CASE(a_stalled_node_never_commits_after_losing_its_lease) {
  mock_upstream mock;
  // Streams that take about a second: some are in flight when the node stalls.
  mock.settings({{"latency_ms", 1000}, {"ttft_ms", 20}});
  test_cluster cluster(3, mock.base_url());
  auto admin = cluster.admin(0);
  const int64_t opening = 100'000'000;
  auto fay = make_metered_user(admin, "fay@example.com", opening);
  auto stalled = cluster.owner_of_user(fay.id);
  auto epoch_before = cluster.epoch_of_user(fay.id);
  // Calls straight to the owner: they hold on its user actor, then it stalls under them.
  traffic on_owner(cluster, fay.key, 4);
  for (std::size_t n = 0; n < cluster.size(); ++n)
    if (n != stalled)
      on_owner.avoid(n);
  BOOST_TEST_REQUIRE(wait_until(10s, [&] { return on_owner.count() > 4; }));
  std::this_thread::sleep_for(300ms); // let new calls get under way upstream
  auto pid = cluster.node(stalled).pid();
  BOOST_TEST_REQUIRE(::kill(pid, SIGSTOP) == 0);
  // An admin credit sent to the stalled node waits in its socket and is handled as it wakes
  // up, while it drops the shard: it must get an answer, and change the balance at most once.
  const int64_t top_up = 5'000'000;
  const std::string top_up_key = "stalled-top-up";
  int stalled_credit_status = 0;
  std::string stalled_credit_error;
  std::thread stalled_credit([&] {
    try {
      auto late_admin = cluster.admin(stalled, 60000ms);
      stalled_credit_status = post_credits(late_admin, fay.id, top_up, "top-up", top_up_key).status;
    } catch (const std::exception& e) {
      stalled_credit_error = e.what(); // no answer within a minute
    }
  });
  // Joined on every way out, a failed requirement too: the node is woken first, so the
  // credit gets its answer and the failure is reported with the nodes' logs.
  at_scope_end wake_and_join{[&] {
    ::kill(pid, SIGCONT);
    if (stalled_credit.joinable())
      stalled_credit.join();
  }};
  // Longer than the lease: the others take the shard over with a higher epoch.
  auto survivor = (stalled + 1) % cluster.size();
  http_client probe(cluster.node(survivor).base_url());
  probe.bearer(fay.key);
  auto stalled_at = std::chrono::steady_clock::now();
  std::string last_probe = "none";
  bool served = wait_until(lease_seconds * 1000ms + 15s, [&] {
    auto r = exact_call(probe);
    last_probe = std::to_string(r.status) + " " + r.body.substr(0, 200) + " after " +
                 std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                    std::chrono::steady_clock::now() - stalled_at)
                                    .count()) +
                 " ms";
    return r.status == 200;
  });
  auto epoch_after = cluster.epoch_of_user(fay.id);
  BOOST_TEST_REQUIRE(::kill(pid, SIGCONT) == 0);
  BOOST_TEST_REQUIRE(
      served, "the shard was not taken over while its owner stalled; last probe: " << last_probe);
  BOOST_TEST(epoch_after > epoch_before);
  BOOST_TEST(cluster.owner_of_user(fay.id) != stalled);
  // The woken node finishes the calls it had in flight. Its ledger posts are refused (fenced)
  // or its user actor has ended under them: each call is charged once through the user's new
  // owner and succeeds.
  auto outcomes = on_owner.stop();
  expect_all_succeeded(outcomes, "calls through the stalled node");
  stalled_credit.join();
  BOOST_TEST_MESSAGE("the credit sent to the stalled node got " << stalled_credit_status);
  // Done (201), refused with nothing changed (503), or its relay to the new owner timed out
  // (504, settled by the retry below): never left unanswered (0).
  BOOST_TEST((stalled_credit_status == 201 || stalled_credit_status == 503 ||
              stalled_credit_status == 504),
             "the credit sent to the stalled node got " << stalled_credit_status << " "
                                                        << stalled_credit_error);
  BOOST_TEST_REQUIRE(cluster.wait_settled(), cluster.state().dump());
  // The same credit again, through a survivor: a replay if it was done, else done now.
  auto survivor_admin = cluster.admin(survivor);
  int again_status = 0;
  BOOST_TEST(
      wait_until(20s,
                 [&] {
                   again_status =
                       post_credits(survivor_admin, fay.id, top_up, "top-up", top_up_key).status;
                   return again_status == 201;
                 }),
      "the credit retried through a survivor got " << again_status);
  // And the woken node serves again, through the new owner.
  http_client again(cluster.node(stalled).base_url());
  again.bearer(fay.key);
  auto r = exact_call(again);
  BOOST_TEST(r.status == 200, r.body);
  outcome last;
  last.status = r.status;
  last.request_id = r.header("x-request-id");
  outcomes.push_back(last);
  // Probes through the survivor completed too.
  auto sql = cluster.open_db();
  auto entries = ledger_of(*sql, fay.id);
  std::set<std::string> known;
  for (const auto& o : outcomes)
    known.insert(o.request_id);
  std::vector<outcome> all = outcomes;
  int top_ups = 0;
  for (const auto& e : entries) {
    if (e.kind == "charge" && !known.count(e.request_id)) {
      outcome probe_call; // a probe through the survivor
      probe_call.status = 200;
      probe_call.request_id = e.request_id;
      all.push_back(probe_call);
    }
    if (e.request_id == "credit:" + fay.id + ":" + top_up_key) {
      ++top_ups;
      BOOST_TEST(e.amount == top_up);
    }
  }
  BOOST_TEST(top_ups == 1, "the credit is in the ledger " << top_ups << " times");
  expect_charged_exactly(cluster, fay, opening + top_up, all);
}

/// The membership of node-1 (the smallest id: of each pair of nodes, the smaller connects)
/// lapses for longer than a lease while it keeps running and stays connected: the others'
/// views lose it, its shards move to them, and once it can renew it rejoins and takes its
/// shards back. Calls for its users through the others are then relayed over the
/// connections that stayed up, not left waiting for a connection nobody opens.
BOOST_AUTO_TEST_CASE(a_node_whose_membership_lapsed_is_reached_after_it_rejoins) {
  mock_upstream mock;
  test_cluster cluster(3, mock.base_url());
  BOOST_TEST_REQUIRE(cluster.id(0) == "node-1");
  auto sql = cluster.open_db();
  // Its renewals (and its joining again) fail while the trigger is there.
  *sql << "CREATE FUNCTION hold_node_1() RETURNS trigger AS $$ BEGIN "
          "IF NEW.node_id = 'node-1' AND NEW.expires_at > OLD.expires_at THEN "
          "RAISE EXCEPTION 'node-1 is held out'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql";
  *sql << "CREATE TRIGGER hold_node_1 BEFORE UPDATE ON cluster_nodes FOR EACH ROW "
          "EXECUTE FUNCTION hold_node_1()";
  *sql << "UPDATE cluster_nodes SET expires_at = 0 WHERE node_id = 'node-1'";
  auto others_hold_everything = [&] {
    auto held = cluster.holdings();
    return held["node-2"] + held["node-3"] == shards;
  };
  bool moved = wait_until(lease_seconds * 1000ms + 15s, others_hold_everything);
  *sql << "DROP TRIGGER hold_node_1 ON cluster_nodes";
  BOOST_TEST_REQUIRE(moved, "node-1's shards did not move: " << cluster.state().dump());
  BOOST_TEST_REQUIRE(cluster.wait_settled(), cluster.state().dump());

  // A user whose shard node-1 serves again.
  auto admin = cluster.admin(1);
  std::optional<metered_user> user;
  for (int i = 0; i < 40 && !user; ++i) {
    auto made = make_metered_user(admin, "held" + std::to_string(i) + "@example.com", 1'000'000);
    if (cluster.owner_of_user(made.id) == 0)
      user = made;
  }
  BOOST_TEST_REQUIRE(user.has_value(), "no user of 40 hashed to node-1");
  for (std::size_t via : {std::size_t{1}, std::size_t{2}}) {
    http_client client(cluster.node(via).base_url());
    client.bearer(user->key);
    client.timeouts(5000ms, 15000ms);
    std::string last;
    bool served = wait_until(10s, [&] {
      try {
        auto r = exact_call(client);
        last = std::to_string(r.status) + " " + r.body;
        return r.status == 200;
      } catch (const std::exception& e) {
        last = e.what();
        return false;
      }
    });
    BOOST_TEST(served, "a call through " << cluster.id(via) << " for node-1's user: " << last);
  }
  check_ledger_invariants(*sql, user->id);
}

BOOST_AUTO_TEST_SUITE_END()
