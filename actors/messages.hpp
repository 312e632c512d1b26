#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <caf/all.hpp>
#include <soci/soci.h>

#include "actors/limits/rate_limiter.hpp"
#include "actors/provider/upstream_loop.hpp"
#include "actors/router/model_catalog.hpp"
#include "schemas/admin_requests.hpp"
#include "schemas/api_error.hpp"
#include "schemas/pricing.hpp"
#include "schemas/records.hpp"
#include "storage/ledger_batch.hpp"
#include "storage/session_cache.hpp"

namespace tollgate {

/// What a key actor hands a request that passed its policy checks.
struct key_grant {
  schemas::key_record key;
  caf::actor user; ///< The key owner's user actor.

  template <class Inspector>
  friend auto inspect(Inspector& f, key_grant& x) {
    return f(x.key, x.user);
  }
};

/// A user as the user actor sees it: committed balance and what open holds keep aside.
struct user_view {
  schemas::user_record user;
  int64_t held = 0;
  int64_t available = 0;
  int64_t open_holds = 0;

  template <class Inspector>
  friend auto inspect(Inspector& f, user_view& x) {
    return f(x.user, x.held, x.available, x.open_holds);
  }
};

/// An admin credit or debit, keyed by its idempotency request id.
struct credit_order {
  std::string request_id;
  int64_t amount = 0;
  std::string reason;
  std::string actor;
  std::string http_request_id;

  template <class Inspector>
  friend auto inspect(Inspector& f, credit_order& x) {
    return f(x.request_id, x.amount, x.reason, x.actor, x.http_request_id);
  }
};

/// Who asked for an admin action, for the audit log.
struct admin_meta {
  std::string actor = "admin";
  std::string request_id;

  template <class Inspector>
  friend auto inspect(Inspector& f, admin_meta& x) {
    return f(x.actor, x.request_id);
  }
};

/// A finished HTTP answer produced by an actor.
struct http_reply {
  int status = 200;
  std::string body;
  bool replayed = false; ///< An idempotent replay: the first answer, unchanged.

  template <class Inspector>
  friend auto inspect(Inspector& f, http_reply& x) {
    return f(x.status, x.body, x.replayed);
  }
};

/// Blocking database work for a db_worker; node-local, never serialized (so it has no
/// type ID: vectors of the types below are registered with them).
/// The shard an actor's entity belongs to and the lease epoch under which this node
/// activated it. shard -1: a single node, nothing to fence.
struct shard_fence {
  int32_t shard = -1;
  int64_t epoch = 0;
};

/// The cluster agent's news for its directory: who holds each shard's lease now, and
/// where each member's middleman listens.
struct cluster_view {
  std::vector<std::string> owners; ///< By shard: the lease holder's node id, "" if none.
  std::map<std::string, std::string> addresses; ///< Node id -> host:port.
};

struct db_job {
  /// Runs on the worker's session; the cache holds what lives as long as that session.
  std::function<caf::message(soci::session&, storage::session_cache&)> run;
};

/// A usage report: calls, tokens and cost grouped by day, model or key.
struct usage_query {
  std::string user_id; ///< Empty: all users (admins only).
  std::string group_by = "day";
  int64_t from = 0; ///< Unix seconds, inclusive.
  int64_t to = 0;   ///< Unix seconds, exclusive; 0: now.

  template <class Inspector>
  friend auto inspect(Inspector& f, usage_query& x) {
    return f(x.user_id, x.group_by, x.from, x.to);
  }
};

/// Page of a list request.
struct page_query {
  int64_t limit = 50;
  int64_t offset = 0;
  int64_t before_id = 0;

  template <class Inspector>
  friend auto inspect(Inspector& f, page_query& x) {
    return f(x.limit, x.offset, x.before_id);
  }
};

/// What a request asks of a key before it may run.
struct admission_request {
  std::string client_ip;
  std::string model;
  int64_t tokens = 0; ///< Estimated tokens of the call, charged to the token window now.
  /// The call was admitted before and then found its user actor gone or handing over: it
  /// is not counted again, and the key looks its user up afresh.
  bool again = false;

  template <class Inspector>
  friend auto inspect(Inspector& f, admission_request& x) {
    return f(x.client_ip, x.model, x.tokens, x.again);
  }
};

/// A key's yes: who owns it and the state of its rate windows. Only what a call needs of
/// the key travels (it lives as long as the call, streams included).
struct admission {
  std::string key_id;
  std::string user_id;
  std::string environment; ///< "live" or "test": test keys route to the echo provider.
  caf::actor key_actor;    ///< Where the call reports the tokens it really used.
  caf::actor user;
  rate_headers headers;

