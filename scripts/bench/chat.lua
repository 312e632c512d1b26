-- wrk script of scripts/bench.sh: POSTs one chat completion per request and counts the
-- answers that are not 2xx (wrk itself only counts socket errors and statuses > 399).
--   BENCH_BODY   the JSON body (required)
--   BENCH_AUTH   the Authorization header value, e.g. "Bearer tg-live-..." (optional)
-- done() prints `bench_name=value` lines that scripts/bench.sh reads.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  non2xx = 0
  wrk.method = "POST"
  wrk.body = os.getenv("BENCH_BODY")
  wrk.headers["Content-Type"] = "application/json"
  local auth = os.getenv("BENCH_AUTH")
  if auth ~= nil and auth ~= "" then
    wrk.headers["Authorization"] = auth
  end
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
end

function done(summary, latency, requests)
  local non2xx_total = 0
  for _, thread in ipairs(threads) do
    non2xx_total = non2xx_total + thread:get("non2xx")
  end
  local e = summary.errors
  local socket_errors = e.connect + e.read + e.write + e.timeout
  local seconds = summary.duration / 1e6
  io.write(string.format("bench_requests=%d\n", summary.requests))
  io.write(string.format("bench_seconds=%.3f\n", seconds))
  io.write(string.format("bench_rps=%.1f\n", summary.requests / seconds))
  io.write(string.format("bench_non2xx=%d\n", non2xx_total))
  io.write(string.format("bench_socket_errors=%d\n", socket_errors))
  io.write(string.format("bench_timeouts=%d\n", e.timeout))
  io.write(string.format("bench_errors=%d\n", non2xx_total + socket_errors))
  io.write(string.format("bench_p50_us=%d\n", latency:percentile(50)))
  io.write(string.format("bench_p99_us=%d\n", latency:percentile(99)))
end
