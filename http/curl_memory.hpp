#pragma once

namespace tollgate::http {

/// Hands libcurl an allocator that keeps its large buffers (16 KB and up: a transfer's
/// receive and upload buffers, an HTTP/2 connection's input buffer) in a jemalloc arena of
/// their own, which returns their pages to the system as soon as they are freed. In the
/// shared arenas a freed buffer goes to the next transfer with the pages the last one wrote
/// still resident, and at thousands of open streams that was a tenth of the gateway's memory
/// (docs/performance.md). Their bytes are the gauge tollgate_upstream_buffer_bytes. Must run
/// before anything else initializes libcurl; returns false (and changes nothing) if jemalloc
/// gives no such arena.
bool keep_curl_buffers_apart();

} // namespace tollgate::http
