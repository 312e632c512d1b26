#pragma once

#include <memory>
#include <typeindex>
#include <unordered_map>

#include <soci/soci.h>

namespace tollgate::storage {

/// Objects that live as long as one database session, such as repositories holding prepared
/// statements: made on first use with the session, dropped with it. The owner of the
/// session clears the cache before it closes or reopens the session.
class session_cache {
public:
  /// The cached T, made as T(sql) on first use.
  template <class T>
  T& get(soci::session& sql) {
    auto& slot = items_[std::type_index(typeid(T))];
    if (!slot)
      slot = std::make_shared<T>(sql);
    return *static_cast<T*>(slot.get());
  }

  /// Asks the owner to reopen the session after the current job (it failed in a way that
  /// may have broken the connection).
  void invalidate() { invalid_ = true; }
  bool invalid() const { return invalid_; }

  void clear() {
    items_.clear();
    invalid_ = false;
  }

private:
  std::unordered_map<std::type_index, std::shared_ptr<void>> items_;
  bool invalid_ = false;
};

} // namespace tollgate::storage
