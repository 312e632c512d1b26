#include "http/curl_memory.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include <curl/curl.h>
#include <jemalloc/jemalloc.h>
#include <sys/types.h>

#include "actors/metrics/metrics.hpp"
#include "http/purge_switch.hpp"

namespace tollgate::http {

namespace {

/// jemalloc's smallest large size class with 4 KB pages: below it, allocations share slabs.
constexpr std::size_t large = 16 * 1024;

/// The arena's flags. The thread caches are bypassed, or a freed buffer would wait there for
/// the next allocation of its size instead of going back to the arena.
int large_flags = 0;
metric_value* buffer_bytes = nullptr; ///< Of the large allocations live now.
std::string arena_prefix;             ///< "arena.<i>."
ssize_t kept_dirty_ms = 0;            ///< The arena's own decay times, restored below the bound.
ssize_t kept_muzzy_ms = 0;
/// Purging from above 32 MB of live buffers (about 1,600 streams' receive buffers) until
/// they fall below 8 MB.
purge_switch purging(8 << 20, 32 << 20);

bool set_decay(ssize_t dirty_ms, ssize_t muzzy_ms) {
  return mallctl((arena_prefix + "dirty_decay_ms").c_str(), nullptr, nullptr, &dirty_ms,
                 sizeof dirty_ms) == 0 &&
         mallctl((arena_prefix + "muzzy_decay_ms").c_str(), nullptr, nullptr, &muzzy_ms,
                 sizeof muzzy_ms) == 0;
}

/// Adds `bytes` (negative when freed) to the live buffers. Thousands of open streams hold a
/// buffer each while they wait, and a buffer handed over again still has the pages the last
/// transfer wrote: then freed pages go back to the system at once (one madvise each). With
/// few buffers that would only cost CPU per call (a page fault to write each buffer again),
/// so they are kept for reuse on jemalloc's decay schedule.
void count(int64_t bytes) {
  auto live = buffer_bytes->value.fetch_add(bytes, std::memory_order_relaxed) + bytes;
  if (purging.update(live)) {
    if (purging.on())
      set_decay(0, 0);
    else
      set_decay(kept_dirty_ms, kept_muzzy_ms);
  }
}

/// The bytes `ptr` holds if it is a large allocation, else 0.
std::size_t large_size(void* ptr) {
  if (ptr == nullptr)
    return 0;
  auto size = sallocx(ptr, 0);
  return size >= large ? size : 0;
}

void* counted(void* ptr) {
  if (ptr != nullptr)
    count(static_cast<int64_t>(sallocx(ptr, 0)));
  return ptr;
}

void* curl_malloc(std::size_t size) {
  return size >= large ? counted(mallocx(size, large_flags)) : std::malloc(size);
}

void curl_free(void* ptr) {
  if (auto size = large_size(ptr)) {
    dallocx(ptr, MALLOCX_TCACHE_NONE);
    count(-static_cast<int64_t>(size));
  } else {
    std::free(ptr);
  }
}

void* curl_realloc(void* ptr, std::size_t size) {
  if (ptr == nullptr)
    return curl_malloc(size);
  auto was = large_size(ptr);
  if (size < large && was == 0)
    return std::realloc(ptr, size);
  if (size == 0) {
    curl_free(ptr);
    return nullptr;
  }
  // Into the arena when it grows large; out of it (and uncached) when it shrinks small.
  void* moved = rallocx(ptr, size, size >= large ? large_flags : MALLOCX_TCACHE_NONE);
  if (moved == nullptr)
    return nullptr; // `ptr` is left as it was
  count(static_cast<int64_t>(large_size(moved)) - static_cast<int64_t>(was));
  return moved;
}

char* curl_strdup(const char* s) {
  return strdup(s);
}

void* curl_calloc(std::size_t items, std::size_t size) {
  if (size != 0 && items > static_cast<std::size_t>(-1) / size)
    return nullptr;
  return items * size >= large ? counted(mallocx(items * size, large_flags | MALLOCX_ZERO))
                               : std::calloc(items, size);
}

} // namespace

bool keep_curl_buffers_apart() {
  unsigned arena = 0;
  std::size_t size = sizeof arena;
  if (mallctl("arenas.create", &arena, &size, nullptr, 0) != 0)
    return false;
  arena_prefix = "arena." + std::to_string(arena) + ".";
  std::size_t length = sizeof(ssize_t);
  if (mallctl((arena_prefix + "dirty_decay_ms").c_str(), &kept_dirty_ms, &length, nullptr, 0) !=
          0 ||
      mallctl((arena_prefix + "muzzy_decay_ms").c_str(), &kept_muzzy_ms, &length, nullptr, 0) != 0)
    return false;
  large_flags = MALLOCX_ARENA(arena) | MALLOCX_TCACHE_NONE;
  buffer_bytes = &gateway_metrics::global().curl_buffers.at();
  return curl_global_init_mem(CURL_GLOBAL_DEFAULT, curl_malloc, curl_free, curl_realloc,
                              curl_strdup, curl_calloc) == CURLE_OK;
}

} // namespace tollgate::http
