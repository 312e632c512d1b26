#include "schemas/sse.hpp"

namespace tollgate::schemas {

namespace {

/// The end of the first event in `buf` (after its blank line), or npos.
std::size_t event_end(std::string_view buf, std::size_t from) {
  for (std::size_t i = from; i < buf.size(); ++i) {
    if (buf[i] != '\n')
      continue;
    if (i + 1 < buf.size() && buf[i + 1] == '\n')
      return i + 2;
    if (i + 2 < buf.size() && buf[i + 1] == '\r' && buf[i + 2] == '\n')
      return i + 3;
  }
  return std::string_view::npos;
}

std::string data_of(std::string_view event) {
  std::string data;
  bool first = true;
  while (!event.empty()) {
    auto nl = event.find('\n');
    auto line = event.substr(0, nl);
    event.remove_prefix(nl == std::string_view::npos ? event.size() : nl + 1);
    if (!line.empty() && line.back() == '\r')
      line.remove_suffix(1);
    if (!line.starts_with("data:"))
      continue; // comments (": ...") and other fields
    line.remove_prefix(5);
    if (!line.empty() && line.front() == ' ')
      line.remove_prefix(1);
    if (!first)
      data.push_back('\n');
    data.append(line);
    first = false;
  }
  return data;
}

} // namespace

std::vector<sse_event> sse_parser::feed(std::string_view bytes) {
  std::vector<sse_event> out;
  // Only the tail could complete an event: an old blank line would have ended one already.
  std::size_t scan_from = buffer_.size() >= 2 ? buffer_.size() - 2 : 0;
  buffer_.append(bytes);
  std::size_t start = 0;
  for (;;) {
    auto end = event_end(buffer_, std::max(start, scan_from));
    if (end == std::string_view::npos)
      break;
    std::string_view raw(buffer_.data() + start, end - start);
    out.push_back({std::string(raw), data_of(raw)});
    start = end;
  }
  buffer_.erase(0, start);
  return out;
}

} // namespace tollgate::schemas
