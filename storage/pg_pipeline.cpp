#include "storage/pg_pipeline.hpp"

#include <algorithm>
#include <atomic>
#include <cctype>

#include <libpq-fe.h>
#include <soci/postgresql/soci-postgresql.h>

#include "schemas/numbers.hpp"

namespace tollgate::storage {

namespace {

pg_conn* connection_of(soci::session& sql) {
  if (sql.get_backend_name() != "postgresql")
    throw soci::soci_error("pg_pipeline: not a PostgreSQL session");
  return static_cast<soci::postgresql_session_backend*>(sql.get_backend())->conn_;
}

[[noreturn]] void fail(pg_conn* conn, std::string_view what) {
  std::string message = PQerrorMessage(conn);
  throw soci::soci_error("postgresql: " + std::string(what) + ": " + message);
}

} // namespace

/// Reads the answers up to the next sync: a statement's into `answers`, a preparation's
/// marked confirmed if it succeeded. Returns whether the sync came; the first error, if
/// any, in `error`.
bool pg_pipeline::read_to_sync(std::vector<pg_answer>& answers, first_error& error) {
  std::size_t item = 0;
  int nothing = 0;
  for (;;) {
    PGresult* r = PQgetResult(conn_);
    if (r == nullptr) {
      // One null ends each item's answers; two in a row mean nothing more will come (the
      // connection is gone).
      if (++nothing > 1 || PQstatus(conn_) != CONNECTION_OK)
        return false;
      ++item;
      continue;
    }
    nothing = 0;
    auto status = PQresultStatus(r);
    if (status == PGRES_PIPELINE_SYNC) {
      PQclear(r);
      return true;
    }
    if (status == PGRES_FATAL_ERROR && error.message.empty()) {
      error.message = PQresultErrorMessage(r);
      const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
      error.sqlstate = state ? state : "";
    } else if (status == PGRES_PIPELINE_ABORTED && error.message.empty()) {
      error.message = "statement skipped after an earlier error";
    }
    if (item < queued_.size() && queued_[item].name == nullptr) {
      answers.emplace_back(r);
      continue;
    }
    if (item < queued_.size())
      queued_[item].confirmed = status == PGRES_COMMAND_OK;
    PQclear(r);
  }
}

void pg_pipeline::forget_queued() {
  // A preparation the server did not confirm did not happen: its owner prepares it again.
  for (auto& q : queued_)
    if (q.name != nullptr && !q.confirmed)
      q.name->clear();
  queued_.clear();
}

namespace {

std::atomic<std::uint64_t> prepared_count{0};

} // namespace

pg_answer::pg_answer(pg_result* result)
    : result_(result, [](pg_result* r) { PQclear(r); }) {}

int pg_answer::rows() const {
  return PQntuples(result_.get());
}

int64_t pg_answer::integer(int row, int column) const {
  if (row >= rows() || column >= PQnfields(result_.get()))
    throw soci::soci_error("postgresql: no such cell in the answer");
  auto value = schemas::parse_number<int64_t>(PQgetvalue(result_.get(), row, column));
  if (!value)
    throw soci::soci_error("postgresql: the answer holds no integer where one was expected");
  return *value;
}

pg_pipeline::pg_pipeline(soci::session& sql)
    : conn_(connection_of(sql)) {
  if (PQenterPipelineMode(conn_) != 1)
    fail(conn_, "cannot enter pipeline mode");
}

pg_pipeline::~pg_pipeline() {
  // Items queued without a sync are left unsent or unanswered only after an error while
  // sending, when the connection is broken. Otherwise hand the connection back.
  bool synced = queued_.empty();
  forget_queued();
  if (synced)
    PQexitPipelineMode(conn_);
}

void pg_pipeline::prepare(std::string& name, std::string_view sql_text) {
  name = "tg_" + std::to_string(++prepared_count);
  auto text = positional_placeholders(sql_text);
  queued_.push_back({&name, false});
  if (PQsendPrepare(conn_, name.c_str(), text.c_str(), 0, nullptr) != 1)
    fail(conn_, "cannot prepare a statement");
}

void pg_pipeline::send(const std::string& name, const pg_params& params) {
  values_.clear();
  for (const auto& v : params.values())
    values_.push_back(v.c_str());
  queued_.push_back({});
  if (PQsendQueryPrepared(conn_, name.c_str(), static_cast<int>(values_.size()), values_.data(),
                          nullptr, nullptr, 0) != 1)
    fail(conn_, "cannot send a statement");
}

void pg_pipeline::send(const char* statement) {
  queued_.push_back({});
  if (PQsendQueryParams(conn_, statement, 0, nullptr, nullptr, nullptr, nullptr, 0) != 1)
    fail(conn_, "cannot send a statement");
}

std::vector<pg_answer> pg_pipeline::sync() {
  if (PQpipelineSync(conn_) != 1)
    fail(conn_, "cannot send a sync");
  const auto expected = static_cast<std::size_t>(std::count_if(
      queued_.begin(), queued_.end(), [](const queued& q) { return q.name == nullptr; }));
  std::vector<pg_answer> answers;
  answers.reserve(expected);
  first_error error;
  bool synced = read_to_sync(answers, error);
  if (!synced)
    fail(conn_, error.message.empty() ? "the connection ended in a pipeline" : error.message);
  forget_queued();
  if (!error.message.empty())
    throw pg_error("postgresql: " + error.message, error.sqlstate);
  if (answers.size() != expected)
    throw soci::soci_error("postgresql: a pipeline of " + std::to_string(expected) +
                           " statements got " + std::to_string(answers.size()) + " answers");
  return answers;
}

std::string positional_placeholders(std::string_view sql_text) {
  std::string out;
  out.reserve(sql_text.size() + 16);
  int next = 1;
  bool quoted = false;
  auto word = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
  for (std::size_t i = 0; i < sql_text.size(); ++i) {
    char c = sql_text[i];
    if (c == '\'')
      quoted = !quoted;
    bool placeholder =
        !quoted && c == ':' && i + 1 < sql_text.size() &&
        (std::isalpha(static_cast<unsigned char>(sql_text[i + 1])) || sql_text[i + 1] == '_') &&
        (i == 0 || sql_text[i - 1] != ':');
    if (!placeholder) {
      out += c;
      continue;
    }
    out += '$';
    out += std::to_string(next++);
    while (i + 1 < sql_text.size() && word(sql_text[i + 1]))
      ++i;
  }
  return out;
}

} // namespace tollgate::storage
