#include <cstdio>

#include "config/config.hpp"
#include "http/gateway.hpp"

#ifdef TOLLGATE_JEMALLOC
#include "http/allocator_stats.hpp"
#include "http/curl_memory.hpp"

/// jemalloc's settings, read at start (MALLOC_CONF adds to and overrides them). A background
/// thread returns freed memory to the system on jemalloc's decay schedule even while the
/// gateway is idle: without it, pages freed by ended actors and streams go back only when
/// later allocations happen to trigger a purge. Freed pages go back after about a second
/// rather than jemalloc's default ten: a burst of streams that follows another within those
/// ten seconds found the last one's pages still resident, scattered over size classes it
/// did not need, and peaked up to 60 MB higher (docs/performance.md).
extern "C" {
// NOLINTNEXTLINE: the name and type are jemalloc's.
const char* malloc_conf = "background_thread:true,max_background_threads:1,dirty_decay_ms:1000";
}
#endif

int main(int argc, char** argv) {
  using namespace tollgate;
  try {
    auto cmd = config::load_config(argc, argv, config::environment());
    if (cmd.help) {
      std::fputs(config::usage().c_str(), stdout);
      return 0;
    }
    if (cmd.version) {
      std::printf("tollgate %s\n", std::string(config::version()).c_str());
      return 0;
    }
#ifdef TOLLGATE_JEMALLOC
    if (!http::keep_curl_buffers_apart())
      std::fputs("tollgate: jemalloc gave no arena for libcurl's buffers; they share the "
                 "others\n",
                 stderr);
    if (!http::publish_allocator_stats())
      std::fputs("tollgate: jemalloc keeps no statistics; tollgate_allocator_bytes stays empty\n",
                 stderr);
#endif
    return http::run_gateway(cmd.config, [argc, argv] {
      return config::load_config(argc, argv, config::environment()).config;
    });
  } catch (const config::config_error& e) {
    std::fprintf(stderr, "tollgate: %s\n", e.what());
    return 2;
  }
}
