#pragma once

#include <atomic>
#include <cstdint>

namespace tollgate::http {

/// When freed buffers go back to the system at once: from the moment more than `above` bytes
/// of them are live until fewer than `below` are (below < above, so that a count hovering
/// near one bound does not flip it on every allocation). Safe to update from any thread.
class purge_switch {
public:
  purge_switch(int64_t below, int64_t above)
      : below_(below)
      , above_(above) {}

  /// The live bytes are now `live`: true if that turned purging on or off (see `on`).
  bool update(int64_t live) {
    if (live > above_ && !on_.load(std::memory_order_relaxed))
      return !on_.exchange(true);
    if (live < below_ && on_.load(std::memory_order_relaxed))
      return on_.exchange(false);
    return false;
  }

  bool on() const { return on_.load(std::memory_order_relaxed); }

private:
  int64_t below_;
  int64_t above_;
  std::atomic<bool> on_{false};
};

} // namespace tollgate::http
