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

void random_bytes(unsigned char* out, std::size_t bytes) {
  if (RAND_bytes(out, static_cast<int>(bytes)) != 1)
    throw std::runtime_error("the system random generator failed");
}

/// Random hex for secrets (keys): drawn from OpenSSL's generator when asked for.
std::string random_hex(std::size_t bytes) {
  std::array<unsigned char, 64> buf{};
  if (bytes > buf.size())
    throw std::logic_error("random_hex: too many bytes");
  random_bytes(buf.data(), bytes);
  return to_hex(buf.data(), bytes);
}

/// Random hex for ids, which every call makes: from the same generator, drawn 4 KB at a
/// time per thread (one RAND_bytes costs about 1 µs, mostly locking, whatever its size).
std::string id_random_hex(std::size_t bytes) {
  constexpr std::size_t pool_size = 4096;
  struct pool {
    std::array<unsigned char, pool_size> bytes;
    std::size_t used = pool_size;
  };
  thread_local pool p;
  if (bytes > pool_size)
    throw std::logic_error("id_random_hex: too many bytes");
  if (p.used + bytes > pool_size) {
    random_bytes(p.bytes.data(), pool_size);
    p.used = 0;
  }
  auto out = to_hex(p.bytes.data() + p.used, bytes);
  p.used += bytes;
  return out;
}

/// SHA-256 as fetched from OpenSSL's provider once: `EVP_sha256()` fetches it again on
/// every digest, which took most of a key hash's time.
const EVP_MD* sha256() {
  static EVP_MD* md = [] {
    EVP_MD* fetched = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    if (!fetched)
      throw std::runtime_error("SHA-256 is not available from OpenSSL");
    return fetched;
  }();
  return md;
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
  if (EVP_Digest(data.data(), data.size(), digest.data(), &size, sha256(), nullptr) != 1)
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
  return std::string(prefix) + "_" + id_random_hex(12);
}

std::string time_ordered_id(std::string_view prefix) {
  auto ms = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                      std::chrono::system_clock::now().time_since_epoch())
                                      .count());
  std::array<unsigned char, 6> time{};
  for (std::size_t i = 0; i < time.size(); ++i)
    time[i] = static_cast<unsigned char>(ms >> (8 * (time.size() - 1 - i)));
  return std::string(prefix) + "_" + to_hex(time.data(), time.size()) + id_random_hex(10);
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

} // namespace tollgate::schemas
