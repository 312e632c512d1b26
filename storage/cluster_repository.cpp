#include "storage/cluster_repository.hpp"

namespace tollgate::storage {

namespace {

/// An integer column of a row, whatever width the backend reports it in (SQLite says
/// INTEGER for every integer column, PostgreSQL distinguishes INTEGER and BIGINT).
int64_t integer_at(const soci::row& r, std::size_t i) {
  switch (r.get_properties(i).get_data_type()) {
  case soci::dt_integer:
    return r.get<int>(i);
  case soci::dt_unsigned_long_long:
    return static_cast<int64_t>(r.get<unsigned long long>(i));
  case soci::dt_double:
    return static_cast<int64_t>(r.get<double>(i));
  default:
    return r.get<long long>(i);
  }
}

node_row read_node(const soci::row& r) {
  return {r.get<std::string>(0), r.get<std::string>(1), r.get<std::string>(2),
          r.get<std::string>(3), integer_at(r, 4),      integer_at(r, 5)};
}

constexpr const char* node_columns =
    "SELECT node_id, cluster_address, http_address, state, started_at, expires_at "
    "FROM cluster_nodes ";

} // namespace

cluster_repository::cluster_repository(soci::session& sql)
    : sql_(sql)
    , postgres_(sql.get_backend_name() == "postgresql") {
  now_sql_ = postgres_ ? "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
                       : "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)";
}

int64_t cluster_repository::now() {
  long long ms = 0;
  sql_ << "SELECT " + now_sql_, soci::into(ms);
  return ms;
}

void cluster_repository::ensure_shards(int32_t count) {
  long long present = 0;
  sql_ << "SELECT COUNT(*) FROM shard_leases WHERE shard < :n", soci::use(count),
      soci::into(present);
  if (present >= count)
    return;
  soci::transaction tx(sql_);
  int32_t shard = 0;
  soci::statement insert = (sql_.prepare << "INSERT INTO shard_leases (shard) VALUES (:s) "
                                            "ON CONFLICT (shard) DO NOTHING",
                            soci::use(shard));
  for (shard = 0; shard < count; ++shard)
    insert.execute(true);
  tx.commit();
}

void cluster_repository::register_node(const node_row& node, int64_t lease_ms) {
  sql_ << "INSERT INTO cluster_nodes (node_id, cluster_address, http_address, state, "
          "started_at, expires_at) VALUES (:n, :c, :h, 'active', " +
              now_sql_ + ", " + now_sql_ +
              " + :l) ON CONFLICT (node_id) DO UPDATE SET cluster_address = "
              "excluded.cluster_address, "
              "http_address = excluded.http_address, state = 'active', started_at = "
              "excluded.started_at, expires_at = excluded.expires_at",
      soci::use(node.node_id), soci::use(node.cluster_address), soci::use(node.http_address),
      soci::use(lease_ms);
}

cluster_snapshot cluster_repository::renew(const std::string& node_id, int64_t lease_ms) {
  cluster_snapshot out;
  {
    soci::transaction tx(sql_);
    std::string state;
    soci::indicator ind = soci::i_null;
    sql_ << "UPDATE cluster_nodes SET expires_at = " + now_sql_ +
                " + :l WHERE node_id = :n AND expires_at > " + now_sql_ +
                " AND state <> 'left' RETURNING state",
        soci::use(lease_ms), soci::use(node_id), soci::into(state, ind);
    if (sql_.got_data() && ind == soci::i_ok) {
      out.own_state = state;
      sql_ << "UPDATE shard_leases SET expires_at = " + now_sql_ +
                  " + :l WHERE node_id = :n AND expires_at > " + now_sql_,
          soci::use(lease_ms), soci::use(node_id);
    }
    tx.commit();
  }
  out.now = now();
  soci::rowset<soci::row> nodes =
      (sql_.prepare << std::string(node_columns) + "WHERE expires_at > :t AND state <> 'left' "
                                                   "ORDER BY node_id",
       soci::use(out.now));
  for (const auto& r : nodes)
    out.members.push_back(read_node(r));
  out.leases = leases();
  return out;
}

std::string cluster_repository::session_name(const std::string& node_id) {
  return ("tollgate:" + node_id).substr(0, 63); // PostgreSQL keeps 63 bytes
}

std::optional<int64_t> cluster_repository::acquire(int32_t shard, const std::string& node_id,
                                                   int64_t lease_ms) {
  auto take = [&]() -> std::optional<int64_t> {
    long long epoch = 0;
    sql_ << "UPDATE shard_leases SET node_id = :n, epoch = epoch + 1, expires_at = " + now_sql_ +
                " + :l WHERE shard = :s AND (node_id IS NULL OR expires_at <= " + now_sql_ +
                ") RETURNING epoch",
        soci::use(node_id), soci::use(lease_ms), soci::use(shard), soci::into(epoch);
    if (!sql_.got_data())
      return std::nullopt;
    return epoch;
  };
  if (!postgres_)
    return take();
  sql_ << "SET lock_timeout = '1000ms'";
  try {
    return take();
  } catch (const soci::soci_error&) {
    // Waited too long for the lease row: the holder's transaction is stuck. If its lease
    // has expired, end that node's sessions and try once more.
    std::string holder;
    soci::indicator ind = soci::i_null;
    sql_ << "SELECT node_id FROM shard_leases WHERE shard = :s AND node_id IS NOT NULL AND "
            "expires_at <= " +
                now_sql_,
        soci::use(shard), soci::into(holder, ind);
    if (!sql_.got_data() || ind != soci::i_ok || holder == node_id)
      throw;
    auto name = session_name(holder);
    soci::rowset<int> ended =
        (sql_.prepare << "SELECT CASE WHEN pg_terminate_backend(pid) THEN 1 ELSE 0 END FROM "
                         "pg_stat_activity WHERE application_name = :a AND datname = "
                         "current_database() AND pid <> pg_backend_pid()",
         soci::use(name));
    for (int e : ended)
      (void)e;
    return take();
  }
}

bool cluster_repository::release(int32_t shard, const std::string& node_id, int64_t epoch) {
  soci::statement st = (sql_.prepare << "UPDATE shard_leases SET node_id = NULL, expires_at = 0 "
                                        "WHERE shard = :s AND node_id = :n AND epoch = :e",
                        soci::use(shard), soci::use(node_id), soci::use(epoch));
  st.execute(true);
  return st.get_affected_rows() > 0;
}

bool cluster_repository::set_state(const std::string& node_id, const std::string& state) {
  // A node that left stays left until it registers again.
  soci::statement st = (sql_.prepare << "UPDATE cluster_nodes SET state = :s WHERE node_id = :n "
                                        "AND state <> 'left'",
                        soci::use(state), soci::use(node_id));
  st.execute(true);
  return st.get_affected_rows() > 0;
}

std::string cluster_repository::fence_sql() const {
  return "SELECT epoch FROM shard_leases WHERE shard = :s AND epoch = :e AND expires_at > " +
         now_sql_ + (postgres_ ? " FOR SHARE" : "");
}

bool cluster_repository::fence_holds(int32_t shard, int64_t epoch) {
  long long found = 0;
  sql_ << fence_sql(), soci::use(shard), soci::use(epoch), soci::into(found);
  return sql_.got_data();
}

void cluster_repository::send_fence(pg_pipeline& pipe, int32_t shard, int64_t epoch,
                                    stale_fence on_stale) {
  const bool abort = on_stale == stale_fence::abort;
  auto& name = abort ? pipelined_assert_ : pipelined_fence_;
  if (name.empty())
    pipe.prepare(name,
                 abort ? "SELECT tollgate_assert_lease(:s, :e, " + now_sql_ + ")" : fence_sql());
  pg_params params;
  params.add(shard);
  params.add(epoch);
  pipe.send(name, params);
}

std::vector<node_row> cluster_repository::nodes() {
  std::vector<node_row> out;
  soci::rowset<soci::row> rows = sql_.prepare << std::string(node_columns) + "ORDER BY node_id";
  for (const auto& r : rows)
    out.push_back(read_node(r));
  return out;
}

std::vector<lease_row> cluster_repository::leases() {
  std::vector<lease_row> out;
  soci::rowset<soci::row> rows = sql_.prepare << "SELECT shard, COALESCE(node_id, ''), epoch, "
                                                 "expires_at FROM shard_leases ORDER BY shard";
  for (const auto& r : rows)
    out.push_back({static_cast<int32_t>(integer_at(r, 0)), r.get<std::string>(1), integer_at(r, 2),
                   integer_at(r, 3)});
  return out;
}

} // namespace tollgate::storage
