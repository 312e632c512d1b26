#pragma once

#include <string>
#include <string_view>

namespace tollgate::config {

/// Whether `url` is a postgresql:// or postgres:// URI.
bool is_postgres_uri(std::string_view url);

/// A PostgreSQL URI (postgres[ql]://user[:password]@host[:port][/db][?params]) as a libpq
/// keyword string ("host=h port=p user=u dbname=d ..."): SOCI 4.0's postgresql backend reads
/// only that form. Keyword strings pass unchanged.
std::string postgres_keywords(std::string_view url);

} // namespace tollgate::config
