#include "http/proxy_request.hpp"

#include <spdlog/spdlog.h>

#include "actors/metrics/metrics.hpp"
#include "http/consumer_auth.hpp"
#include "schemas/chat.hpp"
#include "schemas/pricing.hpp"

namespace tollgate::http {

namespace {

using json = nlohmann::json;
using self_ptr = caf::stateful_actor<proxy_request_state>*;
using phase = proxy_request_state::phase;

/// Shared by every handler of one request: what the RESTinio thread gave us.
struct context {
  request_handle req;
  proxy_call call;
  proxy_actors actors;
};
using ctx_ptr = std::shared_ptr<context>;

int64_t ms_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t)
      .count();
}

header_list rate_header_list(const rate_headers& h) {
  header_list out;
  for (std::size_t i = 0; i + 1 < h.fields.size(); i += 2)
    out.emplace_back(h.fields[i], h.fields[i + 1]);
  return out;
}

/// An upstream failure as the caller sees it: the caller's own mistakes pass through, the
/// upstream's trouble becomes 502/503/504.
schemas::api_error upstream_error(const transfer_result& r) {
  if (r.curl_code != 0) {
    bool timeout = r.curl_code == 28; // CURLE_OPERATION_TIMEDOUT
    return {timeout ? 504 : 502,
            "server_error",
            timeout ? "upstream_timeout" : "upstream_unreachable",
            "the upstream provider could not be reached: " + r.error,
            {},
            {}};
  }
  auto upstream = json::parse(r.body, nullptr, false);
  std::string detail =
      upstream.is_object() && upstream.contains("error") && upstream["error"].is_object()
          ? upstream["error"].value("message", "")
          : std::string();
  if (r.http_status == 400 || r.http_status == 404 || r.http_status == 422)
    return {static_cast<int>(r.http_status),
            "invalid_request_error",
            "upstream_rejected",
            "the upstream provider rejected the request: " + detail,
            {},
            {}};
  if (r.http_status == 429)
    return {503,
            "server_error",
            "upstream_rate_limited",
            "the upstream provider is rate limiting; retry later",
            {},
            {"retry-after", "1"}};
  return {502,
          "server_error",
          "upstream_error",
          "the upstream provider failed (HTTP " + std::to_string(r.http_status) + ")" +
              (detail.empty() ? "" : ": " + detail),
          {},
          {}};
}

/// The body sent upstream: the caller's, with the deployment's model, the capped max_tokens
/// and, for streams, usage reporting switched on.
std::string upstream_body(const proxy_call& call, const route_plan& route, const hold_grant& hold) {
  auto body = call.body;
  body["model"] = route.upstream_model;
  if (hold.capped) {
    for (const char* field : {"max_tokens", "max_completion_tokens"})
      if (body.contains(field))
        body[field] = hold.max_tokens;
    if (!body.contains("max_tokens") && !body.contains("max_completion_tokens"))
      body["max_tokens"] = hold.max_tokens;
  }
  if (call.stream) {
    if (!body.contains("stream_options") || !body["stream_options"].is_object())
      body["stream_options"] = json::object();
    body["stream_options"]["include_usage"] = true;
  }
  return body.dump();
}

/// Reads a "usage" object into the state.
void take_usage(proxy_request_state& st, const json& usage) {
  if (!usage.is_object())
    return;
  if (usage.contains("prompt_tokens") && usage["prompt_tokens"].is_number_integer())
    st.prompt_tokens = usage["prompt_tokens"].get<int64_t>();
  if (usage.contains("completion_tokens") && usage["completion_tokens"].is_number_integer())
    st.completion_tokens = usage["completion_tokens"].get<int64_t>();
  else if (st.prompt_tokens >= 0)
    st.completion_tokens = 0; // embeddings report prompt tokens only
}

/// Counts the generated text of a choice (or a delta) for calls whose usage is not reported.
int64_t generated_bytes(const json& choice) {
  int64_t bytes = 0;
  for (const char* part : {"message", "delta"}) {
    auto it = choice.find(part);
    if (it == choice.end() || !it->is_object())
      continue;
    if (auto c = it->find("content"); c != it->end() && c->is_string())
      bytes += static_cast<int64_t>(c->get_ref<const std::string&>().size());
    if (auto t = it->find("tool_calls"); t != it->end())
      bytes += static_cast<int64_t>(t->dump().size());
  }
  return bytes;
}

void end_request(self_ptr self) {
  self->state.step = phase::finished;
  self->quit();
}

