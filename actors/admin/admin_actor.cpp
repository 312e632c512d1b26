#include "actors/admin/admin_actor.hpp"

#include <map>

#include <nlohmann/json.hpp>

#include "schemas/key_format.hpp"
#include "schemas/records_json.hpp"
#include "storage/audit_repository.hpp"
#include "storage/cluster_repository.hpp"
#include "storage/database.hpp"
#include "storage/keys_repository.hpp"
#include "storage/ledger_repository.hpp"
#include "storage/users_repository.hpp"

namespace tollgate {

namespace {

using nlohmann::json;
using self_ptr = caf::stateful_actor<admin_state>*;

caf::message reply(int status, const json& body) {
  return caf::make_message(http_reply{status, body.dump(), false});
}

caf::message reply_error(const schemas::api_error& err) {
  return caf::make_message(http_reply{err.status, err.body(), false});
}

http_reply error_reply(const schemas::api_error& err) {
  return {err.status, err.body(), false};
}

schemas::api_error no_user(const std::string& id) {
  return schemas::not_found("no user with id '" + id + "'");
}

json list_json(json data, bool has_more) {
  return {{"object", "list"}, {"data", std::move(data)}, {"has_more", has_more}};
}

void audit(soci::session& sql, const admin_meta& meta, std::string action, std::string target,
           std::string before, std::string after) {
  storage::audit_repository(sql).append({0, meta.actor, std::move(action), std::move(target),
                                         std::move(before), std::move(after), meta.request_id,
                                         storage::unix_now()});
}

/// Runs `fn` on a db worker and answers its http_reply through a promise; storage failures
/// become 503s in the same shape.
template <class Fn>
caf::response_promise answer_from_db(self_ptr self, Fn fn) {
  auto promise = self->make_response_promise();
  run_db(self, self->state.db, std::move(fn))
      .then([=](http_reply& r) mutable { promise.deliver(std::move(r)); },
            [=](caf::error& err) mutable { promise.deliver(error_reply(api_failure_of(err))); });
  return promise;
}

/// Maps the ledger's answer to an admin credit onto HTTP.
http_reply credit_reply(const storage::ledger_result& result, const schemas::credit_request& req,
                        bool keyed) {
  using storage::apply_status;
  const auto& e = result.entry;
  switch (result.status) {
  case apply_status::committed:
  case apply_status::replayed: {
    if (result.status == apply_status::replayed &&
        (e.amount != req.amount || e.reason != req.reason))
      return error_reply(
          schemas::conflict("this Idempotency-Key was used for a different request (amount " +
                                std::to_string(e.amount) + ")",
                            "idempotency_key_reused"));
    json body{{"entry", schemas::ledger_json(e)}, {"balance", e.balance_after}};
    return {201, body.dump(), keyed && result.status == apply_status::replayed};
  }
  case apply_status::insufficient:
    return error_reply(schemas::conflict("cannot remove " + std::to_string(-req.amount) +
                                             " micro-credits: " + result.error,
                                         "insufficient_balance"));
  case apply_status::no_account:
    return error_reply(no_user(e.user_id));
  case apply_status::failed:
  case apply_status::fenced:
    break;
  }
  return error_reply(schemas::unavailable("the ledger could not commit; nothing was changed",
                                          "ledger_unavailable"));
}

/// Writes the audit row of an action that changed no stored entity, then answers `reply`.
void audited(self_ptr self, caf::response_promise promise, const admin_meta& meta,
             std::string action, std::string target, http_reply reply) {
  run_db(self, self->state.db,
         [=](soci::session& sql) {
           audit(sql, meta, action, target, {}, reply.body);
           return caf::make_message(reply);
         })
      .then([=](http_reply& r) mutable { promise.deliver(std::move(r)); },
            [=](caf::error& err) mutable { promise.deliver(error_reply(api_failure_of(err))); });
}

/// Trips or resets a provider's breakers at the router, audited.
template <class Atom>
caf::response_promise breaker_control(self_ptr self, Atom atom, const std::string& provider,
                                      const admin_meta& meta, const char* action) {
  auto promise = self->make_response_promise();
  self->request(self->state.router, caf::infinite, atom, provider)
      .then(
          [=](http_reply& r) mutable {
            if (r.status != 200) {
              promise.deliver(std::move(r));
              return;
            }
            audited(self, promise, meta, action, provider, std::move(r));
          },
          [=](caf::error& err) mutable { promise.deliver(error_reply(api_failure_of(err))); });
  return promise;
}

/// Calls, tokens and cost grouped by day, model or key; totals equal the user's charges.
json usage_report(soci::session& sql, const usage_query& q, int64_t to) {
  std::string group = q.group_by == "model" ? "model"
                      : q.group_by == "key" ? "key_id"
                                            : "(created_at / 86400) * 86400";
  std::string where = "created_at >= :f AND created_at < :t";
  if (!q.user_id.empty())
    where += " AND user_id = :u";
  std::string text = "SELECT " + group +
                     ", COUNT(*), SUM(prompt_tokens), SUM(completion_tokens), SUM(cost) "
                     "FROM usage_records WHERE " +
                     where + " GROUP BY 1 ORDER BY 1";
  std::string bucket;
  long long calls = 0, prompt = 0, completion = 0, cost = 0;
  soci::statement st(sql);
  st.exchange(soci::into(bucket));
  st.exchange(soci::into(calls));
  st.exchange(soci::into(prompt));
  st.exchange(soci::into(completion));
  st.exchange(soci::into(cost));
  st.exchange(soci::use(q.from));
  st.exchange(soci::use(to));
  if (!q.user_id.empty())
    st.exchange(soci::use(q.user_id));
  st.alloc();
  st.prepare(text);
  st.define_and_bind();
  st.execute(false);
  json data = json::array();
  json total{{"calls", 0}, {"prompt_tokens", 0}, {"completion_tokens", 0}, {"cost", 0}};
  while (st.fetch()) {
    json row{{q.group_by == "model" ? "model"
              : q.group_by == "key" ? "key_id"
                                    : "day",
              q.group_by == "day" || q.group_by.empty() ? json(std::stoll(bucket)) : json(bucket)},
             {"calls", calls},
             {"prompt_tokens", prompt},
             {"completion_tokens", completion},
             {"cost", cost}};
    for (const char* f : {"calls", "prompt_tokens", "completion_tokens", "cost"})
      total[f] = total[f].get<int64_t>() + row[f].get<int64_t>();
    data.push_back(std::move(row));
  }
  return {{"object", "usage_report"}, {"group_by", q.group_by},   {"from", q.from}, {"to", to},
          {"data", std::move(data)},  {"total", std::move(total)}};
}

/// GET /admin/cluster: members with their shard counts, and every lease with its epoch.
json cluster_json(const std::string& self, int32_t shards, int64_t now,
                  const std::vector<storage::node_row>& nodes,
                  const std::vector<storage::lease_row>& leases) {
  std::map<std::string, int64_t> held;
  json lease_list = json::array();
  int64_t free_shards = 0;
  for (const auto& l : leases) {
    bool live = !l.node_id.empty() && l.expires_at > now;
    if (live)
      ++held[l.node_id];
    else
      ++free_shards;
    lease_list.push_back({{"shard", l.shard},
                          {"node_id", live ? json(l.node_id) : json(nullptr)},
                          {"epoch", l.epoch},
                          {"expires_in_ms", live ? l.expires_at - now : 0}});
  }
  json members = json::array();
  for (const auto& n : nodes) {
    bool alive = n.expires_at > now && n.state != "left";
    members.push_back(
        {{"node_id", n.node_id},
         {"cluster_address", n.cluster_address},
         {"http_address", n.http_address},
         {"state", alive ? n.state : std::string(n.state == "left" ? "left" : "down")},
         {"alive", alive},
         {"lease_expires_in_ms", alive ? n.expires_at - now : 0},
         {"shards", held.count(n.node_id) ? held[n.node_id] : 0}});
  }
  return {{"object", "cluster"},
          {"enabled", true},
          {"node_id", self},
          {"shards", shards},
          {"free_shards", free_shards},
          {"members", std::move(members)},
          {"leases", std::move(lease_list)}};
}

} // namespace

caf::behavior admin_actor(caf::stateful_actor<admin_state>* self, db_pool db, caf::actor directory,
                          caf::actor router, caf::actor providers, config_reader read_config,
                          std::string node_id, int32_t shards) {
  self->state.node_id = std::move(node_id);
  self->state.shards = shards;
  self->state.db = std::move(db);
  self->state.directory = std::move(directory);
  self->state.router = std::move(router);
  self->state.providers = std::move(providers);
  self->state.read_config = std::move(read_config);
  return {
      [=](cluster_atom) {
        auto node = self->state.node_id;
        auto count = self->state.shards;
        auto promise = self->make_response_promise();
        if (node.empty()) {
          promise.deliver(
              http_reply{200, json{{"object", "cluster"}, {"enabled", false}}.dump(), false});
          return promise;
        }
        run_db(self, self->state.db,
               [=](soci::session& sql) {
                 storage::cluster_repository repo(sql);
                 return caf::make_message(http_reply{
                     200, cluster_json(node, count, repo.now(), repo.nodes(), repo.leases()).dump(),
                     false});
               })
            .then([=](http_reply& reply) mutable { promise.deliver(std::move(reply)); },
                  [=](caf::error& err) mutable {
                    promise.deliver(error_reply(api_failure_of(err)));
                  });
        return promise;
      },
      [=](leave_atom, const std::string& node, admin_meta& meta) {
        auto promise = self->make_response_promise();
        run_db(self, self->state.db,
               [=](soci::session& sql) {
                 if (!storage::cluster_repository(sql).set_state(node, "draining"))
                   return caf::make_message(
                       error_reply(schemas::not_found("no cluster node '" + node + "'")));
                 auto body = json{{"node_id", node}, {"state", "draining"}}.dump();
                 audit(sql, meta, "cluster.drain", node, {}, body);
                 return caf::make_message(http_reply{202, body, false});
               })
            .then([=](http_reply& reply) mutable { promise.deliver(std::move(reply)); },
                  [=](caf::error& err) mutable {
                    promise.deliver(error_reply(api_failure_of(err)));
                  });
        return promise;
      },
      [=](providers_atom) {
        return self->make_response_promise().delegate(self->state.router, providers_atom_v);
      },
      [=](trip_atom, const std::string& provider, admin_meta& meta) {
        return breaker_control(self, trip_atom_v, provider, meta, "provider.trip");
      },
      [=](caf::reset_atom, const std::string& provider, admin_meta& meta) {
        return breaker_control(self, caf::reset_atom_v, provider, meta, "provider.reset");
      },
      [=](caf::delete_atom, const std::string& provider, admin_meta& meta) {
        auto promise = self->make_response_promise();
        self->request(self->state.providers, caf::infinite, caf::delete_atom_v, provider)
            .then(
                [=](bool restarted) mutable {
                  if (!restarted) {
                    promise.deliver(
                        error_reply(schemas::not_found("no running provider '" + provider + "'")));
                    return;
                  }
                  audited(self, promise, meta, "provider.restart", provider,
                          http_reply{202, json{{"provider", provider}, {"restarting", true}}.dump(),
                                     false});
                },
                [=](caf::error& err) mutable {
                  promise.deliver(error_reply(api_failure_of(err)));
                });
        return promise;
      },
      [=](reload_atom, admin_meta& meta) {
        auto promise = self->make_response_promise();
        config::gateway_config cfg;
        try {
          cfg = self->state.read_config();
        } catch (const std::exception& e) {
          promise.deliver(error_reply(schemas::invalid_request(
              std::string("the configuration cannot be reloaded: ") + e.what(), {},
              "invalid_config")));
          return promise;
        }
        self->send(self->state.providers, reload_atom_v, cfg.providers);
        self->request(self->state.router, caf::infinite, reload_atom_v, model_catalog(cfg))
            .then(
                [=](int64_t models) mutable {
                  audited(
                      self, promise, meta, "config.reload", cfg.source,
                      http_reply{200, json{{"reloaded", true}, {"models", models}}.dump(), false});
                },
                [=](caf::error& err) mutable {
                  promise.deliver(error_reply(api_failure_of(err)));
                });
        return promise;
      },
      [=](usage_report_atom, usage_query& q) {
        return answer_from_db(self, [q](soci::session& sql) {
          auto to = q.to > 0 ? q.to : storage::unix_now() + 1;
          return reply(200, usage_report(sql, q, to));
        });
      },
      [=](create_atom, schemas::new_user& req, admin_meta& meta) {
        return answer_from_db(self, [req, meta](soci::session& sql) {
          storage::users_repository users(sql);
          soci::transaction tx(sql);
          if (users.email_taken(req.email))
            return reply_error(
                schemas::conflict("a user with email '" + req.email + "' exists", "email_taken"));
          auto now = storage::unix_now();
          schemas::user_record user{
              schemas::random_id("usr"), req.name, req.email, false, req.limits, 0, now, now};
          users.create(user);
          auto body = schemas::user_json(user);
          audit(sql, meta, "user.create", user.id, {}, body.dump());
          tx.commit();
          return reply(201, body);
        });
      },
      [=](list_users_atom, page_query& page) {
        return answer_from_db(self, [page](soci::session& sql) {
          storage::users_repository users(sql);
          auto rows = users.list(page.limit + 1, page.offset);
          bool more = static_cast<int64_t>(rows.size()) > page.limit;
          if (more)
            rows.pop_back();
          json data = json::array();
          for (const auto& u : rows)
            data.push_back(schemas::user_json(u));
          auto body = list_json(std::move(data), more);
          body["total"] = users.count();
          return reply(200, body);
        });
      },
      [=](caf::get_atom, const std::string& user_id) {
        return answer_from_db(self, [user_id](soci::session& sql) {
          auto user = storage::users_repository(sql).find(user_id);
          if (!user)
            return reply_error(no_user(user_id));
          return reply(200, schemas::user_json(*user));
        });
      },
      [=](update_atom, const std::string& user_id, schemas::user_patch& patch, admin_meta& meta) {
        auto promise = self->make_response_promise();
        run_db(self, self->state.db,
               [user_id, patch, meta](soci::session& sql) {
                 storage::users_repository users(sql);
                 soci::transaction tx(sql);
                 auto before = users.find(user_id);
                 if (!before)
                   return caf::make_message(make_api_failure(no_user(user_id)));
                 if (!patch.email.empty() && users.email_taken(patch.email, user_id))
                   return caf::make_message(make_api_failure(schemas::conflict(
                       "a user with email '" + patch.email + "' exists", "email_taken")));
                 auto after = patch.apply(*before);
                 after.updated_at = storage::unix_now();
                 users.update(after);
                 audit(sql, meta, "user.update", user_id, schemas::user_json(*before).dump(),
                       schemas::user_json(after).dump());
                 tx.commit();
                 return caf::make_message(std::move(after));
               })
            .then(
                [=](schemas::user_record& after) mutable {
                  // Answer only once the user actor applies it: the next call sees the change.
                  auto body = schemas::user_json(after).dump();
                  self->request(self->state.directory, caf::infinite, user_changed_atom_v, after)
                      .then(
                          [=]() mutable {
                            promise.deliver(http_reply{200, body, false});
                          },
                          [=](caf::error& err) mutable {
                            promise.deliver(error_reply(api_failure_of(err)));
                          });
                },
                [=](caf::error& err) mutable {
                  promise.deliver(error_reply(api_failure_of(err)));
                });
        return promise;
      },
      [=](credit_atom, const std::string& user_id, schemas::credit_request& req,
          const std::string& idempotency_key, admin_meta& meta) {
        auto promise = self->make_response_promise();
        bool keyed = !idempotency_key.empty();
        credit_order order{"credit:" + user_id + ":" +
                               (keyed ? idempotency_key : schemas::random_id("auto")),
                           req.amount, req.reason, meta.actor, meta.request_id};
        self->request(self->state.directory, caf::infinite, credit_atom_v, user_id,
                      std::move(order))
            .then(
                [=](storage::ledger_result& result) mutable {
                  promise.deliver(credit_reply(result, req, keyed));
                },
                [=](caf::error& err) mutable {
                  promise.deliver(error_reply(api_failure_of(err)));
                });
        return promise;
      },
      [=](ledger_atom, const std::string& user_id, page_query& page) {
        return answer_from_db(self, [user_id, page](soci::session& sql) {
          if (!storage::users_repository(sql).find(user_id))
            return reply_error(no_user(user_id));
          storage::ledger_repository ledger(sql);
          auto rows = ledger.list(user_id, page.limit + 1, page.before_id);
          bool more = static_cast<int64_t>(rows.size()) > page.limit;
          if (more)
            rows.pop_back();
          json data = json::array();
          for (const auto& e : rows)
            data.push_back(schemas::ledger_json(e));
          auto body = list_json(std::move(data), more);
          body["first_id"] = rows.empty() ? json() : json(rows.front().id);
          body["last_id"] = rows.empty() ? json() : json(rows.back().id);
          return reply(200, body);
        });
      },
      [=](create_atom, const std::string& user_id, schemas::new_key& req, admin_meta& meta) {
        return answer_from_db(self, [user_id, req, meta](soci::session& sql) {
          soci::transaction tx(sql);
          if (!storage::users_repository(sql).find(user_id))
            return reply_error(no_user(user_id));
          auto secret = schemas::generate_api_key(req.environment);
          schemas::key_record key{schemas::random_id("key"),
                                  user_id,
                                  req.name,
                                  req.environment,
                                  schemas::key_prefix(secret),
                                  schemas::sha256_hex(secret),
                                  req.limits,
                                  req.models,
                                  req.allowed_ips,
                                  req.expires_at,
                                  0,
                                  storage::unix_now()};
          storage::keys_repository(sql).create(key);
          auto body = schemas::key_json(key);
          audit(sql, meta, "key.create", key.id, {}, body.dump());
          tx.commit();
          body["key"] = secret; // shown this once
          return reply(201, body);
        });
      },
      [=](list_keys_atom, const std::string& user_id) {
        return answer_from_db(self, [user_id](soci::session& sql) {
          if (!storage::users_repository(sql).find(user_id))
            return reply_error(no_user(user_id));
          json data = json::array();
          for (const auto& k : storage::keys_repository(sql).list_for_user(user_id))
            data.push_back(schemas::key_json(k));
          return reply(200, list_json(std::move(data), false));
        });
      },
      [=](revoke_atom, const std::string& key_id, admin_meta& meta) {
        auto promise = self->make_response_promise();
        run_db(self, self->state.db,
               [key_id, meta](soci::session& sql) {
                 storage::keys_repository keys(sql);
                 soci::transaction tx(sql);
                 auto key = keys.find(key_id);
                 if (!key)
                   return caf::make_message(
                       make_api_failure(schemas::not_found("no API key with id '" + key_id + "'")));
                 auto before = schemas::key_json(*key).dump();
                 if (keys.revoke(key_id, storage::unix_now())) {
                   key = keys.find(key_id);
                   audit(sql, meta, "key.revoke", key_id, before, schemas::key_json(*key).dump());
                 }
                 tx.commit();
                 return caf::make_message(std::move(*key));
               })
            .then(
                [=](schemas::key_record& key) mutable {
                  // Answer once the key actor knows: the key fails from the next request on.
                  auto body = schemas::key_json(key).dump();
                  self->request(self->state.directory, caf::infinite, revoke_atom_v, key.key_hash,
                                key.revoked_at)
                      .then(
                          [=]() mutable {
                            promise.deliver(http_reply{200, body, false});
                          },
                          [=](caf::error& err) mutable {
                            promise.deliver(error_reply(api_failure_of(err)));
                          });
                },
                [=](caf::error& err) mutable {
                  promise.deliver(error_reply(api_failure_of(err)));
                });
        return promise;
      },
      [=](ready_atom) {
        return answer_from_db(self, [](soci::session& sql) {
          int one = 0;
          sql << "SELECT 1", soci::into(one);
          return reply(200, json{{"status", "ready"}});
        });
      },
      [=](audit_atom, page_query& page) {
        return answer_from_db(self, [page](soci::session& sql) {
          auto rows = storage::audit_repository(sql).list(page.limit + 1, page.before_id, {});
          bool more = static_cast<int64_t>(rows.size()) > page.limit;
          if (more)
            rows.pop_back();
          json data = json::array();
          for (const auto& r : rows)
            data.push_back({{"id", r.id},
                            {"object", "audit_entry"},
                            {"actor", r.actor},
                            {"action", r.action},
                            {"target", r.target},
                            {"before", r.before_json.empty() ? json() : json::parse(r.before_json)},
                            {"after", r.after_json.empty() ? json() : json::parse(r.after_json)},
                            {"request_id", r.request_id},
                            {"created_at", r.created_at}});
          return reply(200, list_json(std::move(data), more));
        });
      },
  };
}

} // namespace tollgate