  template <class Inspector>
  friend auto inspect(Inspector& f, admission& x) {
    return f(x.key_id, x.user_id, x.environment, x.key_actor, x.user, x.headers);
  }
};

/// A call asking the router where to go (again).
struct route_request {
  std::string model;
  std::string environment;        ///< The key's: "test" keys go to the free echo provider.
  std::vector<std::string> also;  ///< Fallback models the caller named ("models": [...]).
  std::vector<std::string> tried; ///< Deployments this call already failed on.
  bool retry = false;             ///< Not the first attempt: counts against the retry budget.

  template <class Inspector>
  friend auto inspect(Inspector& f, route_request& x) {
    return f(x.model, x.environment, x.also, x.tried, x.retry);
  }
};

/// Where a model's call goes: one deployment and its provider actor.
struct route_plan {
  std::string model;      ///< The public name of the model served.
  std::string deployment; ///< "provider/upstream model"
  std::string provider;
  std::string upstream_model;
  schemas::model_price price;
  int64_t max_output_tokens = 4096;
  caf::actor provider_actor;
  int64_t connect_ms = 10'000; ///< The deployment's timeouts.
  int64_t first_token_ms = 60'000;
  int64_t idle_ms = 120'000;
  int64_t total_ms = 600'000;

  template <class Inspector>
  friend auto inspect(Inspector& f, route_plan& x) {
    return f(x.model, x.deployment, x.provider, x.upstream_model, x.price, x.max_output_tokens,
             x.provider_actor, x.connect_ms, x.first_token_ms, x.idle_ms, x.total_ms);
  }
};

/// How one upstream attempt went, for the deployment's breaker, load and latency.
struct call_outcome {
  std::string deployment;
  bool success = true;
  bool counts = true;         ///< Whether a failure is the upstream's (not the caller's 400).
  int64_t ttft_ms = 0;        ///< 0 if unknown.
  int64_t retry_after_ms = 0; ///< An upstream 429's Retry-After.
  bool retry = false;         ///< It was a retry (frees a slot of the retry budget).

  template <class Inspector>
  friend auto inspect(Inspector& f, call_outcome& x) {
    return f(x.deployment, x.success, x.counts, x.ttft_ms, x.retry_after_ms, x.retry);
  }
};

/// A request for credits to be kept aside for one call.
struct hold_request {
  std::string hold_id; ///< The request id.
  schemas::model_price price;
  int64_t prompt_tokens = 0;
  int64_t max_tokens = 0; ///< The caller's, 0 if unset.
  int64_t choices = 1;
  int64_t default_max_tokens = 4096;

  template <class Inspector>
  friend auto inspect(Inspector& f, hold_request& x) {
    return f(x.hold_id, x.price, x.prompt_tokens, x.max_tokens, x.choices, x.default_max_tokens);
  }
};

/// The hold as granted; the call may not produce more than `max_tokens` per choice.
struct hold_grant {
  int64_t amount = 0;
  int64_t max_tokens = 0; ///< 0: as the caller asked.
  bool capped = false;

  template <class Inspector>
  friend auto inspect(Inspector& f, hold_grant& x) {
    return f(x.amount, x.max_tokens, x.capped);
  }
};

/// The end of a call: charge `cost` (at most the hold; 0 voids it) and record its usage.
struct settlement {
  std::string hold_id;
  int64_t cost = 0;
  storage::usage_record usage;

  template <class Inspector>
  friend auto inspect(Inspector& f, settlement& x) {
    return f(x.hold_id, x.cost, x.usage);
  }
};

/// One call to an upstream; data and the end arrive at `requester` tagged with `attempt`.
struct upstream_call {
  std::string request_id;
  std::string path; ///< "chat/completions" or "embeddings"
  std::string body; ///< JSON
  bool stream = false;
  uint64_t attempt = 0;
  caf::actor requester;
  int64_t connect_ms = 10'000;
  int64_t total_ms = 600'000;
  int64_t first_byte_ms = 0; ///< No byte of the answer by then: timed out (0: no limit).
  int64_t idle_ms = 0;       ///< Silence between two pieces of a stream (0: no limit).

