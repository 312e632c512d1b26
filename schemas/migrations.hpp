#pragma once

#include <span>
#include <string_view>

namespace tollgate::schemas {

/// One versioned schema change; `sql` may hold several statements.
struct migration {
  int version;
  std::string_view name;
  std::string_view sql;
};

/// The migrations of a backend ("sqlite" or "postgresql") in ascending version order,
/// compiled into the binary from schemas/sql/<backend>/NNN_name.sql.
std::span<const migration> migrations_for(std::string_view backend);

} // namespace tollgate::schemas
