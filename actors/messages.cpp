#include "actors/messages.hpp"

namespace tollgate {

namespace {

const caf::atom_value api_category = caf::atom("tollgate");

} // namespace

caf::error make_api_failure(schemas::api_error err) {
  auto code = static_cast<uint8_t>(err.status / 100);
  return caf::error(code, api_category, caf::make_message(std::move(err)));
}

schemas::api_error api_failure_of(const caf::error& err) {
  if (err.category() == api_category && err.context().match_elements<schemas::api_error>())
    return err.context().get_as<schemas::api_error>(0);
  if (err.category() == caf::atom("system")) {
    switch (static_cast<caf::sec>(err.code())) {
    case caf::sec::request_timeout:
      return {504, "server_error", "timeout", "the gateway timed out on this request", {}, {}};
    case caf::sec::request_receiver_down:
      return schemas::unavailable("a gateway component is restarting; retry the request");
    default:
      break;
    }
  }
  return schemas::internal_error();
}

caf::error shard_moving() {
  return make_api_failure(schemas::unavailable(
      "this account is moving between gateway nodes; retry in a moment", "shard_moving"));
}

bool lives_here(const caf::actor& target) {
  return target && target.node() == target->home_system().node();
}

caf::duration answer_limit(const caf::actor& target, std::chrono::milliseconds limit) {
  if (lives_here(target))
    return caf::infinite;
  return caf::duration{limit};
}

bool is_receiver_gone(const caf::error& err) {
  return err.category() == caf::atom("system") &&
         static_cast<caf::sec>(err.code()) == caf::sec::request_receiver_down;
}

} // namespace tollgate
