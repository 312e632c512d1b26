#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tollgate {

/// The process's own figures, under the names Prometheus client libraries give them
/// (process_cpu_seconds_total, process_resident_memory_bytes, ...), so that dashboards made
/// for any service read them.
struct process_sample {
  double cpu_seconds = 0;        ///< User and system CPU since the process began.
  double start_time_seconds = 0; ///< Since the Unix epoch.
  std::uint64_t virtual_bytes = 0;
  std::uint64_t resident_bytes = 0;
  std::uint64_t open_fds = 0;
  std::uint64_t max_fds = 0; ///< The soft limit on open descriptors.
};

/// The clock and page figures that turn /proc/<pid>/stat's fields into seconds and bytes.
struct proc_units {
  long ticks_per_second = 100;  ///< sysconf(_SC_CLK_TCK)
  long page_size = 4096;        ///< sysconf(_SC_PAGESIZE)
  double boot_time_seconds = 0; ///< "btime" of /proc/stat
};

/// Reads the CPU, start time and memory fields of a /proc/<pid>/stat line into `sample`;
/// false if the line is not one (the command name in parentheses may hold spaces and
/// parentheses of its own, so the fields are counted from the last ')').
bool read_proc_stat(std::string_view line, const proc_units& units, process_sample& sample);

/// The "btime" of /proc/stat's text: the boot time, in seconds since the Unix epoch.
std::optional<double> read_boot_time(std::string_view proc_stat);

/// This process's sample now; a figure that cannot be read stays 0.
process_sample sample_this_process();

/// The sample as Prometheus text (HELP, TYPE and value of each family).
void render_process_metrics(const process_sample& sample, std::string& out);

} // namespace tollgate