  template <class Inspector>
  friend auto inspect(Inspector& f, upstream_call& x) {
    return f(x.request_id, x.path, x.body, x.stream, x.attempt, x.requester, x.connect_ms,
             x.total_ms, x.first_byte_ms, x.idle_ms);
  }
};

/// Wraps an API error so it travels as a CAF error (category "tollgate").
caf::error make_api_failure(schemas::api_error err);

/// The API error behind a CAF error: ours unwrapped, CAF's own mapped to 5xx.
schemas::api_error api_failure_of(const caf::error& err);

/// 503 shard_moving: the entity is being handed to another node; the caller retries.
caf::error shard_moving();

/// Whether a request failed because its receiver is gone (passivated meanwhile): retry.
bool is_receiver_gone(const caf::error& err);

/// Whether `target` is an actor of this node, which answers every request, or fails it at
/// once if it has ended (a remote actor's proxy drops requests when its node dies).
bool lives_here(const caf::actor& target);

/// How long to wait for `target`'s answer: `limit` if it lives on another node, where a
/// message can be lost with its connection; no limit for an actor of this node, which
/// always answers (or, if it ended, fails the request at once). A request without a limit
/// costs the actor clock nothing, which is most of what a timed request costs.
caf::duration answer_limit(const caf::actor& target, std::chrono::milliseconds limit);

} // namespace tollgate

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(tollgate::db_job)
// The agent and the directory of one node.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(tollgate::cluster_view)
// Configuration reloads stay on the node that read the file.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(tollgate::model_catalog)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::vector<tollgate::config::provider_config>)

CAF_BEGIN_TYPE_ID_BLOCK(tollgate, caf::first_custom_type_id)

// -- entities
CAF_ADD_TYPE_ID(tollgate, (tollgate::schemas::rate_limits))
CAF_ADD_TYPE_ID(tollgate, (tollgate::schemas::user_record))
CAF_ADD_TYPE_ID(tollgate, (tollgate::schemas::key_record))
CAF_ADD_TYPE_ID(tollgate, (tollgate::schemas::ledger_entry))
CAF_ADD_TYPE_ID(tollgate, (tollgate::schemas::api_error))

// -- admin endpoint -> admin actor
CAF_ADD_TYPE_ID(tollgate, (tollgate::schemas::new_user))
CAF_ADD_TYPE_ID(tollgate, (tollgate::schemas::user_patch))
CAF_ADD_TYPE_ID(tollgate, (tollgate::schemas::credit_request))
CAF_ADD_TYPE_ID(tollgate, (tollgate::schemas::new_key))
CAF_ADD_TYPE_ID(tollgate, (tollgate::admin_meta))
CAF_ADD_TYPE_ID(tollgate, (tollgate::page_query))
CAF_ADD_TYPE_ID(tollgate, (tollgate::http_reply))

// -- request -> directory -> key and user actors
CAF_ADD_TYPE_ID(tollgate, (tollgate::key_grant))
CAF_ADD_TYPE_ID(tollgate, (tollgate::user_view))
CAF_ADD_TYPE_ID(tollgate, (tollgate::credit_order))

// -- request -> key, user, router and provider actors
CAF_ADD_TYPE_ID(tollgate, (tollgate::admission_request))
CAF_ADD_TYPE_ID(tollgate, (tollgate::admission))
CAF_ADD_TYPE_ID(tollgate, (tollgate::rate_headers))
CAF_ADD_TYPE_ID(tollgate, (tollgate::route_plan))
CAF_ADD_TYPE_ID(tollgate, (tollgate::route_request))
CAF_ADD_TYPE_ID(tollgate, (tollgate::usage_query))
CAF_ADD_TYPE_ID(tollgate, (tollgate::call_outcome))
CAF_ADD_TYPE_ID(tollgate, (tollgate::schemas::model_price))
CAF_ADD_TYPE_ID(tollgate, (tollgate::hold_request))
CAF_ADD_TYPE_ID(tollgate, (tollgate::hold_grant))
CAF_ADD_TYPE_ID(tollgate, (tollgate::settlement))
CAF_ADD_TYPE_ID(tollgate, (tollgate::storage::usage_record))
CAF_ADD_TYPE_ID(tollgate, (tollgate::upstream_call))
CAF_ADD_TYPE_ID(tollgate, (tollgate::transfer_result))

// -- user actor -> ledger writer -> committer
CAF_ADD_TYPE_ID(tollgate, (tollgate::storage::ledger_post))
CAF_ADD_TYPE_ID(tollgate, (tollgate::storage::ledger_result))

