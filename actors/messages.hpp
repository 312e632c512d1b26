#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <caf/all.hpp>
#include <soci/soci.h>

#include "schemas/admin_requests.hpp"
#include "schemas/api_error.hpp"
#include "schemas/records.hpp"
#include "storage/ledger_batch.hpp"

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
struct db_job {
  std::function<caf::message(soci::session&)> run;
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

/// Wraps an API error so it travels as a CAF error (category "tollgate").
caf::error make_api_failure(schemas::api_error err);

/// The API error behind a CAF error: ours unwrapped, CAF's own mapped to 5xx.
schemas::api_error api_failure_of(const caf::error& err);

/// Whether a request failed because its receiver is gone (passivated meanwhile): retry.
bool is_receiver_gone(const caf::error& err);

} // namespace tollgate

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(tollgate::db_job)

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
// -- atoms: operators
CAF_ADD_ATOM(tollgate, tollgate, ready_atom, "ready")
CAF_ADD_ATOM(tollgate, tollgate, stats_atom, "stats")

CAF_END_TYPE_ID_BLOCK(tollgate)
