#pragma once

#include <charconv>
#include <optional>
#include <string_view>
#include <system_error>

namespace tollgate::schemas {

/// The number that all of `text` spells (std::from_chars syntax: digits, a leading '-' for
/// signed types, no blanks or '+'), or nothing: empty, trailing characters, or out of
/// range for Number.
template <class Number>
std::optional<Number> parse_number(std::string_view text) {
  Number out{};
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  if (ec != std::errc{} || end != text.data() + text.size())
    return std::nullopt;
  return out;
}

} // namespace tollgate::schemas
