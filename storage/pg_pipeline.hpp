#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <soci/soci.h>

struct pg_conn;
struct pg_result;

namespace tollgate::storage {

/// The text values of a prepared statement's parameters, in their order in its SQL.
class pg_params {
public:
  void add(const std::string& text) { values_.push_back(text); }
  void add(int64_t number) { values_.push_back(std::to_string(number)); }
  void clear() { values_.clear(); }
  const std::vector<std::string>& values() const { return values_; }

private:
  std::vector<std::string> values_;
};

/// What the server answered to one statement of a pipeline.
class pg_answer {
public:
  explicit pg_answer(pg_result* result);
  int rows() const;
  /// The integer in a cell; throws soci::soci_error if it is not one.
  int64_t integer(int row, int column) const;

private:
  std::unique_ptr<pg_result, void (*)(pg_result*)> result_;
};

/// What the server said when a statement of a pipeline failed, with its SQLSTATE.
class pg_error : public soci::soci_error {
public:
  pg_error(const std::string& message, std::string sqlstate)
      : soci::soci_error(message)
      , sqlstate_(std::move(sqlstate)) {}
  const std::string& sqlstate() const { return sqlstate_; }

private:
  std::string sqlstate_;
};

/// libpq's pipeline mode on the connection of a SOCI PostgreSQL session: statements are sent
/// back to back and their answers read together after a sync, so a batch of statements
/// costs the committer one round trip to the server instead of one each. Statements sent
/// between two syncs with no explicit BEGIN run as one transaction, committed at the sync
/// (PostgreSQL's implicit transaction of the extended protocol): all of them or none.
///
/// While a pipeline is open, nothing else may use the session; its destructor hands the
/// connection back to SOCI.
class pg_pipeline {
public:
  explicit pg_pipeline(soci::session& sql);
  ~pg_pipeline();
  pg_pipeline(const pg_pipeline&) = delete;
  pg_pipeline& operator=(const pg_pipeline&) = delete;

  /// Queues the preparation of `sql_text` (SOCI's `:name` placeholders: one parameter per
  /// placeholder, in order) under a name unique in the process, stored in `name`, which
  /// its owner keeps for later pipelines on the same session; statements may use it right
  /// after. If the server does not confirm the preparation at the sync (an earlier
  /// statement failed, or the connection did), `name` is cleared again: the owner prepares
  /// it anew next time. `name` must outlive the pipeline.
  void prepare(std::string& name, std::string_view sql_text);
  /// Queues the prepared statement `name` with `params`.
  void send(const std::string& name, const pg_params& params);
  /// Queues a statement without parameters, such as BEGIN or COMMIT.
  void send(const char* statement);
  /// Ends what was queued with a sync, waits for the server, and returns one answer per
  /// statement sent since the last sync (preparations have none), in order. Throws
  /// pg_error with the server's message if any of them failed: then none of them took
  /// effect, unless an explicit BEGIN keeps the transaction open (it is then aborted: roll
  /// it back). Throws soci::soci_error if the connection fails.
  std::vector<pg_answer> sync();

private:
  /// Something queued since the last sync: a statement, or a preparation.
  struct queued {
    std::string* name = nullptr; ///< A preparation's: the owner's copy of its name.
    bool confirmed = false;      ///< The server prepared it.
  };
  struct first_error {
    std::string message; ///< Empty: none.
    std::string sqlstate;
  };

  bool read_to_sync(std::vector<pg_answer>& answers, first_error& error);
  void forget_queued();

  pg_conn* conn_;
  std::vector<queued> queued_;
  std::vector<const char*> values_; ///< The parameters of the statement being sent, reused.
};

/// SOCI's `:name` placeholders as PostgreSQL's `$1`, `$2`, ... in order of appearance (each
/// occurrence its own parameter, as SOCI binds them); `::` casts and quoted text are kept.
std::string positional_placeholders(std::string_view sql_text);

} // namespace tollgate::storage
