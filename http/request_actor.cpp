#include "http/request_actor.hpp"

namespace tollgate::http {

namespace {

constexpr auto admin_timeout = std::chrono::seconds(60);

} // namespace

caf::behavior request_actor(caf::stateful_actor<request_state>* self, request_handle req,
                            std::string request_id, caf::actor target, caf::message command) {
  self->request(target, admin_timeout, std::move(command))
      .then(
          [=](http_reply& reply) {
            header_list headers;
            if (reply.replayed)
              headers.emplace_back("idempotent-replayed", "true");
            send_json(req, reply.status, std::move(reply.body), request_id, headers);
            self->quit();
          },
          [=](caf::error& err) {
            send_error(req, api_failure_of(err), request_id);
            self->quit();
          });
  // The actor lives for its one pending request and quits once it has answered.
  return {[](caf::ok_atom) {}};
}

} // namespace tollgate::http
