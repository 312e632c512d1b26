#include "schemas/key_format.hpp"

#include <array>
#include <chrono>
#include <cstdint>
#include <stdexcept>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

namespace tollgate::schemas {

namespace {

constexpr std::size_t key_random_bytes = 24;
constexpr std::size_t prefix_random_digits = 6;

std::string to_hex(const unsigned char* data, std::size_t size) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(size * 2);
  for (std::size_t i = 0; i < size; ++i) {
    out.push_back(digits[data[i] >> 4]);
    out.push_back(digits[data[i] & 0x0f]);
  }
  return out;
}

std::string random_hex(std::size_t bytes) {
  std::array<unsigned char, 64> buf{};
  if (bytes > buf.size() || RAND_bytes(buf.data(), static_cast<int>(bytes)) != 1)
    throw std::runtime_error("the system random generator failed");
  return to_hex(buf.data(), bytes);
}

bool is_hex(std::string_view s) {
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
      return false;
  return true;
}

} // namespace

std::string generate_api_key(std::string_view environment) {
  return "tg-" + std::string(environment) + "-" + random_hex(key_random_bytes);
}

std::string generate_admin_key() {
  return "tg-admin-" + random_hex(key_random_bytes);
}

std::string sha256_hex(std::string_view data) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int size = 0;
  if (EVP_Digest(data.data(), data.size(), digest.data(), &size, EVP_sha256(), nullptr) != 1)
    throw std::runtime_error("SHA-256 failed");
  return to_hex(digest.data(), size);
}

std::string key_prefix(std::string_view key) {
  auto dash = key.rfind('-');
  if (dash == std::string_view::npos)
    return std::string(key.substr(0, prefix_random_digits));
  return std::string(key.substr(0, dash + 1 + prefix_random_digits));
}

bool is_api_key_shape(std::string_view key) {
  for (std::string_view env : {"tg-live-", "tg-test-"}) {
    if (key.starts_with(env)) {
      auto rest = key.substr(env.size());
      return rest.size() == key_random_bytes * 2 && is_hex(rest);
    }
  }
  return false;
}

std::string random_id(std::string_view prefix) {
  return std::string(prefix) + "_" + random_hex(12);
}

std::string time_ordered_id(std::string_view prefix) {
  auto ms = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                      std::chrono::system_clock::now().time_since_epoch())
                                      .count());
  std::array<unsigned char, 6> time{};
  for (std::size_t i = 0; i < time.size(); ++i)
    time[i] = static_cast<unsigned char>(ms >> (8 * (time.size() - 1 - i)));
  return std::string(prefix) + "_" + to_hex(time.data(), time.size()) + random_hex(10);
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

} // namespace tollgate::schemas
