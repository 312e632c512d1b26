#pragma once

#include <atomic>

namespace tollgate::http {

/// Keeps at most one write of a streamed response in flight. The pieces a call appends while
/// its write is under way wait in the response and leave together, as one write, when that
/// write ends. A client that keeps up sees each piece written at once; when the gateway
/// falls behind (a burst of thousands of streams on two cores), the pieces of a stream wait
/// as bytes of its response rather than as a write each: RESTinio's write group, its
/// completion handler and asio's operations cost about a kilobyte per write, and 10,000
/// streams had 58,000 writes waiting at once (docs/performance.md).
///
/// The call's actor says `appended`; the write's completion handler, on whichever thread
/// runs it, says `written`. Safe to use from both at once.
class write_pacer {
public:
  /// A piece was appended to the response: true if no write is in flight, so the caller
  /// writes now (and one is in flight from then on); false if the piece leaves with the
  /// write that follows the one in flight.
  bool appended() {
    int now = state_.load();
    for (;;) {
      if (now == pending)
        return false;
      int next = now == idle ? in_flight : pending;
      if (state_.compare_exchange_weak(now, next))
        return now == idle;
    }
  }

  /// The write in flight ended: true if pieces were appended meanwhile, so the actor must be
  /// told to write them (and one is in flight from then on); false if none wait.
  bool written() {
    int now = state_.load();
    for (;;) {
      int next = now == pending ? in_flight : idle;
      if (state_.compare_exchange_weak(now, next))
        return now == pending;
    }
  }

private:
  static constexpr int idle = 0;      ///< no write in flight
  static constexpr int in_flight = 1; ///< a write in flight, nothing appended since
  static constexpr int pending = 2;   ///< a write in flight, and pieces wait for the next
  std::atomic<int> state_{idle};
};

} // namespace tollgate::http