void fail(self_ptr self, const ctx_ptr& ctx, const schemas::api_error& err) {
  auto headers = rate_header_list(self->state.admitted.headers);
  send_error(ctx->req, err, ctx->call.request_id, headers);
  end_request(self);
}

/// Tokens, credits and timings of a finished call.
void record_call(const proxy_request_state& st, const ctx_ptr& ctx, const std::string& model,
                 int64_t prompt, int64_t completion, int64_t charged) {
  using seconds = std::chrono::duration<double>;
  auto& m = gateway_metrics::global();
  auto now = std::chrono::steady_clock::now();
  m.tokens.at({model, "prompt"}).add(prompt);
  m.tokens.at({model, "completion"}).add(completion);
  if (charged > 0)
    m.credits_charged.at({model}).add(charged);
  m.duration.observe(seconds(now - ctx->call.received).count(), {"/v1/" + ctx->call.path});
  if (st.first_token_at)
    m.ttft.observe(seconds(*st.first_token_at - ctx->call.received).count(), {model});
  if (st.upstream_ended > st.upstream_started)
    m.overhead.observe(
        seconds((now - ctx->call.received) - (st.upstream_ended - st.upstream_started)).count());
}

/// Ends the hold with the call's cost and usage record, then runs `then` once it is durable.
template <class Then>
void settle(self_ptr self, const ctx_ptr& ctx, std::string status, Then then) {
  auto& st = self->state;
  st.step = phase::settling;
  const auto& call = ctx->call;
  bool produced =
      st.completion_tokens > 0 || st.counted_completion_bytes > 0 || st.prompt_tokens >= 0;
  // Usage as reported; counted by tollgate where the upstream reported none.
  int64_t prompt = st.prompt_tokens >= 0 ? st.prompt_tokens : call.prompt_tokens;
  int64_t completion = st.completion_tokens >= 0
                           ? st.completion_tokens
                           : schemas::estimate_tokens_of_size(st.counted_completion_bytes);
  // A call that produced nothing costs nothing: its hold is voided.
  int64_t cost = produced ? schemas::cost_of(st.route.price, prompt, completion) : 0;
  if (!produced)
    prompt = completion = 0;
  storage::usage_record usage;
  usage.request_id = call.request_id;
  usage.key_id = st.admitted.key.id;
  usage.model = call.model;
  usage.deployment = st.route.deployment;
  usage.prompt_tokens = prompt;
  usage.completion_tokens = completion;
  usage.latency_ms = ms_since(call.received);
  usage.ttft_ms = st.first_token_at ? std::chrono::duration_cast<std::chrono::milliseconds>(
                                          *st.first_token_at - call.received)
                                          .count()
                                    : 0;
  usage.status = std::move(status);
  // The key's token window learns what the call really used.
  if (st.admitted.key_actor)
    self->send(st.admitted.key_actor, usage_atom_v,
               prompt + completion - (call.prompt_tokens + call.max_tokens * call.choices));
  auto model = call.model;
  self->request(st.admitted.user, caf::infinite, settle_atom_v,
                settlement{call.request_id, cost, std::move(usage)})
      .then(
          [=](storage::ledger_result& result) mutable {
            record_call(self->state, ctx, model, prompt, completion, -result.entry.amount);
            then(std::move(result));
          },
          [=](caf::error& err) mutable {
            spdlog::error("{}: settling failed: {}", ctx->call.request_id, to_string(err));
            then(storage::ledger_result{storage::apply_status::failed, {}, to_string(err)});
          });
}

/// Writes one piece of the stream; a failed write means the client left.
void write_chunk(self_ptr self, std::string bytes) {
  auto& st = self->state;
  if (st.client_gone || !st.response)
    return;
  auto me = caf::actor_cast<caf::actor>(self);
  st.response->append_chunk(std::move(bytes));
  st.response->flush([me](const restinio::asio_ns::error_code& ec) {
    if (ec)
      caf::anon_send(me, written_atom_v, false);
  });
}

void open_stream(self_ptr self, const ctx_ptr& ctx) {
  auto& st = self->state;
  st.response.emplace(ctx->req->create_response<restinio::chunked_output_t>());
  st.response->append_header(restinio::http_field::content_type, "text/event-stream");
  st.response->append_header(restinio::http_field::cache_control, "no-cache");
  st.response->append_header("x-request-id", ctx->call.request_id);
  for (auto& [name, value] : rate_header_list(st.admitted.headers))
    st.response->append_header(name, value);
}

