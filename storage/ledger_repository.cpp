#include "storage/ledger_repository.hpp"

#include "storage/database.hpp"

namespace tollgate::storage {

namespace {

constexpr const char* select_balance = "SELECT balance FROM accounts WHERE user_id = :u";

constexpr const char* select_entry =
    "SELECT id, user_id, request_id, kind, amount, balance_after, reason, actor, created_at "
    "FROM ledger_entries ";

void bind_entry(soci::statement& st, schemas::ledger_entry& e) {
  st.exchange(soci::into(e.id));
  st.exchange(soci::into(e.user_id));
  st.exchange(soci::into(e.request_id));
  st.exchange(soci::into(e.kind));
  st.exchange(soci::into(e.amount));
  st.exchange(soci::into(e.balance_after));
  st.exchange(soci::into(e.reason));
  st.exchange(soci::into(e.actor));
  st.exchange(soci::into(e.created_at));
}

/// Executes a kept statement that yields at most one row and steps it to its end: SQLite
/// refuses to commit while a statement is still in progress. Returns whether a row came.
bool run_to_end(soci::statement& st) {
  if (!st.execute(true))
    return false;
  while (st.fetch()) {
  }
  return true;
}

/// PostgreSQL: the lookup of a change's request id, the account update (unless the request
/// id has an entry, or the floor forbids it) and the entry insert, as CTEs of one statement
/// that answers the new entry's id (0 if none), the new balance and the earlier entries.
/// Parameter names are unique, as the usage insert before them has its own.
constexpr const char* charge_ctes =
    "prior AS (SELECT 1 FROM ledger_entries WHERE request_id = :lr), "
    "upd AS (UPDATE accounts SET balance = balance + :la, updated_at = :lt "
    "WHERE user_id = :lu AND balance + :la2 >= :lf "
    "AND NOT EXISTS (SELECT 1 FROM prior) RETURNING balance), "
    "ins AS (INSERT INTO ledger_entries (user_id, request_id, kind, amount, "
    "balance_after, reason, actor, created_at) SELECT :lu2, :lr2, :lk, "
    "CAST(:la3 AS BIGINT), balance, :lreason, :lactor, CAST(:lt2 AS BIGINT) "
    "FROM upd RETURNING id) "
    "SELECT COALESCE((SELECT id FROM ins), 0), "
    "COALESCE((SELECT balance FROM upd), 0), (SELECT COUNT(*) FROM prior)";

/// The parameters of charge_ctes, in their order there.
void add_charge(pg_params& params, const schemas::ledger_entry& change, int64_t floor) {
  params.add(change.request_id);
  params.add(change.amount);
  params.add(change.created_at);
  params.add(change.user_id);
  params.add(change.amount);
  params.add(floor);
  params.add(change.user_id);
  params.add(change.request_id);
  params.add(change.kind);
  params.add(change.amount);
  params.add(change.reason);
  params.add(change.actor);
  params.add(change.created_at);
}

} // namespace

/// The statements of `apply`, bound once to the fields below.
struct ledger_repository::prepared {
  explicit prepared(soci::session& sql)
      : find(sql)
      // No RETURNING here: SQLite gathers a RETURNING statement's rows in a temporary b-tree
      // that it opens and closes each time, which made the update and the insert cost half
      // as much again as with the balance read back and the id taken from the connection.
      , update((sql.prepare << "UPDATE accounts SET balance = balance + :a, updated_at = :t "
                               "WHERE user_id = :u AND balance + :a2 >= :f",
                soci::use(change.amount), soci::use(change.created_at), soci::use(change.user_id),
                soci::use(change.amount), soci::use(floor)))
      , current_balance(
            (sql.prepare << select_balance, soci::use(change.user_id), soci::into(balance_after)))
      , insert((sql.prepare << "INSERT INTO ledger_entries (user_id, request_id, kind, amount, "
                               "balance_after, reason, actor, created_at) VALUES (:u, :r, :k, :a, "
                               ":b, :reason, :actor, :t)",
                soci::use(change.user_id), soci::use(change.request_id), soci::use(change.kind),
                soci::use(change.amount), soci::use(balance_after), soci::use(change.reason),
                soci::use(change.actor), soci::use(change.created_at))) {
    bind_entry(find, earlier);
    find.exchange(soci::use(change.request_id));
    prepare_bound(find, std::string(select_entry) + "WHERE request_id = :r");
  }

  /// The change moved nothing: the user's balance does not allow it, or there is no account.
  apply_outcome refused() {
    return {run_to_end(current_balance) ? apply_status::insufficient : apply_status::no_account,
            change};
  }

