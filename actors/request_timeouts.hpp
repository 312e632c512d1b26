#pragma once

#include <caf/scheduled_actor.hpp>

namespace tollgate {

/// Takes the timeout of the request whose answer `self` is handling off the actor clock.
/// CAF 0.17 leaves a request's timeout there after the answer came, until it comes due (it is
/// then dropped as stale), holding about 200 bytes with the clock's bookkeeping. An actor that
/// lives long and asks often with a timeout piles them up: the directory kept one for 60 s per
/// relayed call. Call it in both handlers of `request(...).then(...)`; after a timeout it
/// finds nothing.
inline void forget_request_timeout(caf::scheduled_actor* self) {
  self->clock().cancel_request_timeout(self, self->current_message_id());
}

} // namespace tollgate
