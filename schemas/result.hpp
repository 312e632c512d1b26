#pragma once

#include <utility>
#include <variant>

#include "schemas/api_error.hpp"

namespace tollgate::schemas {

/// A value or the API error that prevented it.
template <class T>
class result {
public:
  result(T value)
      : value_(std::move(value)) {}
  result(api_error error)
      : value_(std::move(error)) {}

  bool ok() const noexcept { return value_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }

  T& value() { return std::get<0>(value_); }
  const T& value() const { return std::get<0>(value_); }
  T& operator*() { return value(); }
  T* operator->() { return &value(); }
  const api_error& error() const { return std::get<1>(value_); }

private:
  std::variant<T, api_error> value_;
};

} // namespace tollgate::schemas
