#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace tollgate::schemas {

/// One server-sent event as it arrived: its raw bytes (to pass on untouched) and the
/// joined value of its `data:` lines.
struct sse_event {
  std::string raw;
  std::string data;
};

/// Splits a byte stream, arriving in arbitrary pieces, into server-sent events.
class sse_parser {
public:
  /// Feeds bytes; returns the events completed by them, in order.
  std::vector<sse_event> feed(std::string_view bytes);
  /// Bytes of an event not yet completed.
  const std::string& pending() const noexcept { return buffer_; }

private:
  std::string buffer_;
};

} // namespace tollgate::schemas
