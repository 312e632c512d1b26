#pragma once

namespace tollgate::http {

/// Has each scrape of GET /metrics read jemalloc's totals into tollgate_allocator_bytes:
/// what the gateway holds (allocated), the pages that holds (active), what is resident, and
/// what jemalloc keeps for reuse. Resident well above active is freed memory not yet given
/// back to the system (jemalloc's decay). Returns false if jemalloc keeps no statistics.
bool publish_allocator_stats();

} // namespace tollgate::http
