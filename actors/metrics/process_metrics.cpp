#include "actors/metrics/process_metrics.hpp"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>

#include <sys/resource.h>
#include <unistd.h>

#include "schemas/numbers.hpp"

namespace tollgate {

namespace {

std::string slurp(const char* path) {
  std::ifstream in{path};
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void family(std::string& out, const char* name, const char* type, const char* help, double value) {
  char number[64];
  std::snprintf(number, sizeof number, "%.17g", value);
  out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" +
         name + " " + number + "\n";
}

} // namespace

bool read_proc_stat(std::string_view line, const proc_units& units, process_sample& sample) {
  auto close = line.rfind(')');
  if (close == std::string_view::npos || units.ticks_per_second <= 0)
    return false;
  // Fields from the state on: state is field 3 of proc(5), so field n is at index n - 3.
  std::string_view rest = line.substr(close + 1);
  std::string_view fields[22];
  std::size_t found = 0;
  while (found < std::size(fields)) {
    auto start = rest.find_first_not_of(' ');
    if (start == std::string_view::npos)
      break;
    rest.remove_prefix(start);
    auto end = rest.find_first_of(" \n");
    fields[found++] = rest.substr(0, end);
    rest.remove_prefix(end == std::string_view::npos ? rest.size() : end);
  }
  if (found < std::size(fields))
    return false;
  using schemas::parse_number;
  auto utime = parse_number<std::uint64_t>(fields[14 - 3]);
  auto stime = parse_number<std::uint64_t>(fields[15 - 3]);
  auto start_ticks = parse_number<std::uint64_t>(fields[22 - 3]);
  auto vsize = parse_number<std::uint64_t>(fields[23 - 3]);
  auto rss_pages = parse_number<std::int64_t>(fields[24 - 3]);
  if (!utime || !stime || !start_ticks || !vsize || !rss_pages)
    return false;
  auto ticks = static_cast<double>(units.ticks_per_second);
  sample.cpu_seconds = static_cast<double>(*utime + *stime) / ticks;
  sample.start_time_seconds = units.boot_time_seconds + static_cast<double>(*start_ticks) / ticks;
  sample.virtual_bytes = *vsize;
  sample.resident_bytes = *rss_pages > 0 ? static_cast<std::uint64_t>(*rss_pages) *
                                               static_cast<std::uint64_t>(units.page_size)
                                         : 0;
  return true;
}

std::optional<double> read_boot_time(std::string_view proc_stat) {
  std::size_t at = 0;
  while (at < proc_stat.size()) {
    auto end = proc_stat.find('\n', at);
    auto line =
        proc_stat.substr(at, end == std::string_view::npos ? std::string_view::npos : end - at);
    constexpr std::string_view key = "btime ";
    if (line.substr(0, key.size()) == key) {
      if (auto seconds = schemas::parse_number<std::uint64_t>(line.substr(key.size())))
        return static_cast<double>(*seconds);
      return std::nullopt;
    }
    if (end == std::string_view::npos)
      break;
    at = end + 1;
  }
  return std::nullopt;
}

process_sample sample_this_process() {
  static const proc_units units = [] {
    proc_units u;
    u.ticks_per_second = sysconf(_SC_CLK_TCK);
    u.page_size = sysconf(_SC_PAGESIZE);
    u.boot_time_seconds = read_boot_time(slurp("/proc/stat")).value_or(0);
    return u;
  }();
  process_sample sample;
  read_proc_stat(slurp("/proc/self/stat"), units, sample);
  std::error_code ec;
  for (std::filesystem::directory_iterator it("/proc/self/fd", ec), end; !ec && it != end;
       it.increment(ec))
    ++sample.open_fds;
  rlimit files{};
  if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur != RLIM_INFINITY)
    sample.max_fds = files.rlim_cur;
  return sample;
}

void render_process_metrics(const process_sample& s, std::string& out) {
  family(out, "process_cpu_seconds_total", "counter",
         "Total user and system CPU time spent in seconds.", s.cpu_seconds);
  family(out, "process_start_time_seconds", "gauge",
         "Start time of the process since unix epoch in seconds.", s.start_time_seconds);
  family(out, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.",
         static_cast<double>(s.virtual_bytes));
  family(out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
         static_cast<double>(s.resident_bytes));
  family(out, "process_open_fds", "gauge", "Number of open file descriptors.",
         static_cast<double>(s.open_fds));
  family(out, "process_max_fds", "gauge", "Maximum number of open file descriptors.",
         static_cast<double>(s.max_fds));
}

} // namespace tollgate
