#pragma once

#include <filesystem>
#include <string_view>

namespace tollgate::test {

/// True when env TOLLGATE_KEEP_TEST_DIRS is set to anything but "" or "0".
bool keep_test_dirs();

/// A fresh directory under $TMPDIR (or /tmp), removed with its contents at destruction
/// unless keep_test_dirs() (then its path is printed to stderr instead).
class temp_dir {
public:
  explicit temp_dir(std::string_view prefix = "tollgate-test");
  ~temp_dir();

  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  temp_dir(temp_dir&& other) noexcept;
  temp_dir& operator=(temp_dir&& other) noexcept;

  const std::filesystem::path& path() const { return path_; }

  /// Shorthand for path() / relative.
  std::filesystem::path operator/(const std::filesystem::path& relative) const {
    return path_ / relative;
  }

private:
  void remove() noexcept;

  std::filesystem::path path_;
};

} // namespace tollgate::test