/// Handles one upstream event of a stream: meters it and passes it on.
void on_event(self_ptr self, const ctx_ptr& ctx, const schemas::sse_event& event) {
  auto& st = self->state;
  if (event.data.empty())
    return; // comments and keep-alives
  if (event.data == "[DONE]") {
    st.upstream_done_seen = true; // sent by us once the charge is durable
    return;
  }
  auto doc = json::parse(event.data, nullptr, false);
  if (!doc.is_object()) {
    st.stream_error = "the upstream sent a malformed event";
    if (st.transfer_known)
      self->send(st.route.provider_actor, cancel_atom_v, st.transfer_id);
    return;
  }
  bool usage_only = false;
  if (auto usage = doc.find("usage"); usage != doc.end() && usage->is_object()) {
    take_usage(st, *usage);
    usage_only = !doc.contains("choices") || (doc["choices"].is_array() && doc["choices"].empty());
  }
  if (auto choices = doc.find("choices"); choices != doc.end() && choices->is_array())
    for (const auto& c : *choices)
      st.counted_completion_bytes += generated_bytes(c);
  // tollgate asked for the usage chunk; the caller sees it only if it asked too.
  if (usage_only && !ctx->call.include_usage)
    return;
  if (!st.first_token_at)
    st.first_token_at = std::chrono::steady_clock::now();
  if (!st.response)
    open_stream(self, ctx);
  write_chunk(self, event.raw);
}

/// The upstream finished a stream (or failed): settle, then end the response.
void finish_stream(self_ptr self, const ctx_ptr& ctx, transfer_result result) {
  auto& st = self->state;
  bool ok = result.curl_code == 0 && result.http_status >= 200 && result.http_status < 300 &&
            st.stream_error.empty();
  if (!st.response && !ok && !st.client_gone) {
    // Nothing reached the caller yet: an ordinary error answer, and the hold is voided.
    auto err = st.stream_error.empty()
                   ? upstream_error(result)
                   : schemas::api_error{
                         502, "server_error", "upstream_malformed", st.stream_error, {}, {}};
    settle(self, ctx, "upstream_error", [=](storage::ledger_result) { fail(self, ctx, err); });
    return;
  }
  std::string status = st.client_gone ? "client_gone" : ok ? "ok" : "upstream_error";
  if (!ok && !st.client_gone) {
    auto message = st.stream_error.empty() ? "the upstream stream broke off: " + result.error
                                           : st.stream_error;
    json error{{"error",
                {{"message", message},
                 {"type", "server_error"},
                 {"param", nullptr},
                 {"code", "upstream_stream_error"}}}};
    write_chunk(self, "data: " + error.dump() + "\n\n");
  }
  settle(self, ctx, status, [=](storage::ledger_result) {
    auto& now = self->state;
    if (now.response && !now.client_gone) {
      if (ok)
        now.response->append_chunk(std::string("data: [DONE]\n\n"));
      now.response->done();
      count_response(ctx->req->header().path(), 200);
    } else if (!now.response && !now.client_gone) {
      // A successful stream with no event at all: still a well-formed stream.
      open_stream(self, ctx);
      now.response->append_chunk(std::string("data: [DONE]\n\n"));
      now.response->done();
    }
    end_request(self);
  });
}

/// The upstream answered a buffered call: settle, then answer.
void finish_buffered(self_ptr self, const ctx_ptr& ctx, transfer_result result) {
  auto& st = self->state;
  if (result.curl_code != 0 || result.http_status < 200 || result.http_status >= 300) {
    auto err = upstream_error(result);
    settle(self, ctx, "upstream_error", [=](storage::ledger_result) { fail(self, ctx, err); });
    return;
  }
  auto doc = json::parse(result.body, nullptr, false);
  if (!doc.is_object()) {
    settle(self, ctx, "upstream_error", [=](storage::ledger_result) {
      fail(self, ctx,
           {502,
            "server_error",
            "upstream_malformed",
            "the upstream sent a malformed answer",
            {},
            {}});
    });
    return;
  }
  st.first_token_at = std::chrono::steady_clock::now();
  if (auto usage = doc.find("usage"); usage != doc.end())
    take_usage(st, *usage);
  if (st.prompt_tokens < 0)
    st.prompt_tokens = ctx->call.prompt_tokens;
  if (auto choices = doc.find("choices"); choices != doc.end() && choices->is_array())
    for (const auto& c : *choices)
      st.counted_completion_bytes += generated_bytes(c);
  settle(self, ctx, "ok", [=, body = std::move(result.body)](storage::ledger_result r) mutable {
    auto headers = rate_header_list(self->state.admitted.headers);
    if (r.status == storage::apply_status::committed)
      headers.emplace_back("x-tollgate-cost", std::to_string(-r.entry.amount));
    send_json(ctx->req, 200, std::move(body), ctx->call.request_id, headers);
    end_request(self);
  });
}

