#include "http/routes.hpp"

#include <csignal>
#include <functional>
#include <map>
#include <optional>
#include <unistd.h>
#include <vector>

#include "actors/messages.hpp"
#include "actors/metrics/metrics.hpp"
#include "actors/thread_name.hpp"
#include "http/me_request.hpp"
#include "http/proxy_request.hpp"
#include "http/request_actor.hpp"
#include "http/responses.hpp"
#include "schemas/admin_requests.hpp"
#include "schemas/chat.hpp"
#include "schemas/key_format.hpp"
#include "schemas/numbers.hpp"
#include "storage/database.hpp"

namespace tollgate::http {

namespace {

using params = restinio::router::route_params_t;
using status = restinio::request_handling_status_t;
using ctx_ptr = std::shared_ptr<const route_context>;

/// A request as the route handlers see it after the common checks.
struct call {
  request_handle req;
  std::string request_id;
  params route;
};

/// The caller's id if it gave a sane one, else a fresh one.
std::string request_id_of(const request_handle& req) {
  auto given = req->header().opt_value_of("x-request-id");
  if (given && !given->empty() && given->size() <= 128) {
    bool printable = true;
    for (char c : *given)
      printable = printable && c > 32 && c < 127;
    if (printable)
      return std::string(*given);
  }
  return schemas::time_ordered_id("req");
}

std::string bearer_token(const request_handle& req) {
  auto value = req->header().opt_value_of(restinio::http_field::authorization);
  if (!value)
    return {};
  std::string_view v = *value;
  constexpr std::string_view scheme = "Bearer ";
  if (v.size() <= scheme.size() || v.substr(0, scheme.size()) != scheme)
    return {};
  v.remove_prefix(scheme.size());
  while (!v.empty() && v.front() == ' ')
    v.remove_prefix(1);
  while (!v.empty() && v.back() == ' ')
    v.remove_suffix(1);
  return std::string(v);
}

/// 413 and 415 checks for requests that carry a JSON body.
std::optional<schemas::api_error> check_body(const request_handle& req, std::size_t limit) {
  if (req->body().size() > limit)
    return schemas::payload_too_large(limit);
  if (req->body().empty())
    return std::nullopt;
  auto type = req->header().opt_value_of(restinio::http_field::content_type);
  std::string_view t = type ? std::string_view(*type) : std::string_view();
  if (t.substr(0, t.find(';')) != "application/json")
    return schemas::unsupported_media_type(t);
  return std::nullopt;
}

/// Reads an integer query parameter within [low, high]; absent gives `fallback`.
schemas::result<int64_t> query_int(const restinio::query_string_params_t& qp, std::string_view name,
                                   int64_t fallback, int64_t low, int64_t high) {
  if (!qp.has(name))
    return fallback;
  auto value = schemas::parse_number<int64_t>(qp[name]);
  if (!value || *value < low || *value > high)
    return schemas::invalid_request("query parameter '" + std::string(name) +
                                        "' must be an integer from " + std::to_string(low) +
                                        " to " + std::to_string(high),
                                    std::string(name));
  return *value;
}

schemas::result<page_query> page_of(const request_handle& req) {
  auto qp = restinio::parse_query(req->header().query());
  page_query page;
  auto limit = query_int(qp, "limit", 50, 1, 1000);
  if (!limit)
    return limit.error();
  auto offset = query_int(qp, "offset", 0, 0, INT64_MAX);
  if (!offset)
    return offset.error();
  auto after = query_int(qp, "after", 0, 0, INT64_MAX);
  if (!after)
    return after.error();
  page.limit = *limit;
  page.offset = *offset;
  page.before_id = *after;
  return page;
}

status reject(const call& c, const schemas::api_error& err) {
  send_error(c.req, err, c.request_id);
  return restinio::request_accepted();
}

/// Hands `command` to the admin actor through a request actor.
template <class... Ts>
status to_admin(const ctx_ptr& ctx, const call& c, Ts&&... xs) {
  ctx->system->spawn(request_actor, c.req, c.request_id, ctx->admin,
                     caf::make_message(std::forward<Ts>(xs)...));
  return restinio::request_accepted();
}

std::string param(const call& c, std::string_view name) {
  return std::string(c.route[name]);
}

using handler = std::function<status(const ctx_ptr&, const call&)>;

enum class auth { none, admin, consumer };

struct route {
  restinio::http_method_id_t method;
  const char* path;
  auth needs;
  handler handle;
};

/// ?group_by=day|model|key&from=&to=&user= for usage reports.
schemas::result<usage_query> usage_query_of(const call& c) {
  auto qp = restinio::parse_query(c.req->header().query());
  usage_query q;
  if (qp.has("group_by")) {
    q.group_by = std::string(qp["group_by"]);
    if (q.group_by != "day" && q.group_by != "model" && q.group_by != "key")
      return schemas::invalid_request("'group_by' must be day, model or key", "group_by");
  }
  if (qp.has("user"))
    q.user_id = std::string(qp["user"]);
  auto from = query_int(qp, "from", 0, 0, INT64_MAX);
  if (!from)
    return from.error();
  auto to = query_int(qp, "to", 0, 0, INT64_MAX);
  if (!to)
    return to.error();
  q.from = *from;
  q.to = *to;
  return q;
}

consumer_call consumer_of(const call& c) {
  return {c.request_id, schemas::sha256_hex(bearer_token(c.req)),
          c.req->remote_endpoint().address().to_string()};
}

status to_account(const ctx_ptr& ctx, const call& c, account_view view) {
  std::optional<usage_query> usage;
  if (view == account_view::usage) {
    auto q = usage_query_of(c);
    if (!q)
      return reject(c, q.error());
    usage = std::move(*q);
  }
  ctx->system->spawn(me_request, c.req, consumer_of(c), view, ctx->directory, ctx->router,
                     ctx->admin, usage.value_or(usage_query{}));
  return restinio::request_accepted();
}

/// The request body as `Parse` prepares it, parsed again for a retry (it passed once).
template <auto Parse>
nlohmann::json parsed_again(std::string_view text) {
  auto again = Parse(text);
  return again ? std::move(again->body) : nlohmann::json();
}

proxy_call proxy_call_of(const call& c, std::string path, nlohmann::json body, std::string model,
                         int64_t prompt_tokens) {
  auto who = consumer_of(c);
  proxy_call pc;
  // A caller's x-request-id is echoed, but never keys money: the call gets its own id.
  pc.echo_id = who.request_id;
  pc.request_id = c.req->header().has_field("x-request-id") ? schemas::time_ordered_id("req")
                                                            : std::move(who.request_id);
  pc.key_hash = std::move(who.key_hash);
  pc.client_ip = std::move(who.client_ip);
  pc.path = std::move(path);
  pc.body = std::move(body);
  pc.model = std::move(model);
  pc.prompt_tokens = prompt_tokens;
  // Per-request timeouts (milliseconds) override the deployment's.
  for (auto [header, slot] :
       {std::pair{"x-tollgate-timeout-first-token-ms", &pc.first_token_timeout_ms},
        std::pair{"x-tollgate-timeout-idle-ms", &pc.idle_timeout_ms},
        std::pair{"x-tollgate-timeout-ms", &pc.total_timeout_ms}}) {
    if (auto value = c.req->header().opt_value_of(header)) {
      auto ms = schemas::parse_number<int64_t>(*value);
      if (ms && *ms > 0)
        *slot = *ms;
    }
  }
  pc.received = std::chrono::steady_clock::now();
  return pc;
}

status to_proxy(const ctx_ptr& ctx, const call& c, proxy_call pc) {
  ++*ctx->active_calls;
  ctx->system->spawn(
      proxy_request, c.req, std::move(pc),
      proxy_actors{ctx->directory, ctx->keys, ctx->router, ctx->routing, ctx->active_calls});
  return restinio::request_accepted();
}

admin_meta meta_of(const call& c) {
  return {"admin", c.request_id};
}

/// The endpoint list: one line per endpoint.
std::vector<route> routes() {
  using namespace restinio;
  auto page_then = [](auto fn) {
    return [fn](const ctx_ptr& ctx, const call& c) {
      auto page = page_of(c.req);
      return page ? fn(ctx, c, *page) : reject(c, page.error());
    };
  };
  // RESTinio tries the routes in this order, a regex each: the calls that carry the traffic
  // come first.
  return {
      {http_method_get(), "/v1/me", auth::consumer,
       [](const ctx_ptr& ctx, const call& c) { return to_account(ctx, c, account_view::me); }},
      {http_method_get(), "/v1/models", auth::consumer,
       [](const ctx_ptr& ctx, const call& c) { return to_account(ctx, c, account_view::models); }},
      {http_method_post(), "/v1/chat/completions", auth::consumer,
       [](const ctx_ptr& ctx, const call& c) {
         auto chat = schemas::parse_chat_request(c.req->body());
         if (!chat)
           return reject(c, chat.error());
         auto pc = proxy_call_of(c, "chat/completions", std::move(chat->body), chat->model,
                                 chat->prompt_tokens);
         pc.stream = chat->stream;
         pc.include_usage = chat->include_usage;
         pc.max_tokens = chat->max_tokens;
         pc.max_tokens_field = chat->max_tokens_field;
         pc.choices = chat->choices;
         pc.fallback_models = std::move(chat->fallback_models);
         pc.reparse = &parsed_again<schemas::parse_chat_request>;
         return to_proxy(ctx, c, std::move(pc));
       }},
      {http_method_post(), "/v1/embeddings", auth::consumer,
       [](const ctx_ptr& ctx, const call& c) {
         auto emb = schemas::parse_embeddings_request(c.req->body());
         if (!emb)
           return reject(c, emb.error());
         auto pc =
             proxy_call_of(c, "embeddings", std::move(emb->body), emb->model, emb->input_tokens);
         pc.reparse = &parsed_again<schemas::parse_embeddings_request>;
         return to_proxy(ctx, c, std::move(pc));
       }},
      {http_method_get(), "/v1/usage", auth::consumer,
       [](const ctx_ptr& ctx, const call& c) { return to_account(ctx, c, account_view::usage); }},
      {http_method_get(), "/health", auth::none,
       [](const ctx_ptr&, const call& c) {
         send_json(c.req, 200, R"({"status":"ok"})", c.request_id);
         return request_accepted();
       }},
      {http_method_get(), "/metrics", auth::none,
       [](const ctx_ptr&, const call& c) {
         auto response = c.req->create_response();
         response.append_header(restinio::http_field::content_type,
                                "text/plain; version=0.0.4; charset=utf-8");
         response.set_body(gateway_metrics::global().render());
         response.done();
         return request_accepted();
       }},
      {http_method_get(), "/ready", auth::none,
       [](const ctx_ptr& ctx, const call& c) {
         if (ctx->draining->load())
           return reject(c, schemas::unavailable("this node is draining", "draining"));
         return to_admin(ctx, c, ready_atom_v);
       }},
      {http_method_get(), "/admin/usage", auth::admin,
       [](const ctx_ptr& ctx, const call& c) {
         auto q = usage_query_of(c);
         return q ? to_admin(ctx, c, usage_report_atom_v, std::move(*q)) : reject(c, q.error());
       }},
      {http_method_get(), "/admin/cluster", auth::admin,
       [](const ctx_ptr& ctx, const call& c) { return to_admin(ctx, c, cluster_atom_v); }},
      {http_method_post(), "/admin/cluster/drain/:node", auth::admin,
       [](const ctx_ptr& ctx, const call& c) {
         return to_admin(ctx, c, leave_atom_v, param(c, "node"), meta_of(c));
       }},
      {http_method_get(), "/admin/providers", auth::admin,
       [](const ctx_ptr& ctx, const call& c) { return to_admin(ctx, c, providers_atom_v); }},
      {http_method_post(), "/admin/providers/:name/trip", auth::admin,
       [](const ctx_ptr& ctx, const call& c) {
         return to_admin(ctx, c, trip_atom_v, param(c, "name"), meta_of(c));
       }},
      {http_method_post(), "/admin/providers/:name/reset", auth::admin,
       [](const ctx_ptr& ctx, const call& c) {
         return to_admin(ctx, c, caf::reset_atom_v, param(c, "name"), meta_of(c));
       }},
      {http_method_post(), "/admin/providers/:name/restart", auth::admin,
       [](const ctx_ptr& ctx, const call& c) {
         return to_admin(ctx, c, caf::delete_atom_v, param(c, "name"), meta_of(c));
       }},
      {http_method_post(), "/admin/control/reload", auth::admin,
       [](const ctx_ptr& ctx, const call& c) {
         return to_admin(ctx, c, reload_atom_v, meta_of(c));
       }},
      {http_method_post(), "/admin/control/drain", auth::admin,
       [](const ctx_ptr& ctx, const call& c) {
         // The main thread drains on SIGTERM: finish the calls in flight, then exit 0.
         ctx->draining->store(true);
         send_json(
             c.req, 202,
             nlohmann::json{{"draining", true}, {"in_flight", ctx->active_calls->load()}}.dump(),
             c.request_id);
         ::kill(::getpid(), SIGTERM);
         return request_accepted();
       }},
      {http_method_post(), "/admin/users", auth::admin,
       [](const ctx_ptr& ctx, const call& c) {
         auto req = schemas::parse_new_user(c.req->body());
         return req ? to_admin(ctx, c, create_atom_v, std::move(*req), meta_of(c))
                    : reject(c, req.error());
       }},
      {http_method_get(), "/admin/users", auth::admin,
       page_then([](const ctx_ptr& ctx, const call& c, page_query page) {
         return to_admin(ctx, c, list_users_atom_v, page);
       })},
      {http_method_get(), "/admin/users/:id", auth::admin,
       [](const ctx_ptr& ctx, const call& c) {
         return to_admin(ctx, c, caf::get_atom_v, param(c, "id"));
       }},
      {http_method_patch(), "/admin/users/:id", auth::admin,
       [](const ctx_ptr& ctx, const call& c) {
         auto patch = schemas::parse_user_patch(c.req->body());
         return patch
                    ? to_admin(ctx, c, update_atom_v, param(c, "id"), std::move(*patch), meta_of(c))
                    : reject(c, patch.error());
       }},
      {http_method_post(), "/admin/users/:id/credits", auth::admin,
       [](const ctx_ptr& ctx, const call& c) {
         auto key = c.req->header().opt_value_of("idempotency-key");
         if (key)
           if (auto err = schemas::check_idempotency_key(*key))
             return reject(c, *err);
         auto req = schemas::parse_credit_request(c.req->body());
         return req ? to_admin(ctx, c, credit_atom_v, param(c, "id"), std::move(*req),
                               key ? std::string(*key) : std::string(), meta_of(c))
                    : reject(c, req.error());
       }},
      {http_method_get(), "/admin/users/:id/ledger", auth::admin,
       page_then([](const ctx_ptr& ctx, const call& c, page_query page) {
         return to_admin(ctx, c, ledger_atom_v, param(c, "id"), page);
       })},
      {http_method_post(), "/admin/users/:id/keys", auth::admin,
       [](const ctx_ptr& ctx, const call& c) {
         auto req = schemas::parse_new_key(c.req->body(), storage::unix_now());
         return req ? to_admin(ctx, c, create_atom_v, param(c, "id"), std::move(*req), meta_of(c))
                    : reject(c, req.error());
       }},
      {http_method_get(), "/admin/users/:id/keys", auth::admin,
       [](const ctx_ptr& ctx, const call& c) {
         return to_admin(ctx, c, list_keys_atom_v, param(c, "id"));
       }},
      {http_method_delete(), "/admin/keys/:id", auth::admin,
       [](const ctx_ptr& ctx, const call& c) {
         return to_admin(ctx, c, revoke_atom_v, param(c, "id"), meta_of(c));
       }},
      {http_method_get(), "/admin/audit", auth::admin,
       page_then([](const ctx_ptr& ctx, const call& c, page_query page) {
         return to_admin(ctx, c, audit_atom_v, page);
       })},
  };
}

/// Authentication and body checks shared by every route, then the route's own handler.
status dispatch(const ctx_ptr& ctx, const route& r, request_handle req, params route_params) {
  // RESTinio's own threads (`http.threads`); actor workers already carry their name.
  name_this_thread_once("tg-http");
  auto request_id = request_id_of(req);
  call c{std::move(req), std::move(request_id), std::move(route_params)};
  if (auto err = check_body(c.req, ctx->max_body_bytes))
    return reject(c, *err);
  if (r.needs == auth::consumer && ctx->draining->load())
    return reject(c,
                  schemas::unavailable("this node is draining; retry on another node", "draining"));
  if (r.needs == auth::admin) {
    auto token = bearer_token(c.req);
    if (token.empty())
      return reject(
          c, schemas::unauthenticated("missing admin key: send Authorization: Bearer <admin key>",
                                      "missing_api_key"));
    if (!schemas::constant_time_equal(schemas::sha256_hex(token), ctx->admin_key_hash))
      return reject(c, schemas::unauthenticated("incorrect admin key provided"));
  } else if (r.needs == auth::consumer) {
    auto token = bearer_token(c.req);
    if (token.empty())
      return reject(c, schemas::unauthenticated(
                           "missing API key: send Authorization: Bearer <your tollgate key>",
                           "missing_api_key"));
    // Anything not shaped like a key is rejected here, without a lookup.
    if (!schemas::is_api_key_shape(token))
      return reject(c, schemas::unauthenticated("incorrect API key provided"));
  }
  return r.handle(ctx, c);
}

} // namespace

std::unique_ptr<router> make_router(std::shared_ptr<const route_context> ctx) {
  auto r = std::make_unique<router>();
  std::map<std::string, restinio::router::dynamic_none_of_methods_matcher_t> other_methods;
  for (auto& entry : routes()) {
    r->add_handler(entry.method, entry.path, [ctx, entry](request_handle req, params p) {
      return dispatch(ctx, entry, std::move(req), std::move(p));
    });
    other_methods[entry.path].add(entry.method);
  }
  for (auto& [path, matcher] : other_methods) {
    r->add_handler(std::move(matcher), path, [](request_handle req, params) {
      auto id = request_id_of(req);
      send_error(req,
                 schemas::method_not_allowed(req->header().method().c_str(), req->header().path()),
                 id);
      return restinio::request_accepted();
    });
  }
  r->non_matched_request_handler([](request_handle req) {
    auto id = request_id_of(req);
    send_error(
        req, schemas::not_found("unknown URL " + std::string(req->header().path()), "unknown_url"),
        id);
    return restinio::request_accepted();
  });
  return r;
}

} // namespace tollgate::http
