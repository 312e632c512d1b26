#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tollgate::schemas {

/// An IPv4 or IPv6 block; a plain address is a block of one.
struct ip_block {
  std::array<uint8_t, 16> address{}; ///< IPv4 is stored as IPv4-mapped IPv6.
  unsigned prefix_bits = 128;

  /// Parses `10.0.0.0/8`, `192.168.1.7`, `2001:db8::/32`, `::1`.
  static std::optional<ip_block> parse(std::string_view text);
  bool contains(const std::array<uint8_t, 16>& ip) const;
};

/// Parses one address (v4, v6 or IPv4-mapped v6) into the 16-byte form.
std::optional<std::array<uint8_t, 16>> parse_ip(std::string_view text);

/// The addresses a key may be used from; empty admits every address.
class ip_allowlist {
public:
  ip_allowlist() = default;
  /// Entries must already be valid (checked when the key was created).
  explicit ip_allowlist(const std::vector<std::string>& entries);

  bool allows(std::string_view ip) const;
  bool empty() const noexcept { return blocks_.empty(); }

private:
  std::vector<ip_block> blocks_;
};

} // namespace tollgate::schemas
