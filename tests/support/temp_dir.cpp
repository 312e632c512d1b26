#include "tests/support/temp_dir.hpp"

#include "tests/support/random.hpp"

#include <cstdlib>
#include <iostream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

namespace tollgate::test {

bool keep_test_dirs() {
  const char* value = std::getenv("TOLLGATE_KEEP_TEST_DIRS");
  return value != nullptr && *value != '\0' && std::string_view{value} != "0";
}

temp_dir::temp_dir(std::string_view prefix) {
  auto base = std::filesystem::temp_directory_path();
  for (int attempt = 0; attempt < 16; ++attempt) {
    auto candidate = base / (std::string{prefix} + "-" + random_hex(6));
    std::error_code ec;
    if (std::filesystem::create_directory(candidate, ec)) {
      path_ = std::move(candidate);
      return;
    }
    if (ec)
      throw std::runtime_error("cannot create temp dir " + candidate.string() + ": " +
                               ec.message());
  }
  throw std::runtime_error("cannot create a unique temp dir under " + base.string());
}

temp_dir::~temp_dir() {
  remove();
}

temp_dir::temp_dir(temp_dir&& other) noexcept
    : path_(std::exchange(other.path_, {})) {}

temp_dir& temp_dir::operator=(temp_dir&& other) noexcept {
  if (this != &other) {
    remove();
    path_ = std::exchange(other.path_, {});
  }
  return *this;
}

void temp_dir::remove() noexcept {
  if (path_.empty())
    return;
  if (keep_test_dirs()) {
    std::cerr << "[tollgate-test] kept " << path_.string() << '\n';
  } else {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  path_.clear();
}

} // namespace tollgate::test
