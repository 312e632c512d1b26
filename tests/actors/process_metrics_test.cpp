#include <boost/test/unit_test.hpp>

#include <string>

#include "actors/metrics/process_metrics.hpp"

// The process_* figures of GET /metrics: read from /proc/<pid>/stat and /proc/stat as proc(5)
// lays them out, and written as Prometheus client libraries name them.

namespace {

using tollgate::proc_units;
using tollgate::process_sample;

// A line as the kernel writes it (fields 14-15 utime/stime, 22 starttime, 23 vsize, 24 rss),
// for a command whose name holds a space and a parenthesis.
const std::string stat_line =
    "4242 (tg worker) x) S 1 4242 4242 0 -1 4194560 2000 0 0 0 250 50 0 0 20 0 7 0 123400 "
    "734003200 25600 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0\n";

BOOST_AUTO_TEST_SUITE(process_metrics)

BOOST_AUTO_TEST_CASE(the_stat_line_gives_cpu_start_and_memory) {
  proc_units units{100, 4096, 1'700'000'000};
  process_sample s;
  BOOST_TEST_REQUIRE(tollgate::read_proc_stat(stat_line, units, s));
  BOOST_TEST(s.cpu_seconds == 3.0);                           // (250 + 50) / 100
  BOOST_TEST(s.start_time_seconds == 1'700'000'000 + 1234.0); // boot + 123400 / 100
  BOOST_TEST(s.virtual_bytes == 734003200u);
  BOOST_TEST(s.resident_bytes == 25600u * 4096u);
}

BOOST_AUTO_TEST_CASE(a_line_that_is_not_a_stat_line_changes_nothing) {
  proc_units units;
  for (const std::string& line :
       {std::string{}, std::string{"4242 (tollgate S 1 2 3"}, std::string{"4242 (tollgate) S 1 2"},
        stat_line.substr(0, stat_line.find(" 734003200")),
        std::string{"4242 (t) S 1 4242 4242 0 -1 4194560 2000 0 0 0 x 50 0 0 20 0 7 0 1 1 1"}}) {
    process_sample s;
    s.resident_bytes = 7;
    BOOST_TEST(!tollgate::read_proc_stat(line, units, s), line);
    BOOST_TEST(s.resident_bytes == 7u);
  }
}

BOOST_AUTO_TEST_CASE(the_boot_time_is_the_btime_line) {
  BOOST_TEST(
      tollgate::read_boot_time("cpu  1 2 3\nintr 5\nbtime 1795560000\nprocesses 9\n").value_or(0) ==
      1795560000.0);
  BOOST_TEST(!tollgate::read_boot_time("cpu  1 2 3\nbtimex 5\n").has_value());
  BOOST_TEST(!tollgate::read_boot_time("btime soon\n").has_value());
}

BOOST_AUTO_TEST_CASE(this_process_reads_itself) {
  auto s = tollgate::sample_this_process();
  BOOST_TEST(s.resident_bytes > 0u);
  BOOST_TEST(s.virtual_bytes >= s.resident_bytes);
  BOOST_TEST(s.open_fds >= 3u); // stdin, stdout, stderr
  BOOST_TEST(s.start_time_seconds > 1'600'000'000.0);
}

BOOST_AUTO_TEST_CASE(the_text_names_the_families_as_client_libraries_do) {
  process_sample s;
  s.cpu_seconds = 1.5;
  s.resident_bytes = 1 << 20;
  std::string out;
  tollgate::render_process_metrics(s, out);
  BOOST_TEST(
      out.find("# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 1.5\n") !=
      std::string::npos);
  BOOST_TEST(out.find("# TYPE process_resident_memory_bytes gauge\n"
                      "process_resident_memory_bytes 1048576\n") != std::string::npos);
  for (const char* family : {"process_start_time_seconds", "process_virtual_memory_bytes",
                             "process_open_fds", "process_max_fds"})
    BOOST_TEST(out.find(std::string("# HELP ") + family + " ") != std::string::npos, family);
}

BOOST_AUTO_TEST_SUITE_END()

} // namespace
