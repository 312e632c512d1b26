#include "tests/support/random.hpp"

#include <array>
#include <random>

namespace tollgate::test {

namespace {

std::mt19937_64& engine() {
  thread_local std::mt19937_64 instance = [] {
    std::random_device device;
    std::seed_seq seed{device(), device(), device(), device(), device(), device()};
    return std::mt19937_64{seed};
  }();
  return instance;
}

} // namespace

std::string random_hex(std::size_t bytes) {
  static constexpr std::array<char, 16> digits{'0', '1', '2', '3', '4', '5', '6', '7',
                                               '8', '9', 'a', 'b', 'c', 'd', 'e', 'f'};
  std::uniform_int_distribution<unsigned> byte_dist{0, 255};
  std::string out;
  out.reserve(bytes * 2);
  for (std::size_t i = 0; i < bytes; ++i) {
    auto value = byte_dist(engine());
    out.push_back(digits[value >> 4]);
    out.push_back(digits[value & 0xf]);
  }
  return out;
}

} // namespace tollgate::test
