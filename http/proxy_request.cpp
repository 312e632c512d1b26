#include "http/proxy_request.hpp"

#include <algorithm>

#include <spdlog/spdlog.h>

#include "actors/metrics/metrics.hpp"
#include "http/consumer_auth.hpp"
#include "schemas/answer_reading.hpp"
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
  bool answered = false; ///< A response (or the head of a stream) went to the client.
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
  // tollgate's own verdict on an answer it could not read.
  if (upstream.is_object() && upstream.contains("error") && upstream["error"].is_object() &&
      upstream["error"].value("code", "") == "upstream_malformed")
    return {502, "server_error", "upstream_malformed", detail, {}, {}};
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
            {"retry-after", std::to_string(std::max<int64_t>((r.retry_after_ms + 999) / 1000, 1))}};
  return {502,
          "server_error",
          "upstream_error",
          "the upstream provider failed (HTTP " + std::to_string(r.http_status) + ")" +
              (detail.empty() ? "" : ": " + detail),
          {},
          {}};
}

/// The body sent upstream: the caller's, with the deployment's model, the capped max_tokens
/// and, for streams, usage reporting switched on. The first attempt takes the parsed body;
/// a later one parses the request's text again.
std::string upstream_body(context& ctx, const route_plan& route, const hold_grant& hold) {
  auto& call = ctx.call;
  auto body =
      call.body.is_null() && call.reparse ? call.reparse(ctx.req->body()) : std::move(call.body);
  call.body = nullptr;
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

/// Meters what an answer (or a stream's event) says: its usage, else its generated text.
void take_reading(proxy_request_state& st, const schemas::answer_reading& r) {
  if (r.has_usage) {
    if (r.prompt_tokens)
      st.prompt_tokens = *r.prompt_tokens;
    if (r.completion_tokens)
      st.completion_tokens = *r.completion_tokens;
    else if (st.prompt_tokens >= 0)
      st.completion_tokens = 0; // embeddings report prompt tokens only
  }
  st.counted_completion_bytes += r.generated_bytes;
}

/// Until `stop_awaiting_user`, `if_gone` runs if the admitted user actor ends before it
/// answers. It is watched only when it lives on another node, and only while an answer is
/// awaited: if that node dies, its proxy here drops requests, and only the down message
/// tells (at once, for a proxy already dead when watched). An actor of this node needs no
/// watching (`lives_here`). Watching costs: CAF keeps an actor's monitors in a list that each
/// `demonitor` walks. Watched for a call's whole life, with thousands of one user's calls in
/// flight, each call's end walked thousands of entries (a tenth of the CPU of 10,000
/// streams); watched during the waits alone, the list holds the calls that wait right now.
void await_user(self_ptr self, std::function<void()> if_gone) {
  auto& st = self->state;
  st.on_user_down = std::move(if_gone);
  if (!st.watching_user && st.admitted.user && !lives_here(st.admitted.user)) {
    st.watching_user = true;
    self->monitor(st.admitted.user);
  }
}

/// The user actor answered (or is given up on): no longer watched. A monitor outlives the
/// actor that set it: left on the user actor, it would keep this actor's memory until the
/// user actor ends.
void stop_awaiting_user(self_ptr self) {
  auto& st = self->state;
  st.on_user_down = nullptr;
  if (std::exchange(st.watching_user, false))
    self->demonitor(st.admitted.user);
}

void end_request(self_ptr self) {
  self->state.step = phase::finished;
  stop_awaiting_user(self);
  self->quit();
}

void fail(self_ptr self, const ctx_ptr& ctx, const schemas::api_error& err) {
  auto headers = rate_header_list(self->state.admitted.headers);
  headers.emplace_back("x-tollgate-request-id", ctx->call.request_id);
  ctx->answered = true;
  send_error(ctx->req, err, ctx->call.echo_id, headers);
  end_request(self);
}

/// A user actor answers a hold or a settlement within this unless its node is gone.
constexpr auto settle_timeout = std::chrono::seconds(10);

/// A call whose user is moving between nodes is admitted again, up to this often; so is a
/// settlement sent again.
constexpr int max_readmissions = 100;
constexpr auto readmission_delay = std::chrono::milliseconds(50);

/// Whether `err` says the user is moving: its actor ended (passivated, or its node left),
/// went silent (its node died), or its shard is being handed to another node. Asked again a
/// moment later, the directory finds the user where it lives then.
bool user_moving(const caf::error& err) {
  return is_receiver_gone(err) || err == caf::sec::request_timeout ||
         api_failure_of(err).code == "shard_moving";
}

/// The charge of the call is in the ledger (written now, or earlier under the same id).
bool is_durable(const storage::ledger_result& r) {
  return r.status == storage::apply_status::committed ||
         r.status == storage::apply_status::replayed;
}

schemas::api_error unbilled() {
  return schemas::unavailable("the call's charge could not be recorded, so its answer is "
                              "withheld and nothing was billed; retry",
                              "billing_unavailable");
}

nlohmann::json unbilled_json() {
  auto e = unbilled();
  return {{"message", e.message}, {"type", e.type}, {"param", nullptr}, {"code", e.code}};
}

/// Tokens, credits and timings of a finished call.
void record_call(const proxy_request_state& st, const ctx_ptr& ctx, const std::string& model,
                 int64_t prompt, int64_t completion, int64_t charged, const std::string& status) {
  if (spdlog::should_log(spdlog::level::info))
    spdlog::info(json{{"msg", "call"},
                      {"request_id", ctx->call.request_id},
                      {"key_id", st.admitted.key_id},
                      {"model", model},
                      {"deployment", st.route.deployment},
                      {"status", status},
                      {"attempts", st.attempt},
                      {"prompt_tokens", prompt},
                      {"completion_tokens", completion},
                      {"cost", charged},
                      {"latency_ms", ms_since(ctx->call.received)}}
                     .dump());
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
  // Counted tokens are an estimate: never more than the call was allowed to produce.
  int64_t allowed = (st.hold.capped        ? st.hold.max_tokens
                     : call.max_tokens > 0 ? call.max_tokens
                                           : st.route.max_output_tokens) *
                    call.choices;
  int64_t completion =
      st.completion_tokens >= 0
          ? st.completion_tokens
          : std::min(schemas::estimate_tokens_of_size(st.counted_completion_bytes), allowed);
  // A call that produced nothing costs nothing: its hold is voided.
  int64_t cost = produced ? schemas::cost_of(st.route.price, prompt, completion) : 0;
  if (!produced)
    prompt = completion = 0;
  storage::usage_record usage;
  usage.request_id = call.request_id;
  usage.key_id = st.admitted.key_id;
  usage.model = call.model;
  usage.deployment = st.route.deployment;
  usage.prompt_tokens = prompt;
  usage.completion_tokens = completion;
  usage.latency_ms = ms_since(call.received);
  usage.ttft_ms = st.first_token_at ? std::chrono::duration_cast<std::chrono::milliseconds>(
                                          *st.first_token_at - call.received)
                                          .count()
                                    : 0;
  auto usage_status = status;
  usage.status = std::move(status);
  usage.attempts = static_cast<int64_t>(st.attempt);
  usage.attempt_log = st.attempt_log;
  // The key's token window learns what the call really used.
  if (st.admitted.key_actor)
    self->send(st.admitted.key_actor, usage_atom_v,
               prompt + completion - (call.prompt_tokens + call.max_tokens * call.choices));
  auto model = call.model;
  auto answered = std::make_shared<bool>(false);
  auto failed = [=](const std::string& why) mutable {
    stop_awaiting_user(self);
    spdlog::error(
        json{{"msg", "settling failed"}, {"request_id", ctx->call.request_id}, {"error", why}}
            .dump());
    then(storage::ledger_result{storage::apply_status::failed, {}, why});
  };
  // Sent as a copy; kept here, shared by the handlers, in case it must go to another actor.
  auto owed =
      std::make_shared<const settlement>(settlement{call.request_id, cost, std::move(usage)});
  auto done = [=](storage::ledger_result& result) mutable {
    stop_awaiting_user(self);
    record_call(self->state, ctx, model, prompt, completion, -result.entry.amount, usage_status);
    then(std::move(result));
  };
  // While the shard is still being handed over, the directory or the user's new actor
  // answers shard_moving (or the old one has just ended), or the ledger refuses the charge
  // of a node that has just lost the shard and does not know it yet (fenced: nothing was
  // written): the settlement is sent again after a moment, as a hold is admitted again. The
  // request id keeps it to one charge.
  auto settle_again = [=](bool moving, const std::string& why) mutable {
    auto& now = self->state;
    if (moving && now.resettlements < max_readmissions) {
      ++now.resettlements;
      self->delayed_send(self, readmission_delay, settle_atom_v);
      return;
    }
    failed(why);
  };
  auto late_failed = [=](const caf::error& err) mutable {
    settle_again(user_moving(err), to_string(err));
  };
  auto late_done = [=](storage::ledger_result& result) mutable {
    if (result.status == storage::apply_status::fenced)
      settle_again(true, result.error);
    else
      done(result);
  };
  // The user's shard moved away from the node that held the hold, or that node went down:
  // the charge goes to the user's current actor, wherever it lives now.
  st.settle_late = [=]() mutable {
    stop_awaiting_user(self);
    auto user_id = self->state.admitted.user_id;
    self->request(ctx->actors.directory, actor_timeout, resolve_user_atom_v, user_id)
        .then(
            [=](caf::actor& user) mutable {
              self->request(user, answer_limit(user, actor_timeout), settle_atom_v, *owed, true)
                  .then([=](storage::ledger_result& result) mutable { late_done(result); },
                        [=](caf::error& err) mutable { late_failed(err); });
            },
            [=](caf::error& err) mutable { late_failed(err); });
  };
  auto settle_late = [self] { self->state.settle_late(); };
  if (st.user_down) {
    settle_late();
    return;
  }
  await_user(self, [=]() mutable {
    if (!std::exchange(*answered, true))
      settle_late();
  });
  self->request(st.admitted.user, answer_limit(st.admitted.user, settle_timeout), settle_atom_v,
                *owed)
      .then(
          [=](storage::ledger_result& result) mutable {
            if (std::exchange(*answered, true))
              return;
            if (result.status == storage::apply_status::fenced)
              settle_late();
            else
              done(result);
          },
          [=](caf::error& err) mutable {
            if (std::exchange(*answered, true))
              return;
            // Gone, or silent (its node died and no down message came through): settle
            // with whichever actor owns the user now; the request id keeps it to one charge.
            if (is_receiver_gone(err) || err == caf::sec::request_timeout)
              settle_late();
            else
              failed(to_string(err));
          });
}

/// Stops the current attempt's upstream transfer (through the router, which knows the
/// provider's current actor even after a restart).
void cancel_transfer(self_ptr self, const ctx_ptr& ctx) {
  auto& st = self->state;
  if (st.transfer_known)
    self->send(ctx->actors.router, cancel_atom_v, st.route.provider, st.transfer_id);
}

/// Writes the pieces appended to the stream, as one write. When it ends, the actor hears
/// of it only if pieces came meanwhile (to write them) or if it failed (the client left).
void flush_stream(self_ptr self) {
  auto& st = self->state;
  auto me = caf::actor_cast<caf::actor>(self);
  st.response->flush([me, pacer = st.pacer](const restinio::asio_ns::error_code& ec) {
    if (ec)
      caf::anon_send(me, written_atom_v, false);
    else if (pacer->written())
      caf::anon_send(me, written_atom_v, true);
  });
}

/// Writes one piece of the stream: now, or with the next write if one is in flight.
void write_chunk(self_ptr self, std::string bytes) {
  auto& st = self->state;
  if (st.client_gone || !st.response)
    return;
  st.last_write = std::chrono::steady_clock::now();
  st.response->append_chunk(std::move(bytes));
  if (st.pacer->appended())
    flush_stream(self);
}

void open_stream(self_ptr self, const ctx_ptr& ctx) {
  auto& st = self->state;
  ctx->answered = true;
  st.response.emplace(ctx->req->create_response<restinio::chunked_output_t>());
  st.pacer = std::make_shared<write_pacer>();
  st.response->append_header(restinio::http_field::content_type, "text/event-stream");
  st.response->append_header(restinio::http_field::cache_control, "no-cache");
  st.response->append_header("x-request-id", ctx->call.echo_id);
  st.response->append_header("x-tollgate-request-id", ctx->call.request_id);
  for (auto& [name, value] : rate_header_list(st.admitted.headers))
    st.response->append_header(name, value);
  st.last_write = std::chrono::steady_clock::now();
  self->delayed_send(self, std::chrono::seconds(ctx->actors.routing.keepalive_seconds),
                     keepalive_atom_v);
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
  auto reading = schemas::read_answer(event.data);
  if (!reading.object) {
    st.stream_error = "the upstream sent a malformed event";
    if (st.transfer_known)
      cancel_transfer(self, ctx);
    return;
  }
  take_reading(st, reading);
  const bool usage_only = reading.has_usage && (!reading.has_choices || reading.choices_empty);
  // tollgate asked for the usage chunk; the caller sees it only if it asked too.
  if (usage_only && !ctx->call.include_usage)
    return;
  if (!st.first_token_at)
    st.first_token_at = std::chrono::steady_clock::now();
  if (!st.response)
    open_stream(self, ctx);
  write_chunk(self, event.raw);
}

/// Tells the router how the current attempt went, once.
void report_attempt(self_ptr self, const ctx_ptr& ctx, bool success, bool counts,
                    int64_t retry_after_ms, const std::string& what) {
  auto& st = self->state;
  if (!st.attempt_open)
    return;
  st.attempt_open = false;
  gateway_metrics::global().in_flight.at().add(-1);
  int64_t ttft = st.first_token_at ? std::chrono::duration_cast<std::chrono::milliseconds>(
                                         *st.first_token_at - st.upstream_started)
                                         .count()
                                   : 0;
  self->send(
      ctx->actors.router, outcome_atom_v,
      call_outcome{st.route.deployment, success, counts, ttft, retry_after_ms, st.attempt > 1});
  st.attempt_log += (st.attempt_log.empty() ? "" : ",") + st.route.deployment + ":" + what;
}

/// Whether a failed attempt is the upstream's fault (worth another deployment), not the
/// caller's.
bool upstream_at_fault(const transfer_result& r) {
  if (r.curl_code != 0)
    return true;
  return !(r.http_status == 400 || r.http_status == 404 || r.http_status == 413 ||
           r.http_status == 422);
}

/// How long an upstream 429 asked to be left alone (its Retry-After, else a second).
int64_t retry_after_ms(const transfer_result& r) {
  if (r.http_status != 429)
    return 0;
  return r.retry_after_ms > 0 ? r.retry_after_ms : 1'000;
}

void route_attempt(self_ptr self, const ctx_ptr& ctx);

/// An attempt failed before anything reached the caller: back off and try the next
/// deployment, or give up with the last failure.
void retry_or_fail(self_ptr self, const ctx_ptr& ctx, transfer_result failure) {
  auto& st = self->state;
  bool retryable = upstream_at_fault(failure);
  st.last_failure = std::move(failure);
  if (!retryable || st.client_gone ||
      static_cast<int64_t>(st.attempt) >= ctx->actors.routing.max_attempts) {
    auto err = upstream_error(st.last_failure);
    settle(self, ctx, "upstream_error", [=](storage::ledger_result) { fail(self, ctx, err); });
    return;
  }
  // Exponential backoff with full jitter.
  auto base = ctx->actors.routing.backoff_ms << std::min<uint64_t>(st.attempt - 1, 10);
  auto cap = std::min<int64_t>(base, ctx->actors.routing.max_backoff_ms);
  auto delay = cap > 0 ? static_cast<int64_t>(std::hash<std::string>{}(ctx->call.request_id +
                                                                       std::to_string(st.attempt)) %
                                              static_cast<uint64_t>(cap + 1))
                       : 0;
  self->delayed_send(self, std::chrono::milliseconds(delay), restart_atom_v, st.attempt);
}

/// The upstream finished a stream (or failed): settle, then end the response.
void finish_stream(self_ptr self, const ctx_ptr& ctx, transfer_result result) {
  auto& st = self->state;
  bool ok = result.curl_code == 0 && result.http_status >= 200 && result.http_status < 300 &&
            st.stream_error.empty();
  if (!st.response && !ok && !st.client_gone) {
    // Nothing reached the caller yet: another deployment may still answer.
    if (!st.stream_error.empty()) {
      result.curl_code = 0;
      result.http_status = 502;
      result.body =
          json{{"error", {{"message", st.stream_error}, {"code", "upstream_malformed"}}}}.dump();
      st.stream_error.clear();
      st.parser = {};
      st.counted_completion_bytes = 0;
      st.prompt_tokens = st.completion_tokens = -1;
      st.first_token_at.reset();
    }
    report_attempt(self, ctx, false, upstream_at_fault(result), retry_after_ms(result),
                   result.curl_code ? "error" : std::to_string(result.http_status));
    retry_or_fail(self, ctx, std::move(result));
    return;
  }
  report_attempt(self, ctx, ok, !st.client_gone, 0, ok ? "ok" : "broken");
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
  settle(self, ctx, status, [=](storage::ledger_result r) {
    auto& now = self->state;
    if (!now.client_gone) {
      // A successful stream with no event at all is still a well-formed stream.
      if (!now.response)
        open_stream(self, ctx);
      if (ok && is_durable(r))
        now.response->append_chunk(std::string("data: [DONE]\n\n"));
      else if (ok)
        // [DONE] only once the charge is durable: without it the stream ends in an error.
        write_chunk(self, "data: " + json{{"error", unbilled_json()}}.dump() + "\n\n");
      now.response->done();
      count_response(ctx->req->header().path(), 200);
    }
    end_request(self);
  });
}

/// The upstream answered a buffered call: settle, then answer.
void finish_buffered(self_ptr self, const ctx_ptr& ctx, transfer_result result) {
  auto& st = self->state;
  bool ok = result.curl_code == 0 && result.http_status >= 200 && result.http_status < 300;
  auto reading = ok ? schemas::read_answer(result.body) : schemas::answer_reading{};
  if (ok && !reading.object) {
    ok = false;
    result.http_status = 502;
    result.body =
        R"({"error":{"message":"the upstream sent a malformed answer","code":"upstream_malformed"}})";
  }
  if (!ok) {
    report_attempt(self, ctx, false, upstream_at_fault(result), retry_after_ms(result),
                   result.curl_code ? "error" : std::to_string(result.http_status));
    retry_or_fail(self, ctx, std::move(result));
    return;
  }
  st.first_token_at = std::chrono::steady_clock::now();
  report_attempt(self, ctx, true, true, 0, "ok");
  take_reading(st, reading);
  if (st.prompt_tokens < 0)
    st.prompt_tokens = ctx->call.prompt_tokens;
  settle(self, ctx, "ok", [=, body = std::move(result.body)](storage::ledger_result r) mutable {
    if (!is_durable(r)) {
      // No answer without its charge: the call ends unbilled and unanswered.
      fail(self, ctx, unbilled());
      return;
    }
    auto headers = rate_header_list(self->state.admitted.headers);
    headers.emplace_back("x-tollgate-request-id", ctx->call.request_id);
    if (r.status == storage::apply_status::committed)
      headers.emplace_back("x-tollgate-cost", std::to_string(-r.entry.amount));
    ctx->answered = true;
    send_json(ctx->req, 200, std::move(body), ctx->call.echo_id, headers);
    end_request(self);
  });
}

int64_t pick_timeout(int64_t requested, int64_t deployment) {
  return requested > 0 ? requested : deployment;
}

void call_upstream(self_ptr self, const ctx_ptr& ctx) {
  auto& st = self->state;
  st.step = phase::calling;
  ++st.attempt;
  st.attempt_open = true;
  st.transfer_known = false;
  st.tried.push_back(st.route.deployment);
  st.upstream_started = std::chrono::steady_clock::now();
  gateway_metrics::global().in_flight.at().add(1);
  upstream_call uc{ctx->call.request_id,
                   ctx->call.path,
                   upstream_body(*ctx, st.route, st.hold),
                   ctx->call.stream,
                   st.attempt,
                   caf::actor_cast<caf::actor>(self),
                   st.route.connect_ms,
                   pick_timeout(ctx->call.total_timeout_ms, st.route.total_ms),
                   pick_timeout(ctx->call.first_token_timeout_ms, st.route.first_token_ms),
                   pick_timeout(ctx->call.idle_timeout_ms, st.route.idle_ms)};
  auto attempt = st.attempt;
  self->request(st.route.provider_actor, caf::infinite, complete_atom_v, std::move(uc))
      .then(
          [=](uint64_t id) {
            auto& now = self->state;
            if (now.attempt != attempt)
              return;
            now.transfer_id = id;
            now.transfer_known = true;
            // The caller left while the call was being placed.
            if (now.client_gone)
              cancel_transfer(self, ctx);
          },
          [=](caf::error& err) {
            if (self->state.attempt != attempt)
              return;
            report_attempt(self, ctx, false, true, 0, "unavailable");
            transfer_result failure;
            failure.curl_code = 7; // as if the upstream could not be reached
            failure.error = to_string(err);
            retry_or_fail(self, ctx, std::move(failure));
          });
}

/// Asks the router for a deployment for the next attempt.
void route_attempt(self_ptr self, const ctx_ptr& ctx) {
  auto& st = self->state;
  route_request rr{ctx->call.model, st.admitted.environment, ctx->call.fallback_models, st.tried,
                   st.attempt > 0};
  self->request(ctx->actors.router, caf::infinite, route_atom_v, std::move(rr))
      .then(
          [=](route_plan& plan) {
            self->state.route = std::move(plan);
            call_upstream(self, ctx);
          },
          [=](caf::error& err) {
            auto& now = self->state;
            auto api = api_failure_of(err);
            // Out of deployments after an upstream failure: answer that failure.
            if (now.attempt > 0 && api.code != "model_not_found")
              api = upstream_error(now.last_failure);
            settle(self, ctx, "upstream_error",
                   [=](storage::ledger_result) { fail(self, ctx, api); });
          });
}

/// Asks the key's actor to admit the call (directly when `direct` and it is known to be
/// alive here, else through the directory); a key actor passivated meanwhile is retried.
void admit(self_ptr self, const ctx_ptr& ctx, int attempts, bool direct = true);

void hold_credits(self_ptr self, const ctx_ptr& ctx) {
  auto& st = self->state;
  st.step = phase::holding;
  const auto& call = ctx->call;
  hold_request hr{call.request_id, st.route.price, call.prompt_tokens,
                  call.max_tokens, call.choices,   st.route.max_output_tokens};
  if (call.path == "embeddings")
    hr.default_max_tokens = 0;
  auto answered = std::make_shared<bool>(false);
  auto refused = [=](const caf::error& err) {
    // The routed attempt never started: give its slot back to the router.
    auto& now = self->state;
    stop_awaiting_user(self);
    self->send(ctx->actors.router, outcome_atom_v,
               call_outcome{now.route.deployment, false, false, 0, 0, false});
    // The user actor ended (passivated, or its node left) or is handing over to another
    // node: admit again after a moment, which finds the user where it lives then.
    if (user_moving(err) && now.readmissions < max_readmissions) {
      ++now.readmissions;
      now.step = phase::admitting;
      self->delayed_send(self, readmission_delay, admit_atom_v);
      return;
    }
    fail(self, ctx, api_failure_of(err));
  };
  if (st.user_down) {
    refused(caf::make_error(caf::sec::request_receiver_down));
    return;
  }
  await_user(self, [=] {
    if (!std::exchange(*answered, true))
      refused(caf::make_error(caf::sec::request_receiver_down));
  });
  self->request(st.admitted.user, answer_limit(st.admitted.user, settle_timeout), hold_atom_v,
                std::move(hr))
      .then(
          [=](hold_grant& grant) {
            if (std::exchange(*answered, true))
              return;
            stop_awaiting_user(self);
            self->state.hold = grant;
            call_upstream(self, ctx);
          },
          [=](caf::error& err) {
            if (!std::exchange(*answered, true))
              refused(err);
          });
}

/// Routes the first attempt; the hold is sized by that deployment's model price.
void route_model(self_ptr self, const ctx_ptr& ctx) {
  auto& st = self->state;
  st.step = phase::routing;
  route_request rr{ctx->call.model, st.admitted.environment, ctx->call.fallback_models, {}, false};
  self->request(ctx->actors.router, caf::infinite, route_atom_v, std::move(rr))
      .then(
          [=](route_plan& plan) {
            self->state.route = std::move(plan);
            hold_credits(self, ctx);
          },
          [=](caf::error& err) { fail(self, ctx, api_failure_of(err)); });
}

void admit(self_ptr self, const ctx_ptr& ctx, int attempts, bool direct) {
  const auto& call = ctx->call;
  admission_request ar{call.client_ip, call.model,
                       call.prompt_tokens + call.max_tokens * call.choices};
  ar.again = self->state.readmissions > 0;
  auto admitted = [=](admission& a) {
    stop_awaiting_user(self); // admitted again: the user of this admission is awaited next
    self->state.admitted = std::move(a);
    self->state.user_down = false;
    route_model(self, ctx);
  };
  // The key's actor, when it is alive on this node: asked directly, without the directory.
  auto key = direct && ctx->actors.keys ? ctx->actors.keys->find(call.key_hash) : caf::actor{};
  if (key) {
    self->request(key, caf::infinite, admit_atom_v, std::move(ar))
        .then(admitted, [=](caf::error& err) {
          // Ended meanwhile (passivated, or its shard moved): the directory knows more.
          if (is_receiver_gone(err))
            admit(self, ctx, attempts, false);
          else
            fail(self, ctx, api_failure_of(err));
        });
    return;
  }
  self->request(ctx->actors.directory, caf::infinite, admit_atom_v, call.key_hash, std::move(ar))
      .then(admitted, [=](caf::error& err) {
        if (attempts > 1 && is_receiver_gone(err))
          admit(self, ctx, attempts - 1, false);
        else
          fail(self, ctx, api_failure_of(err));
      });
}

} // namespace

