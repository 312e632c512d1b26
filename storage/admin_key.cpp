#include "storage/admin_key.hpp"

#include <fcntl.h>
#include <filesystem>
#include <stdexcept>
#include <sys/stat.h>
#include <unistd.h>

#include "schemas/key_format.hpp"
#include "storage/audit_repository.hpp"

namespace tollgate::storage {

namespace {

constexpr const char* hash_setting = "admin_key_sha256";

void write_private_file(const std::filesystem::path& path, const std::string& content) {
  std::filesystem::create_directories(path.parent_path());
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0)
    throw std::runtime_error("cannot write " + path.string());
  ::fchmod(fd, 0600);
  auto written = ::write(fd, content.data(), content.size());
  ::close(fd);
  if (written != static_cast<ssize_t>(content.size()))
    throw std::runtime_error("cannot write " + path.string());
}

} // namespace

admin_key_setup ensure_admin_key(soci::session& sql, const std::string& data_dir,
                                 const std::string& env_key) {
  if (!env_key.empty())
    return {schemas::sha256_hex(env_key), "admin key: the value of TOLLGATE_ADMIN_KEY"};
  auto file = std::filesystem::path(data_dir.empty() ? "." : data_dir) / "admin.key";
  settings_repository settings(sql);
  auto stored = settings.get(hash_setting);
  if (!stored.empty()) {
    if (std::filesystem::exists(file))
      return {stored, "admin key: in " + file.string() + " (cat it)"};
    return {stored, "admin key: generated on an earlier start, but " + file.string() +
                        " is gone; set TOLLGATE_ADMIN_KEY to choose a new one"};
  }
  auto key = schemas::generate_admin_key();
  auto hash = schemas::sha256_hex(key);
  write_private_file(file, key + "\n");
  settings.put(hash_setting, hash);
  return {hash, "admin key: generated and written to " + file.string() + " (mode 0600; cat it)"};
}

} // namespace tollgate::storage
