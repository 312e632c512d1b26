#include "actors/storage/redis_worker.hpp"

#include <spdlog/spdlog.h>

#include "actors/thread_name.hpp"

namespace tollgate {

namespace {

using self_ptr = caf::stateful_actor<redis_worker_state>*;

/// Runs `fn` on the connection; on failure logs once per outage and returns `fallback`.
template <class T, class Fn>
T guarded(self_ptr self, T fallback, Fn fn) {
  auto& st = self->state;
  try {
    T out = fn(*st.redis);
    if (st.failing)
      spdlog::info("redis reachable again");
    st.failing = false;
    return out;
  } catch (const storage::redis_error& e) {
    if (!st.failing)
      spdlog::warn("{}; going on without it", e.what());
    st.failing = true;
    return fallback;
  }
}

} // namespace

caf::behavior redis_worker(caf::stateful_actor<redis_worker_state>* self, config::redis_url url) {
  name_this_thread("tg-redis"); // a detached actor is initialized on its own thread
  self->state.redis = std::make_unique<storage::redis_client>(std::move(url));
  return {
      [=](caf::get_atom, const std::string& key) {
        return guarded(self, std::string(), [&](storage::redis_client& r) {
          return r.get(key).value_or(std::string());
        });
      },
      [=](caf::put_atom, const std::string& key, const std::string& value, int64_t ttl_ms) {
        return guarded(self, false, [&](storage::redis_client& r) {
          r.set(key, value, std::chrono::milliseconds(ttl_ms));
          return true;
        });
      },
  };
}

} // namespace tollgate
