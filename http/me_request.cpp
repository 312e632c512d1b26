#include "http/me_request.hpp"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "actors/messages.hpp"
#include "http/consumer_auth.hpp"
#include "schemas/records_json.hpp"

namespace tollgate::http {

namespace {

nlohmann::json me_json(const key_grant& grant, const user_view& view) {
  const auto& key = grant.key;
  const auto& user = view.user;
  auto key_body = schemas::key_json(key);
  key_body.erase("user_id");
  key_body.erase("revoked_at");
  return {{"object", "me"},
          {"user",
           {{"id", user.id},
            {"name", user.name},
            {"email", user.email},
            {"limits", schemas::limits_json(user.limits)}}},
          {"balance", user.balance},
          {"available", view.available},
          {"held", view.held},
          {"key", std::move(key_body)}};
}

/// The model list, narrowed to what the key's allowlist admits.
nlohmann::json models_for_key(const schemas::key_record& key, const std::string& list) {
  auto doc = nlohmann::json::parse(list);
  if (key.models.empty())
    return doc;
  auto& data = doc["data"];
  nlohmann::json allowed = nlohmann::json::array();
  for (auto& m : data)
    if (std::find(key.models.begin(), key.models.end(), m.value("id", "")) != key.models.end())
      allowed.push_back(std::move(m));
  data = std::move(allowed);
  return doc;
}

} // namespace

caf::behavior me_request(caf::stateful_actor<me_request_state>* self, request_handle req,
                         consumer_call call, account_view what, caf::actor directory,
                         caf::actor router, caf::actor admin, usage_query usage) {
  auto fail = [=](const schemas::api_error& err) {
    send_error(req, err, call.request_id);
    self->quit();
  };
  authenticate(
      self, directory, call.key_hash, call.client_ip,
      [=](key_grant grant) {
        if (what == account_view::usage) {
          // A key sees its own user's usage, never another's.
          auto q = usage;
          q.user_id = grant.key.user_id;
          self->request(admin, actor_timeout, usage_report_atom_v, std::move(q))
              .then(
                  [=](http_reply& r) {
                    send_json(req, r.status, std::move(r.body), call.request_id);
                    self->quit();
                  },
                  [=](caf::error& err) { fail(api_failure_of(err)); });
          return;
        }
        if (what == account_view::models) {
          self->request(router, actor_timeout, models_atom_v)
              .then(
                  [=](const std::string& list) {
                    send_json(req, 200, models_for_key(grant.key, list).dump(), call.request_id);
                    self->quit();
                  },
                  [=](caf::error& err) { fail(api_failure_of(err)); });
          return;
        }
        self->request(grant.user, actor_timeout, caf::get_atom_v)
            .then(
                [=](user_view& view) {
                  if (view.user.suspended) {
                    fail(schemas::forbidden("this account is suspended", "user_suspended"));
                    return;
                  }
                  send_json(req, 200, me_json(grant, view).dump(), call.request_id);
                  self->quit();
                },
                [=](caf::error& err) { fail(api_failure_of(err)); });
      },
      fail);
  // The actor lives for its pending requests and quits once it has answered.
  return {[](caf::ok_atom) {}};
}

} // namespace tollgate::http