caf::behavior proxy_request(caf::stateful_actor<proxy_request_state>* self, request_handle req,
                            proxy_call call, proxy_actors actors) {
  auto ctx = std::make_shared<context>(context{std::move(req), std::move(call), std::move(actors)});
  self->state.counted = std::make_unique<active_call>(ctx->actors.active_calls);
  // CAF ends an actor that nobody holds a handle to any more ("unreachable") without running
  // another of its handlers, and one whose handler threw: such a call is answered here rather
  // than left waiting. (Actors that end with a request of this one unanswered fail it, so
  // this is not expected to happen.)
  self->attach_functor([ctx](const caf::error& reason) {
    if (!reason || ctx->answered)
      return;
    spdlog::error(json{{"msg", "call ended without an answer"},
                       {"request_id", ctx->call.request_id},
                       {"reason", caf::to_string(reason)}}
                      .dump());
    send_error(ctx->req, schemas::internal_error("the gateway lost this call; retry it"),
               ctx->call.echo_id);
  });
  self->set_down_handler([=](caf::down_msg& msg) {
    auto& st = self->state;
    if (msg.source != st.admitted.user.address())
      return;
    st.user_down = true;
    if (st.on_user_down) {
      auto act = std::move(st.on_user_down);
      stop_awaiting_user(self);
      act();
    }
  });
  admit(self, ctx, 2);
  return {
      [=](admit_atom) {
        if (self->state.step == phase::admitting)
          admit(self, ctx, 2);
      },
      [=](settle_atom) {
        auto& st = self->state;
        if (st.step == phase::settling && st.settle_late)
          st.settle_late();
      },
      [=](upstream_data_atom, uint64_t attempt, std::string& bytes) {
        auto& st = self->state;
        // News of an attempt that already ended (timed out, cancelled) is stale.
        if (st.step != phase::calling || attempt != st.attempt || !st.attempt_open)
          return;
        for (auto& event : st.parser.feed(bytes)) {
          on_event(self, ctx, event);
          if (!st.stream_error.empty())
            break;
        }
      },
      [=](upstream_done_atom, uint64_t attempt, transfer_result& result) {
        auto& st = self->state;
        if (st.step != phase::calling || attempt != st.attempt || !st.attempt_open)
          return;
        st.upstream_ended = std::chrono::steady_clock::now();
        if (ctx->call.stream)
          finish_stream(self, ctx, std::move(result));
        else
          finish_buffered(self, ctx, std::move(result));
      },
      [=](restart_atom, uint64_t failed_attempt) {
        auto& st = self->state;
        if (st.step == phase::calling && failed_attempt == st.attempt)
          route_attempt(self, ctx);
      },
      [=](keepalive_atom) {
        auto& st = self->state;
        if (st.step != phase::calling || st.client_gone)
          return;
        auto interval = std::chrono::seconds(ctx->actors.routing.keepalive_seconds);
        if (st.response && std::chrono::steady_clock::now() - st.last_write >= interval)
          write_chunk(self, ": keep-alive\n\n");
        self->delayed_send(self, interval, keepalive_atom_v);
      },
      [=](written_atom, bool ok) {
        auto& st = self->state;
        if (st.client_gone)
          return;
        if (ok) {
          flush_stream(self); // the pieces that came during the last write (none after done)
          return;
        }
        // The client left mid-stream: stop the upstream; what it produced is still charged
        // when the cancelled transfer reports its end.
        st.client_gone = true;
        if (st.step == phase::calling && st.transfer_known)
          cancel_transfer(self, ctx);
      },
  };
}

} // namespace tollgate::http