void call_upstream(self_ptr self, const ctx_ptr& ctx) {
  auto& st = self->state;
  st.step = phase::calling;
  st.upstream_started = std::chrono::steady_clock::now();
  gateway_metrics::global().in_flight.at().add(1);
  upstream_call uc{ctx->call.request_id,
                   ctx->call.path,
                   upstream_body(ctx->call, st.route, st.hold),
                   ctx->call.stream,
                   1,
                   caf::actor_cast<caf::actor>(self)};
  self->request(st.route.provider_actor, actor_timeout, complete_atom_v, std::move(uc))
      .then(
          [=](uint64_t id) {
            self->state.transfer_id = id;
            self->state.transfer_known = true;
            // The caller left while the call was being placed.
            if (self->state.client_gone)
              self->send(self->state.route.provider_actor, cancel_atom_v, id);
          },
          [=](caf::error& err) {
            gateway_metrics::global().in_flight.at().add(-1);
            settle(self, ctx, "error",
                   [=](storage::ledger_result) { fail(self, ctx, api_failure_of(err)); });
          });
}

void hold_credits(self_ptr self, const ctx_ptr& ctx) {
  auto& st = self->state;
  st.step = phase::holding;
  const auto& call = ctx->call;
  hold_request hr{call.request_id, st.route.price, call.prompt_tokens,
                  call.max_tokens, call.choices,   st.route.max_output_tokens};
  if (call.path == "embeddings")
    hr.default_max_tokens = 0;
  self->request(st.admitted.user, actor_timeout, hold_atom_v, std::move(hr))
      .then(
          [=](hold_grant& grant) {
            self->state.hold = grant;
            call_upstream(self, ctx);
          },
          [=](caf::error& err) { fail(self, ctx, api_failure_of(err)); });
}

void route_model(self_ptr self, const ctx_ptr& ctx) {
  auto& st = self->state;
  st.step = phase::routing;
  self->request(ctx->actors.router, actor_timeout, route_atom_v, ctx->call.model,
                st.admitted.key.environment)
      .then(
          [=](route_plan& plan) {
            self->state.route = std::move(plan);
            hold_credits(self, ctx);
          },
          [=](caf::error& err) { fail(self, ctx, api_failure_of(err)); });
}

/// Asks the key's actor to admit the call; a key actor passivated meanwhile is retried once.
void admit(self_ptr self, const ctx_ptr& ctx, int attempts) {
  const auto& call = ctx->call;
  admission_request ar{call.client_ip, call.model,
                       call.prompt_tokens + call.max_tokens * call.choices};
  self->request(ctx->actors.directory, actor_timeout, admit_atom_v, call.key_hash, std::move(ar))
      .then(
          [=](admission& a) {
            self->state.admitted = std::move(a);
            route_model(self, ctx);
          },
          [=](caf::error& err) {
            if (attempts > 1 && is_receiver_gone(err))
              admit(self, ctx, attempts - 1);
            else
              fail(self, ctx, api_failure_of(err));
          });
}

} // namespace

caf::behavior proxy_request(caf::stateful_actor<proxy_request_state>* self, request_handle req,
                            proxy_call call, proxy_actors actors) {
  auto ctx = std::make_shared<context>(context{std::move(req), std::move(call), std::move(actors)});
  admit(self, ctx, 2);
  return {
      [=](upstream_data_atom, uint64_t, std::string& bytes) {
        auto& st = self->state;
        if (st.step != phase::calling)
          return;
        for (auto& event : st.parser.feed(bytes)) {
          on_event(self, ctx, event);
          if (!st.stream_error.empty())
            break;
        }
      },
      [=](upstream_done_atom, uint64_t, transfer_result& result) {
        if (self->state.step != phase::calling)
          return;
        self->state.upstream_ended = std::chrono::steady_clock::now();
        gateway_metrics::global().in_flight.at().add(-1);
        if (ctx->call.stream)
          finish_stream(self, ctx, std::move(result));
        else
          finish_buffered(self, ctx, std::move(result));
      },
      [=](written_atom, bool ok) {
        auto& st = self->state;
        if (ok || st.client_gone)
          return;
        // The client left mid-stream: stop the upstream; what it produced is still charged
        // when the cancelled transfer reports its end.
        st.client_gone = true;
        if (st.step == phase::calling && st.transfer_known)
          self->send(st.route.provider_actor, cancel_atom_v, st.transfer_id);
      },
  };
}

} // namespace tollgate::http