  schemas::ledger_entry change; ///< The change being applied (bound by `use`).
  int64_t floor = 0;
  schemas::ledger_entry earlier; ///< An entry found by request id.
  int64_t balance_after = 0;
  soci::statement find;
  soci::statement update;
  soci::statement current_balance; ///< Of the change's user, into `balance_after`.
  soci::statement insert;
};

ledger_repository::ledger_repository(soci::session& sql)
    : sql_(sql)
    , postgres_(sql.get_backend_name() == "postgresql") {}

ledger_repository::~ledger_repository() = default;

ledger_repository::prepared& ledger_repository::statements() {
  if (!prepared_)
    prepared_ = std::make_unique<prepared>(sql_);
  return *prepared_;
}

apply_outcome ledger_repository::apply(const schemas::ledger_entry& change, int64_t floor) {
  if (postgres_) {
    std::vector<pg_answer> answers;
    {
      pg_pipeline pipe(sql_);
      send_apply(pipe, change, floor, nullptr);
      answers = pipe.sync();
    } // before `applied`, which may run statements of SOCI's
    return applied(answers.front(), change);
  }
  // SQLite: the writer's transaction holds the database, so the balance read back is the
  // one the update left.
  auto& p = statements();
  p.change = change;
  p.floor = floor;
  if (run_to_end(p.find))
    return {apply_status::replayed, p.earlier};
  p.update.execute(true);
  if (p.update.get_affected_rows() != 1)
    return p.refused();
  run_to_end(p.current_balance);
  p.insert.execute(true);
  long long id = 0;
  sql_.get_last_insert_id("ledger_entries", id);
  apply_outcome out{apply_status::committed, change};
  out.entry.balance_after = p.balance_after;
  out.entry.id = id;
  return out;
}

void ledger_repository::send_apply(pg_pipeline& pipe, const schemas::ledger_entry& change,
                                   int64_t floor, const usage_record* usage) {
  // Not statements(): SOCI cannot prepare while the pipeline holds the connection.
  auto& name = usage ? pipelined_charge_with_usage_ : pipelined_charge_;
  if (name.empty())
    pipe.prepare(name, usage
                           ? std::string("WITH usage AS (") + insert_usage_sql + "), " + charge_ctes
                           : std::string("WITH ") + charge_ctes);
  pipelined_params_.clear();
  if (usage)
    add_usage(pipelined_params_, *usage);
  add_charge(pipelined_params_, change, floor);
  pipe.send(name, pipelined_params_);
}

apply_outcome ledger_repository::applied(const pg_answer& answer,
                                         const schemas::ledger_entry& change) {
  if (int64_t id = answer.integer(0, 0); id > 0) {
    apply_outcome out{apply_status::committed, change};
    out.entry.balance_after = answer.integer(0, 1);
    out.entry.id = id;
    return out;
  }
  auto& p = statements();
  p.change = change;
  if (answer.integer(0, 2) > 0 && run_to_end(p.find))
    return {apply_status::replayed, p.earlier};
  return p.refused();
}

std::optional<schemas::ledger_entry>
ledger_repository::find_by_request(const std::string& request_id) {
  schemas::ledger_entry e;
  soci::statement st(sql_);
  bind_entry(st, e);
  st.exchange(soci::use(request_id));
  prepare_bound(st, std::string(select_entry) + "WHERE request_id = :r");
  if (!st.execute(true))
    return std::nullopt;
  return e;
}

std::vector<schemas::ledger_entry> ledger_repository::list(const std::string& user_id,
                                                           int64_t limit, int64_t before_id) {
  std::vector<schemas::ledger_entry> out;
  schemas::ledger_entry e;
  int64_t before = before_id > 0 ? before_id : INT64_MAX;
  soci::statement st(sql_);
  bind_entry(st, e);
  st.exchange(soci::use(user_id));
  st.exchange(soci::use(before));
  st.exchange(soci::use(limit));
  prepare_bound(st, std::string(select_entry) +
                        "WHERE user_id = :u AND id < :b ORDER BY id DESC LIMIT :l");
  st.execute(false);
  while (st.fetch())
    out.push_back(e);
  return out;
}

int64_t ledger_repository::sum(const std::string& user_id) {
  long long total = 0;
  soci::indicator ind = soci::i_ok;
  sql_ << "SELECT SUM(amount) FROM ledger_entries WHERE user_id = :u", soci::use(user_id),
      soci::into(total, ind);
  return ind == soci::i_null ? 0 : total;
}

std::optional<int64_t> ledger_repository::balance(const std::string& user_id) {
  int64_t value = 0;
  soci::indicator ind = soci::i_ok;
  sql_ << select_balance, soci::use(user_id), soci::into(value, ind);
  if (!sql_.got_data())
    return std::nullopt;
  return value;
}

} // namespace tollgate::storage
