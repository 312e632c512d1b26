#include "storage/keys_repository.hpp"

#include "storage/database.hpp"

#include <nlohmann/json.hpp>

namespace tollgate::storage {

namespace {

constexpr const char* select_key =
    "SELECT id, user_id, name, environment, prefix, key_hash, rpm, tpm, rpd, models, "
    "allowed_ips, expires_at, revoked_at, created_at FROM api_keys ";

std::string to_json_list(const std::vector<std::string>& items) {
  return nlohmann::json(items).dump();
}

std::vector<std::string> from_json_list(const std::string& text) {
  auto doc = nlohmann::json::parse(text, nullptr, false);
  if (!doc.is_array())
    return {};
  return doc.get<std::vector<std::string>>();
}

/// Binds the columns of `select_key` into a record.
struct key_row {
  schemas::key_record key;
  std::string models;
  std::string allowed_ips;

  void bind(soci::statement& st) {
    st.exchange(soci::into(key.id));
    st.exchange(soci::into(key.user_id));
    st.exchange(soci::into(key.name));
    st.exchange(soci::into(key.environment));
    st.exchange(soci::into(key.prefix));
    st.exchange(soci::into(key.key_hash));
    st.exchange(soci::into(key.limits.rpm));
    st.exchange(soci::into(key.limits.tpm));
    st.exchange(soci::into(key.limits.rpd));
    st.exchange(soci::into(models));
    st.exchange(soci::into(allowed_ips));
    st.exchange(soci::into(key.expires_at));
    st.exchange(soci::into(key.revoked_at));
    st.exchange(soci::into(key.created_at));
  }

  schemas::key_record get() const {
    auto out = key;
    out.models = from_json_list(models);
    out.allowed_ips = from_json_list(allowed_ips);
    return out;
  }
};

} // namespace

void keys_repository::create(const schemas::key_record& key) {
  auto models = to_json_list(key.models);
  auto allowed_ips = to_json_list(key.allowed_ips);
  sql_ << "INSERT INTO api_keys (id, user_id, name, environment, prefix, key_hash, rpm, tpm, "
          "rpd, models, allowed_ips, expires_at, revoked_at, created_at) VALUES (:id, :user, "
          ":name, :env, :prefix, :hash, :rpm, :tpm, :rpd, :models, :ips, :expires, 0, :created)",
      soci::use(key.id), soci::use(key.user_id), soci::use(key.name), soci::use(key.environment),
      soci::use(key.prefix), soci::use(key.key_hash), soci::use(key.limits.rpm),
      soci::use(key.limits.tpm), soci::use(key.limits.rpd), soci::use(models),
      soci::use(allowed_ips), soci::use(key.expires_at), soci::use(key.created_at);
}

std::optional<schemas::key_record> keys_repository::find_where(const std::string& clause,
                                                               const std::string& value) {
  key_row row;
  soci::statement st(sql_);
  row.bind(st);
  st.exchange(soci::use(value));
  prepare_bound(st, std::string(select_key) + clause);
  if (!st.execute(true))
    return std::nullopt;
  return row.get();
}

std::optional<schemas::key_record> keys_repository::find(const std::string& id) {
  return find_where("WHERE id = :v", id);
}

std::optional<schemas::key_record> keys_repository::find_by_hash(const std::string& key_hash) {
  return find_where("WHERE key_hash = :v", key_hash);
}

std::vector<schemas::key_record> keys_repository::list_for_user(const std::string& user_id) {
  std::vector<schemas::key_record> out;
  key_row row;
  soci::statement st(sql_);
  row.bind(st);
  st.exchange(soci::use(user_id));
  prepare_bound(st, std::string(select_key) + "WHERE user_id = :u ORDER BY created_at DESC, id");
  st.execute(false);
  while (st.fetch())
    out.push_back(row.get());
  return out;
}

bool keys_repository::revoke(const std::string& id, int64_t now) {
  soci::statement st = (sql_.prepare << "UPDATE api_keys SET revoked_at = :t "
                                        "WHERE id = :id AND revoked_at = 0",
                        soci::use(now), soci::use(id));
  st.execute(true);
  return st.get_affected_rows() > 0;
}

} // namespace tollgate::storage
