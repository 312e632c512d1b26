#pragma once

#include <memory>

#include <spdlog/formatter.h>

namespace tollgate::http {

/// Formats every log line as one JSON object: {"ts","level","msg"}. A message that is itself
/// a JSON object is merged in field by field, so that structured events (with request_id,
/// model, status, ...) stay structured.
class json_log_formatter final : public spdlog::formatter {
public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override;
  std::unique_ptr<spdlog::formatter> clone() const override;
};

/// Sends spdlog's default logger to stderr in JSON lines.
void use_json_logs();

} // namespace tollgate::http
