#include "storage/users_repository.hpp"

#include "storage/database.hpp"

namespace tollgate::storage {

namespace {

constexpr const char* select_user =
    "SELECT u.id, u.name, u.email, u.suspended, u.rpm, u.tpm, u.rpd, u.created_at, "
    "u.updated_at, a.balance FROM users u JOIN accounts a ON a.user_id = u.id ";

/// Binds the columns of `select_user` into a record.
struct user_row {
  schemas::user_record user;
  int suspended = 0;

  void bind(soci::statement& st) {
    st.exchange(soci::into(user.id));
    st.exchange(soci::into(user.name));
    st.exchange(soci::into(user.email));
    st.exchange(soci::into(suspended));
    st.exchange(soci::into(user.limits.rpm));
    st.exchange(soci::into(user.limits.tpm));
    st.exchange(soci::into(user.limits.rpd));
    st.exchange(soci::into(user.created_at));
    st.exchange(soci::into(user.updated_at));
    st.exchange(soci::into(user.balance));
  }

  schemas::user_record get() const {
    auto out = user;
    out.suspended = suspended != 0;
    return out;
  }
};

} // namespace

void users_repository::create(const schemas::user_record& user) {
  int suspended = user.suspended ? 1 : 0;
  sql_ << "INSERT INTO users (id, name, email, suspended, rpm, tpm, rpd, created_at, updated_at) "
          "VALUES (:id, :name, :email, :suspended, :rpm, :tpm, :rpd, :created, :updated)",
      soci::use(user.id), soci::use(user.name), soci::use(user.email), soci::use(suspended),
      soci::use(user.limits.rpm), soci::use(user.limits.tpm), soci::use(user.limits.rpd),
      soci::use(user.created_at), soci::use(user.updated_at);
  sql_ << "INSERT INTO accounts (user_id, balance, updated_at) VALUES (:id, 0, :t)",
      soci::use(user.id), soci::use(user.created_at);
}

std::optional<schemas::user_record> users_repository::find(const std::string& id) {
  user_row row;
  soci::statement st(sql_);
  row.bind(st);
  st.exchange(soci::use(id));
  prepare_bound(st, std::string(select_user) + "WHERE u.id = :id");
  if (!st.execute(true))
    return std::nullopt;
  return row.get();
}

bool users_repository::email_taken(const std::string& email, const std::string& except_id) {
  long long count = 0;
  sql_ << "SELECT COUNT(*) FROM users WHERE email = :e AND id <> :id", soci::use(email),
      soci::use(except_id), soci::into(count);
  return count > 0;
}

std::vector<schemas::user_record> users_repository::list(int64_t limit, int64_t offset) {
  std::vector<schemas::user_record> out;
  user_row row;
  soci::statement st(sql_);
  row.bind(st);
  st.exchange(soci::use(limit));
  st.exchange(soci::use(offset));
  prepare_bound(st, std::string(select_user) + "ORDER BY u.created_at, u.id LIMIT :l OFFSET :o");
  st.execute(false);
  while (st.fetch())
    out.push_back(row.get());
  return out;
}

int64_t users_repository::count() {
  long long n = 0;
  sql_ << "SELECT COUNT(*) FROM users", soci::into(n);
  return n;
}

void users_repository::update(const schemas::user_record& user) {
  int suspended = user.suspended ? 1 : 0;
  sql_ << "UPDATE users SET name = :name, email = :email, suspended = :s, rpm = :rpm, "
          "tpm = :tpm, rpd = :rpd, updated_at = :t WHERE id = :id",
      soci::use(user.name), soci::use(user.email), soci::use(suspended), soci::use(user.limits.rpm),
      soci::use(user.limits.tpm), soci::use(user.limits.rpd), soci::use(user.updated_at),
      soci::use(user.id);
}

} // namespace tollgate::storage