// -- atoms: request and admin -> directory
CAF_ADD_ATOM(tollgate, tollgate, authenticate_atom, "auth")
CAF_ADD_ATOM(tollgate, tollgate, resolve_user_atom, "resolveusr")
CAF_ADD_ATOM(tollgate, tollgate, user_changed_atom, "usrchanged")
CAF_ADD_ATOM(tollgate, tollgate, revoke_atom, "revoke")
// -- atoms: user and key actors -> directory
CAF_ADD_ATOM(tollgate, tollgate, passivate_atom, "passivate")
CAF_ADD_ATOM(tollgate, tollgate, passivate_user_atom, "passivusr")
// -- atoms: cluster (agent -> directory, directory -> directory of another node)
CAF_ADD_ATOM(tollgate, tollgate, relay_atom, "relay")
CAF_ADD_ATOM(tollgate, tollgate, own_atom, "own")
CAF_ADD_ATOM(tollgate, tollgate, drop_atom, "drop")
CAF_ADD_ATOM(tollgate, tollgate, release_atom, "release")
CAF_ADD_ATOM(tollgate, tollgate, tick_atom, "tick")
CAF_ADD_ATOM(tollgate, tollgate, idle_atom, "idle")
CAF_ADD_ATOM(tollgate, tollgate, leave_atom, "leave")
CAF_ADD_ATOM(tollgate, tollgate, open_work_atom, "openwork")
CAF_ADD_ATOM(tollgate, tollgate, cluster_atom, "cluster")
// -- atoms: request and admin -> user actor
CAF_ADD_ATOM(tollgate, tollgate, credit_atom, "credit")
// -- atoms: user actor -> ledger writer -> committer
CAF_ADD_ATOM(tollgate, tollgate, post_atom, "post")
CAF_ADD_ATOM(tollgate, tollgate, commit_atom, "commit")
// -- atoms: admin endpoint -> admin actor
CAF_ADD_ATOM(tollgate, tollgate, create_atom, "create")
CAF_ADD_ATOM(tollgate, tollgate, update_atom, "update")
CAF_ADD_ATOM(tollgate, tollgate, list_users_atom, "listusers")
CAF_ADD_ATOM(tollgate, tollgate, list_keys_atom, "listkeys")
CAF_ADD_ATOM(tollgate, tollgate, ledger_atom, "ledger")
CAF_ADD_ATOM(tollgate, tollgate, audit_atom, "audit")
// -- atoms: request -> key, router, user and provider actors
CAF_ADD_ATOM(tollgate, tollgate, admit_atom, "admit")
CAF_ADD_ATOM(tollgate, tollgate, usage_atom, "usage")
CAF_ADD_ATOM(tollgate, tollgate, route_atom, "route")
CAF_ADD_ATOM(tollgate, tollgate, outcome_atom, "outcome")
CAF_ADD_ATOM(tollgate, tollgate, providers_atom, "providers")
CAF_ADD_ATOM(tollgate, tollgate, trip_atom, "trip")
CAF_ADD_ATOM(tollgate, tollgate, reload_atom, "reload")
CAF_ADD_ATOM(tollgate, tollgate, usage_report_atom, "usagerep")
CAF_ADD_ATOM(tollgate, tollgate, keepalive_atom, "keepalive")
CAF_ADD_ATOM(tollgate, tollgate, models_atom, "models")
CAF_ADD_ATOM(tollgate, tollgate, hold_atom, "hold")
CAF_ADD_ATOM(tollgate, tollgate, settle_atom, "settle")
CAF_ADD_ATOM(tollgate, tollgate, complete_atom, "complete")
CAF_ADD_ATOM(tollgate, tollgate, cancel_atom, "cancel")
// -- atoms: provider -> request
CAF_ADD_ATOM(tollgate, tollgate, upstream_data_atom, "updata")
CAF_ADD_ATOM(tollgate, tollgate, upstream_done_atom, "updone")
// -- atoms: provider supervisor -> router, and self-scheduled retries
CAF_ADD_ATOM(tollgate, tollgate, provider_up_atom, "providerup")
CAF_ADD_ATOM(tollgate, tollgate, restart_atom, "restart")
// -- atoms: http writer -> request
CAF_ADD_ATOM(tollgate, tollgate, written_atom, "written")
// -- atoms: operators
CAF_ADD_ATOM(tollgate, tollgate, ready_atom, "ready")
CAF_ADD_ATOM(tollgate, tollgate, stats_atom, "stats")

CAF_END_TYPE_ID_BLOCK(tollgate)
