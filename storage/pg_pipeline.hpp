#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
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
  /// placeholder, in order) and returns its name, unique in the process. Statements sent
  /// after it, in this pipeline and later ones on the same session, may use it. If this
  /// pipeline fails, the name may not exist: its owner drops the session (as the ledger
  /// writer does after a failed batch), and with it whatever remembers the name.
  std::string prepare(std::string_view sql_text);
  /// Queues the prepared statement `name` with `params`.
  void send(const std::string& name, const pg_params& params);
  /// Queues a statement without parameters, such as BEGIN or COMMIT.
  void send(const char* statement);
  /// Ends what was queued with a sync, waits for the server, and returns one answer per
  /// statement sent since the last sync (preparations have none), in order. Throws
  /// soci::soci_error with the server's message if any of them failed: then none of them
  /// took effect, unless an explicit BEGIN keeps the transaction open (it is then aborted:
  /// roll it back).
  std::vector<pg_answer> sync();

private:
  pg_conn* conn_;
  std::vector<bool>
      answered_; ///< Per item queued since the last sync: a statement's answer is kept.
};

/// SOCI's `:name` placeholders as PostgreSQL's `$1`, `$2`, ... in order of appearance (each
/// occurrence its own parameter, as SOCI binds them); `::` casts and quoted text are kept.
std::string positional_placeholders(std::string_view sql_text);

} // namespace tollgate::storage
