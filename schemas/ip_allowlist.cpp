#include "schemas/ip_allowlist.hpp"

#include <arpa/inet.h>
#include <cstring>

#include "schemas/numbers.hpp"

namespace tollgate::schemas {

std::optional<std::array<uint8_t, 16>> parse_ip(std::string_view text) {
  std::array<uint8_t, 16> out{};
  std::string s(text);
  if (s.size() > 2 && s.front() == '[' && s.back() == ']')
    s = s.substr(1, s.size() - 2);
  in_addr v4{};
  if (inet_pton(AF_INET, s.c_str(), &v4) == 1) {
    out[10] = 0xff;
    out[11] = 0xff;
    std::memcpy(out.data() + 12, &v4, 4);
    return out;
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, s.c_str(), &v6) == 1) {
    std::memcpy(out.data(), &v6, 16);
    return out;
  }
  return std::nullopt;
}

std::optional<ip_block> ip_block::parse(std::string_view text) {
  auto slash = text.find('/');
  auto addr = parse_ip(text.substr(0, slash));
  if (!addr)
    return std::nullopt;
  bool is_v4 = text.substr(0, slash).find(':') == std::string_view::npos;
  unsigned max_bits = is_v4 ? 32 : 128;
  unsigned bits = max_bits;
  if (slash != std::string_view::npos) {
    auto parsed = parse_number<unsigned>(text.substr(slash + 1));
    if (!parsed || *parsed > max_bits)
      return std::nullopt;
    bits = *parsed;
  }
  ip_block block;
  block.address = *addr;
  block.prefix_bits = is_v4 ? bits + 96 : bits;
  return block;
}

bool ip_block::contains(const std::array<uint8_t, 16>& ip) const {
  unsigned full = prefix_bits / 8;
  if (std::memcmp(ip.data(), address.data(), full) != 0)
    return false;
  unsigned rest = prefix_bits % 8;
  if (rest == 0)
    return true;
  auto mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (ip[full] & mask) == (address[full] & mask);
}

ip_allowlist::ip_allowlist(const std::vector<std::string>& entries) {
  for (const auto& entry : entries)
    if (auto block = ip_block::parse(entry))
      blocks_.push_back(*block);
}

bool ip_allowlist::allows(std::string_view ip) const {
  if (blocks_.empty())
    return true;
  auto addr = parse_ip(ip);
  if (!addr)
    return false;
  for (const auto& block : blocks_)
    if (block.contains(*addr))
      return true;
  return false;
}

} // namespace tollgate::schemas
