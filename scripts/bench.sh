#!/usr/bin/env bash
# Measure tollgate side by side with its upstream called directly; write docs/benchmarks.md.
#
#   scripts/bench.sh [--quick] [--no-pg] [--keys N] [--full] [--peer portkey]
#                    [--no-build] [--out FILE] [--keep]
#
#   --quick        short smoke run (about a minute): 1 round, short arms, 1,000 streams
#   --no-pg        skip the arm through tollgate on PostgreSQL
#   --keys N       keys (and users) activated in the state-scale arm (default 100,000;
#                  10,000 with --quick)
#   --full         the full goals of issue 4: 1,000,000 keys
#   --peer portkey also measure the Portkey gateway (npm @portkey-ai/gateway, installed into
#                  a temporary directory) in the throughput and latency arms
#   --no-build     use the binaries in build/release as they are
#   --out FILE     write the report there instead of docs/benchmarks.md
#   --keep         keep the work directory (logs, raw results) even when all went well
#
# Everything runs on loopback on free ports: the project's mock upstream
# (tollgate_mock_upstream), tollgate on SQLite, tollgate on PostgreSQL (a throwaway server
# from scripts/services.sh), and the load generators: wrk (Debian) with
# scripts/bench/chat.lua for throughput at fixed concurrency, and tollgate_loadgen
# (tests/support/loadgen.cpp) for open-loop latency at a fixed rate, streaming, 10,000
# concurrent streams and key activation. Arms are interleaved round by round. Every process
# started here is stopped on exit. Exits 1 if any arm saw an error (non-2xx answer, socket
# error, timeout, incomplete stream) or a process died; the report is written either way.
# Errors of the peer gateway are reported but do not fail the run.
set -euo pipefail

root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"; }
die() { echo "bench.sh: $*" >&2; exit 2; }
log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

started_at=$(date -u '+%Y-%m-%d %H:%M UTC')
quick=0 use_pg=1 keys= full=0 peer= build=1 keep=0
out="$root/docs/benchmarks.md"
argv=("$@")
while (($#)); do
  case "$1" in
    --quick) quick=1 ;;
    --no-pg) use_pg=0 ;;
    --keys) [[ ${2:-} =~ ^[0-9]+$ ]] || die "--keys needs a number"; keys=$2; shift ;;
    --full) full=1 ;;
    --peer) [[ ${2:-} == portkey ]] || die "--peer: only 'portkey' is known"; peer=$2; shift ;;
    --no-build) build=0 ;;
    --out) [[ -n ${2:-} ]] || die "--out needs a file"; out=$2; shift ;;
    --keep) keep=1 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done

# ---------------------------------------------------------------------------------------
# Parameters of the arms.

if ((quick)); then
  rounds=1
  wrk_duration=3
  rate_duration=3 rate_warmup=1
  stream_duration=3 stream_warmup=1
  capacity=1000
  default_keys=10000
  idle_seconds=3
else
  rounds=3
  wrk_duration=10
  rate_duration=10 rate_warmup=2
  stream_duration=10 stream_warmup=2
  capacity=10000
  default_keys=100000
  idle_seconds=5
fi
hibernate_seconds=2 # of the hibernation run in the state arm
((full)) && default_keys=1000000
keys=${keys:-$default_keys}
((keys > 0)) || die "--keys must be positive"
rate=2000               # requests/s of the latency arm
light_rate=200          # and of its light-load pass, well below any gateway's saturation
stream_rate=100         # streams/s of the streaming arm (each about 200 ms long)
stream_chunks=10 stream_interval_ms=20
capacity_ttft_ms=1500   # how long the mock holds each of the concurrent streams
wrk_threads=2 wrk_connections=32
loadgen_connections=32 loadgen_max_connections=256
body_direct='{"model":"mock-1","messages":[{"role":"user","content":"hello"}],"max_tokens":16}'
body_gateway='{"model":"gpt-bench","messages":[{"role":"user","content":"hello"}],"max_tokens":16}'
stream_direct='{"model":"mock-1","messages":[{"role":"user","content":"hello"}],"max_tokens":16,"stream":true}'
stream_gateway='{"model":"gpt-bench","messages":[{"role":"user","content":"hello"}],"max_tokens":16,"stream":true}'

# ---------------------------------------------------------------------------------------
# Build and tools.

if ((build)); then
  deps=(--bench)
  ((use_pg)) && deps+=(--test)
  scripts/deps.sh "${deps[@]}"
  log "building Release (scripts/build.sh release)"
  scripts/build.sh release >/dev/null
fi
bin="$root/build/release/bin"
# What was built and runs: the tree as it is now (changes made while the arms run do not
# count), and changes under docs/ (this report among them) never do.
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo "?")
dirty=$(git -C "$root" status --porcelain -- . ':!docs' 2>/dev/null | grep -q . &&
  echo " (with uncommitted changes outside docs/)" || true)
for b in tollgate tollgate_mock_upstream tollgate_loadgen; do
  [[ -x "$bin/$b" ]] || die "$bin/$b is missing (run without --no-build)"
done
command -v wrk >/dev/null || die "wrk is missing (scripts/deps.sh --bench)"
command -v curl >/dev/null || die "curl is missing (scripts/deps.sh)"
command -v openssl >/dev/null || die "openssl is missing (scripts/deps.sh --bench)"
nghttpx_bin=$(command -v nghttpx || echo /usr/sbin/nghttpx) # Debian puts it in /usr/sbin
[[ -x "$nghttpx_bin" ]] || die "nghttpx is missing (scripts/deps.sh --bench)"

# 10,000 streams need 20,000+ descriptors in the gateway (client side + upstream side).
want_files=65536
if (($(ulimit -Hn) < want_files)); then
  ulimit -Hn "$want_files" 2>/dev/null || true
fi
ulimit -n "$(( $(ulimit -Hn) < want_files ? $(ulimit -Hn) : want_files ))"
files_limit=$(ulimit -n)
capacity_note=
if ((files_limit < 2 * capacity + 500)); then
  # Each stream holds two descriptors in the gateway (caller and upstream). Without
  # CAP_SYS_RESOURCE the hard limit cannot be raised: run as many as fit, and say so.
  wanted=$capacity
  capacity=$(((files_limit - 500) / 2 / 250 * 250))
  ((capacity > 0)) || die "ulimit -n is $files_limit: too low for the capacity arm"
  capacity_note="capped at $capacity streams (not $wanted): the open-files hard limit is $files_limit and cannot be raised here (needs CAP_SYS_RESOURCE); each stream takes two descriptors in the gateway"
  log "warning: $capacity_note"
fi

# ---------------------------------------------------------------------------------------
# Processes, ports, cleanup.

work=$(mktemp -d /tmp/tollgate-bench.XXXXXX)
chmod 755 "$work" # scripts/services.sh runs PostgreSQL as user postgres under it
mkdir -p "$work/results"
declare -A pid_of=()
services_dir=
failed=0
failures=()

cleanup() {
  local rc=$? name pid i
  trap - EXIT INT TERM
  for name in "${!pid_of[@]}"; do
    pid=${pid_of[$name]}
    kill -TERM "$pid" 2>/dev/null || true
  done
  for name in "${!pid_of[@]}"; do
    pid=${pid_of[$name]}
    for ((i = 0; i < 50; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [[ -n "$services_dir" ]]; then
    scripts/services.sh stop "$services_dir" >/dev/null 2>&1 || true
  fi
  if ((keep || failed || rc != 0)); then
    echo "bench.sh: work directory kept: $work" >&2
  else
    rm -rf -- "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() {
  failed=1
  failures+=("$*")
  log "ERROR: $*"
}

used_ports=" "
free_port() {
  # A port below the ephemeral range (so client sockets never take it) that nothing answers on.
  local port i
  for ((i = 0; i < 200; i++)); do
    port=$((20000 + RANDOM % 12000))
    [[ $used_ports == *" $port "* ]] && continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      used_ports+="$port "
      echo "$port"
      return 0
    fi
  done
  die "no free port found"
}

start_process() {
  # start_process NAME LOG COMMAND...: runs it in the background, remembers its pid.
  local name=$1 logfile=$2
  shift 2
  "$@" >"$logfile" 2>&1 &
  pid_of[$name]=$!
}

stop_process() {
  local name=$1 pid i
  pid=${pid_of[$name]:-}
  [[ -n "$pid" ]] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "pid_of[$name]"
}

alive() {
  local pid=${pid_of[$1]:-}
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null
}

wait_http() {
  # wait_http NAME URL: until URL answers 200, or the process dies, or 60 s pass.
  local name=$1 url=$2 i
  for ((i = 0; i < 600; i++)); do
    curl -sf -o /dev/null --max-time 2 "$url" && return 0
    alive "$name" || { tail -n 20 "$work/$name.log" >&2; die "$name exited during start"; }
    sleep 0.1
  done
  die "$name did not answer $url within 60 s"
}

status_kb() {
  # status_kb NAME FIELD: a /proc/PID/status field (VmRSS, VmHWM, RssAnon) in kB.
  awk -v f="$2:" '$1 == f { print $2 }' "/proc/${pid_of[$1]}/status" 2>/dev/null || echo 0
}

reset_hwm() { echo 5 >"/proc/${pid_of[$1]}/clear_refs" 2>/dev/null || true; }

val() {
  # val FILE KEY: the value of KEY=... in a results file ("" if absent).
  [[ -f "$1" ]] || return 0
  awk -F= -v k="$2" '$1 == k { print $2; exit }' "$1" 2>/dev/null || true
}

median() {
  # median of the numbers on stdin ("" if none)
  sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print ""; else if (NR % 2) print a[(NR + 1) / 2];
                  else printf "%.1f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# ---------------------------------------------------------------------------------------
# Start the upstream mock and the gateways.

admin_key="tg-admin-$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')"
mock_port=$(free_port)
start_process mock "$work/mock.log" \
  "$bin/tollgate_mock_upstream" --listen "127.0.0.1:$mock_port" --threads 2 --models mock-1
wait_http mock "http://127.0.0.1:$mock_port/health"
mock_url="http://127.0.0.1:$mock_port"

mock_settings() {
  curl -sf -o /dev/null -X POST "$mock_url/mock/settings" -H 'Content-Type: application/json' \
    -d "$1" || die "mock refused settings $1"
}

write_config() {
  # write_config FILE IDLE_SECONDS [HIBERNATE_SECONDS]
  cat >"$1" <<EOF
{ "log_level": "warn",
  "actors": { "idle_seconds": $2${3:+, \"hibernate_seconds\": $3} },
  "providers": [ { "name": "mock", "kind": "openai", "base_url": "$mock_url/v1" } ],
  "models": [ { "name": "gpt-bench", "deployments": [ { "provider": "mock", "model": "mock-1" } ],
                "input_price": 1000, "output_price": 2000 } ] }
EOF
}
write_config "$work/gateway.json" 300

start_gateway() {
  # start_gateway NAME DATABASE_URL [CONFIG]: a tollgate on a free port; sets port_<NAME>.
  local name=$1 database=$2 config=${3:-$work/gateway.json} port
  port=$(free_port)
  mkdir -p "$work/$name"
  start_process "$name" "$work/$name.log" env TOLLGATE_ADMIN_KEY="$admin_key" \
    "$bin/tollgate" --config "$config" --listen "127.0.0.1:$port" \
    --data-dir "$work/$name" --database "$database"
  wait_http "$name" "http://127.0.0.1:$port/health"
  printf -v "port_$name" '%s' "$port"
}

make_key() {
  # make_key PORT: a user with 10^12 micro-credits and an unlimited key; prints the key.
  local base="http://127.0.0.1:$1" user id key
  user=$(curl -sf "$base/admin/users" -H "Authorization: Bearer $admin_key" \
    -H 'Content-Type: application/json' -d '{"name":"bench","email":"bench@example.com"}') ||
    die "creating the bench user failed on port $1"
  id=$(grep -o '"id":"usr_[0-9a-f]*"' <<<"$user" | head -n1 | cut -d'"' -f4)
  [[ -n "$id" ]] || die "no user id in: $user"
  curl -sf -o /dev/null "$base/admin/users/$id/credits" -H "Authorization: Bearer $admin_key" \
    -H 'Content-Type: application/json' -H 'Idempotency-Key: bench-credits' \
    -d '{"amount": 1000000000000, "reason": "benchmark"}' || die "crediting $id failed"
  key=$(curl -sf "$base/admin/users/$id/keys" -H "Authorization: Bearer $admin_key" \
    -H 'Content-Type: application/json' -d '{"name":"bench","environment":"live"}' |
    grep -o 'tg-live-[0-9a-f]\{48\}' | head -n1) || true
  [[ -n "$key" ]] || die "creating a key for $id failed"
  echo "$key"
}

arms=(direct sqlite)
declare -A arm_title=([direct]="direct to the mock" [sqlite]="tollgate, SQLite"
  [pg]="tollgate, PostgreSQL" [portkey]="Portkey gateway")
declare -A url_of=() auth_of=() body_of=() stream_body_of=()
url_of[direct]="$mock_url/v1/chat/completions"
body_of[direct]=$body_direct
stream_body_of[direct]=$stream_direct

start_gateway sqlite "sqlite://$work/sqlite/tollgate.db"
url_of[sqlite]="http://127.0.0.1:$port_sqlite/v1/chat/completions"
auth_of[sqlite]="Bearer $(make_key "$port_sqlite")"
body_of[sqlite]=$body_gateway
stream_body_of[sqlite]=$stream_gateway

if ((use_pg)); then
  log "starting a throwaway PostgreSQL (scripts/services.sh --durable)"
  services_dir="$work/services"
  scripts/services.sh start --durable "$services_dir" >"$work/services.log" 2>&1 ||
    { cat "$work/services.log" >&2; die "scripts/services.sh start failed"; }
  # shellcheck source=/dev/null
  . "$services_dir/env"
  start_gateway pg "$TOLLGATE_TEST_PG_URL"
  arms+=(pg)
  url_of[pg]="http://127.0.0.1:$port_pg/v1/chat/completions"
  auth_of[pg]="Bearer $(make_key "$port_pg")"
  body_of[pg]=$body_gateway
  stream_body_of[pg]=$stream_gateway
fi

if [[ $peer == portkey ]]; then
  peer_dir="$work/portkey"
  mkdir -p "$peer_dir"
  log "installing @portkey-ai/gateway from npm into $peer_dir"
  # Portkey's streamed answers fail on Node with the @hono/node-server that npm picks for it
  # (1.14.2 fails the same way): "TypeError: immutable" in its updateHeaders, Portkey-AI/gateway
  # issues 1389 and 1550. With 1.12.0 it streams, so that one is pinned.
  portkey_hono=1.12.0
  printf '{"private": true, "overrides": {"@hono/node-server": "%s"}}\n' "$portkey_hono" \
    >"$peer_dir/package.json"
  if (cd "$peer_dir" && npm install --no-audit --no-fund @portkey-ai/gateway \
        >"$work/portkey-install.log" 2>&1); then
    portkey_port=$(free_port)
    portkey_entry=$(cd "$peer_dir/node_modules/@portkey-ai/gateway" &&
      node -e 'const p=require("./package.json");const b=p.bin;console.log(typeof b==="string"?b:Object.values(b||{})[0]||"")')
    [[ -n "$portkey_entry" ]] || die "cannot find the portkey executable in its package.json"
    start_process portkey "$work/portkey.log" \
      env NODE_ENV=production node "$peer_dir/node_modules/@portkey-ai/gateway/$portkey_entry" \
      --port="$portkey_port" --headless
    wait_http portkey "http://127.0.0.1:$portkey_port/"
    arms+=(portkey)
    url_of[portkey]="http://127.0.0.1:$portkey_port/v1/chat/completions"
    auth_of[portkey]="Bearer sk-unused"
    body_of[portkey]=$body_direct
    stream_body_of[portkey]=$stream_direct
    portkey_version=$(cd "$peer_dir" && node -p 'require("@portkey-ai/gateway/package.json").version' 2>/dev/null || echo "?")
  else
    tail -n 20 "$work/portkey-install.log" >&2
    fail "installing @portkey-ai/gateway failed (log: $work/portkey-install.log)"
  fi
fi

# Per-arm extra headers for tollgate_loadgen and wrk.
loadgen_headers() {
  local arm=$1
  if [[ -n "${auth_of[$arm]:-}" ]]; then
    printf '%s\0' --header "Authorization: ${auth_of[$arm]}"
  fi
  if [[ $arm == portkey ]]; then
    printf '%s\0' --header "x-portkey-provider: openai" \
      --header "x-portkey-custom-host: $mock_url/v1"
  fi
}

check_alive() {
  local name
  for name in "${!pid_of[@]}"; do
    alive "$name" || fail "process $name (pid ${pid_of[$name]}) died; log: $work/$name.log"
  done
}

arm_order() {
  # The arms of round $1, rotated so no arm always runs first.
  local r=$1 n=${#arms[@]} i
  for ((i = 0; i < n; i++)); do echo "${arms[$(((i + r) % n))]}"; done
}

peer_notes=()
record_errors() {
  # record_errors TEST ARM FILE KEY. The peer's errors are reported, not failed on: they
  # say how the peer copes with the load, not that this harness or tollgate broke.
  local errors message
  errors=$(val "$3" "$4")
  if [[ -z "$errors" ]]; then
    message="$1/$2: no result (see $3)"
  elif ((errors > 0)); then
    message="$1/$2: $errors errors ($(grep -o '^errors_[a-z0-9_]*=[0-9]*' "$3" | tr '\n' ' '))"
  else
    return 0
  fi
  if [[ $2 == portkey ]]; then
    peer_notes+=("$message")
    log "peer: $message"
  else
    fail "$message"
  fi
}

# ---------------------------------------------------------------------------------------
# 1. Throughput at fixed concurrency: wrk.

run_loadgen() {
  # run_loadgen OUTFILE MODE ARGS...
  local outfile=$1
  shift
  "$bin/tollgate_loadgen" "$@" >"$outfile" 2>>"$work/loadgen.log" ||
    echo "errors_loadgen_failed=1" >>"$outfile"
}

cpu_ticks() {
  # cpu_ticks NAME: user + system CPU of a started process so far, in clock ticks.
  awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/${pid_of[$1]}/stat" 2>/dev/null || echo 0
}
clock_ticks=$(getconf CLK_TCK)

log "1/5 throughput: wrk -t$wrk_threads -c$wrk_connections -d${wrk_duration}s, $rounds round(s)"
mock_settings '{"latency_ms":0,"ttft_ms":0,"chunks":4,"interval_ms":0}'
for ((r = 1; r <= rounds; r++)); do
  for arm in $(arm_order "$r"); do
    f="$work/results/wrk.$arm.$r"
    extra=()
    [[ $arm == portkey ]] && extra=(-H "x-portkey-provider: openai" -H "x-portkey-custom-host: $mock_url/v1")
    # Where the two cores go: the CPU of the gateway, the mock and wrk over the run.
    mock_before=$(cpu_ticks mock)
    gw_before=0
    [[ $arm != direct ]] && gw_before=$(cpu_ticks "$arm")
    wrk_cpu=$(
      TIMEFORMAT='%U %S'
      { time BENCH_BODY=${body_of[$arm]} BENCH_AUTH=${auth_of[$arm]:-} \
        wrk -t"$wrk_threads" -c"$wrk_connections" -d"${wrk_duration}s" --timeout 5s "${extra[@]}" \
        -s "$root/scripts/bench/chat.lua" "${url_of[$arm]}" >"$f.raw" 2>&1 || true; } 2>&1
    )
    grep '^bench_' "$f.raw" | sed 's/^bench_//' >"$f" || true
    [[ -s "$f" ]] || echo "errors=1" >"$f"
    mock_used=$(($(cpu_ticks mock) - mock_before))
    gw_used=""
    [[ $arm != direct ]] && gw_used=$(($(cpu_ticks "$arm") - gw_before))
    calls=$(val "$f" requests)
    awk -v n="$calls" -v hz="$clock_ticks" -v w="$wrk_cpu" -v m="$mock_used" \
      -v g="$gw_used" 'BEGIN {
        if (n + 0 == 0) exit
        split(w, t, " ")
        printf "cpu_mock_us=%.1f\ncpu_wrk_us=%.1f\n", m * 1e6 / hz / n, (t[1] + t[2]) * 1e6 / n
        if (g != "") printf "cpu_gateway_us=%.1f\n", g * 1e6 / hz / n }' >>"$f"
    record_errors wrk "$arm" "$f" errors
    log "  round $r $arm: $(val "$f" rps) req/s, $(val "$f" errors) errors"
  done
  check_alive
done

# ---------------------------------------------------------------------------------------
# 2. Latency at a fixed rate (open loop).

paced_rounds() {
  # paced_rounds KIND RATE [curve]: every round, every arm at RATE req/s (open loop), into
  # results/KIND.ARM.ROUND; with "curve", each round's whole distribution for the plot too.
  local kind=$1 at=$2 curve=${3:-} r arm f
  local -a headers extra
  for ((r = 1; r <= rounds; r++)); do
    for arm in $(arm_order "$r"); do
      f="$work/results/$kind.$arm.$r"
      extra=()
      [[ -n "$curve" ]] && extra=(--curve "$work/results/curve.$arm.$r")
      mapfile -d '' headers < <(loadgen_headers "$arm")
      run_loadgen "$f" rate --url "${url_of[$arm]}" --rate "$at" --duration "$rate_duration" \
        --warmup "$rate_warmup" --connections "$loadgen_connections" \
        --max-connections "$loadgen_max_connections" --timeout 10 --max-errors 1000 \
        "${extra[@]}" "${headers[@]}" --body "${body_of[$arm]}"
      record_errors "$kind" "$arm" "$f" errors
      log "  round $r $arm: p50 $(val "$f" latency_p50_us) us, p99 $(val "$f" latency_p99_us) us, $(val "$f" errors) errors"
    done
    check_alive
  done
}

log "2/5 latency at $rate req/s paced (open loop), ${rate_duration}s + ${rate_warmup}s warmup, $rounds round(s)"
paced_rounds rate "$rate" curve

log "2b: latency at $light_rate req/s paced (light load, below saturation), ${rate_duration}s, $rounds round(s)"
paced_rounds light "$light_rate"

# ---------------------------------------------------------------------------------------
# 3. Streaming: time to first token and gaps between chunks.

log "3/5 streaming: $stream_rate streams/s, $stream_chunks chunks every $stream_interval_ms ms, ${stream_duration}s, $rounds round(s)"
mock_settings "{\"latency_ms\":0,\"ttft_ms\":0,\"chunks\":$stream_chunks,\"interval_ms\":$stream_interval_ms}"
for ((r = 1; r <= rounds; r++)); do
  for arm in $(arm_order "$r"); do
    f="$work/results/stream.$arm.$r"
    mapfile -d '' headers < <(loadgen_headers "$arm")
    run_loadgen "$f" rate --stream --url "${url_of[$arm]}" --rate "$stream_rate" \
      --duration "$stream_duration" --warmup "$stream_warmup" --connections "$loadgen_connections" \
      --max-connections "$loadgen_max_connections" --timeout 10 --max-errors 1000 \
      "${headers[@]}" --body "${stream_body_of[$arm]}"
    record_errors stream "$arm" "$f" errors
    log "  round $r $arm: ttft p50 $(val "$f" ttft_p50_us) us, gap p99 $(val "$f" gap_p99_us) us, $(val "$f" errors) errors"
  done
  check_alive
done

# ---------------------------------------------------------------------------------------
# 4. Capacity in flight: C concurrent streams held open by a slow mock.

column_max() {
  # column_max FILE N: the largest number in column N of FILE (0 if none).
  awk -v c="$2" 'BEGIN { m = 0 } $c > m { m = $c } END { print m }' "$1" 2>/dev/null || echo 0
}

sample_loop() {
  # sample_loop NAME OUTFILE: every 0.1 s, the gateway's VmRSS (kB) and the mock's in-flight count.
  local name=$1 outfile=$2 pid=${pid_of[$1]:-} rss inflight
  while :; do
    rss=0
    [[ -n "$pid" ]] && rss=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
    inflight=$(curl -s --max-time 1 "$mock_url/mock/stats" | grep -o '"in_flight":[0-9]*' | cut -d: -f2)
    echo "$(date +%s.%N) ${rss:-0} ${inflight:-0}" >>"$outfile"
    sleep 0.1
  done
}

keep_median_round() {
  # keep_median_round ROUNDS ERRORS OUTFILE: of ROUNDS ("PEAK_KB RESULTS_FILE" lines), the
  # round with the median peak stands for the arm: its results go to OUTFILE with ERRORS
  # (every round's) as its errors, and its peak is printed.
  local middle
  middle=$(printf '%s' "$1" | sort -n | awk -v n="$rounds" 'NR == int((n + 1) / 2)')
  { grep -v '^errors=' "${middle#* }"; echo "errors=$2"; } >"$3"
  echo "${middle%% *}"
}

log "4/5 capacity: $capacity concurrent streams, mock holds each ${capacity_ttft_ms} ms before streaming"
mock_settings "{\"latency_ms\":0,\"ttft_ms\":$capacity_ttft_ms,\"chunks\":$stream_chunks,\"interval_ms\":$stream_interval_ms}"
capacity_arms=()
for arm in "${arms[@]}"; do [[ $arm == portkey ]] || capacity_arms+=("$arm"); done
# Rounds like the other arms (peak RSS varies by about ±10 MB from run to run here): the
# table shows the round with the median peak; every round's errors count.
declare -A rss_peak=() rss_rounds=() cap_errors_total=()
for ((round = 1; round <= rounds; round++)); do
for arm in "${capacity_arms[@]}"; do
  f="$work/results/capacity.$arm.$round"
  samples="$work/results/capacity.$arm.$round.samples"
  name=$arm
  [[ $arm == direct ]] && name=mock
  reset_hwm "$name"
  sample_loop "$name" "$samples" &
  pid_of[sampler]=$!
  mapfile -d '' headers < <(loadgen_headers "$arm")
  run_loadgen "$f" burst --stream --url "${url_of[$arm]}" --concurrency "$capacity" \
    --connect-parallel 256 --timeout 60 "${headers[@]}" --body "${stream_body_of[$arm]}"
  stop_process sampler
  rss_peak[$arm]=$(status_kb "$name" VmHWM)
  sampled_peak=$(column_max "$samples" 2)
  ((sampled_peak > ${rss_peak[$arm]:-0})) && rss_peak[$arm]=$sampled_peak
  upstream_peak=$(column_max "$samples" 3)
  echo "upstream_peak_in_flight=$upstream_peak" >>"$f"
  echo "peak_rss_kb=${rss_peak[$arm]}" >>"$f"
  record_errors capacity "$arm" "$f" errors
  rss_rounds[$arm]+="${rss_peak[$arm]} $f"$'\n'
  round_errors=$(val "$f" errors)
  cap_errors_total[$arm]=$((${cap_errors_total[$arm]:-0} + ${round_errors:-0}))
  log "  round $round $arm: $(val "$f" ok) ok, $(val "$f" errors) errors, peak in flight $(val "$f" peak_in_flight) (at the mock $upstream_peak), $name peak RSS $((rss_peak[$arm] / 1024)) MB"
  check_alive
  sleep 1
done
done
for arm in "${capacity_arms[@]}"; do
  # The median round (by peak RSS) stands for the arm, with the errors of all rounds.
  rss_peak[$arm]=$(keep_median_round "${rss_rounds[$arm]}" "${cap_errors_total[$arm]}" \
    "$work/results/capacity.$arm")
done
mock_settings '{"latency_ms":0,"ttft_ms":0,"chunks":4,"interval_ms":0}'

# 4b. The same streams with the upstream over HTTP/2: HTTPS (HTTP/2 by ALPN) through nghttpx
# in front of the mock, as a provider's edge. A stream then takes one descriptor in the
# gateway, not two, so the open-files limit does not cap it. One round, tollgate on SQLite.
h2_streams=$((quick ? 1000 : 10000))
if ((files_limit < h2_streams + 500)); then
  h2_streams=$(((files_limit - 500) / 250 * 250))
fi
log "4b capacity over HTTP/2: $h2_streams concurrent streams, upstream HTTPS through nghttpx"
h2_dir="$work/h2"
mkdir -p "$h2_dir"
(cd "$h2_dir" &&
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 \
    -subj /CN=tollgate-bench-ca &&
  openssl req -x509 -newkey rsa:2048 -nodes -keyout server.key -out server.pem -days 2 \
    -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
    -addext basicConstraints=critical,CA:FALSE -CA ca.pem -CAkey ca.key) \
  >"$work/h2-certs.log" 2>&1 || die "making the HTTP/2 arm's certificates failed"
h2_port=$(free_port)
h2_plain_port=$(free_port)
start_process h2front "$work/h2front.log" "$nghttpx_bin" --conf=/dev/null \
  "--frontend=127.0.0.1,$h2_port" "--frontend=127.0.0.1,$h2_plain_port;no-tls" \
  "--backend=127.0.0.1,$mock_port" --workers=1 --no-ocsp --backend-read-timeout=10m \
  "$h2_dir/server.key" "$h2_dir/server.pem"
wait_http h2front "http://127.0.0.1:$h2_plain_port/health"
cat >"$work/gateway-h2.json" <<JSON
{ "log_level": "warn",
  "providers": [ { "name": "mock", "kind": "openai", "base_url": "https://127.0.0.1:$h2_port/v1",
                   "tls_ca": "$h2_dir/ca.pem", "max_connections": 100 } ],
  "models": [ { "name": "gpt-bench", "deployments": [ { "provider": "mock", "model": "mock-1" } ],
                "input_price": 1000, "output_price": 2000 } ] }
JSON
start_gateway h2 "sqlite://$h2_dir/tollgate.db" "$work/gateway-h2.json"
h2_key=$(make_key "$port_h2")
mock_settings "{\"latency_ms\":0,\"ttft_ms\":$capacity_ttft_ms,\"chunks\":$stream_chunks,\"interval_ms\":$stream_interval_ms}"
# Rounds as in arm 4 (one round's peak has ranged over 270-305 MB here): the table shows the
# round with the median peak, and every round's peak and errors. Each round has a gateway
# process of its own (on the same database): one process that takes a burst right after
# another peaks higher, with the last burst's memory not yet given back (docs/performance.md).
h2_rounds="" h2_errors_total=0
for ((round = 1; round <= rounds; round++)); do
  if ((round > 1)); then
    stop_process h2
    start_gateway h2 "sqlite://$h2_dir/tollgate.db" "$work/gateway-h2.json"
  fi
  f="$work/results/capacity-h2.$round"
  samples="$f.samples"
  reset_hwm h2
  sample_loop h2 "$samples" &
  pid_of[sampler]=$!
  # The gateway's connections to the upstream, sampled alongside.
  (while :; do
    ss -tn state established "( dport = :$h2_port )" 2>/dev/null | tail -n +2 | wc -l
    sleep 0.2
  done >"$f.connections") &
  pid_of[connections]=$!
  run_loadgen "$f" burst --stream --url "http://127.0.0.1:$port_h2/v1/chat/completions" \
    --concurrency "$h2_streams" --connect-parallel 256 --timeout 60 \
    --header "Authorization: Bearer $h2_key" --body "$stream_gateway"
  stop_process connections
  stop_process sampler
  h2_rss=$(status_kb h2 VmHWM)
  sampled_peak=$(column_max "$samples" 2)
  ((sampled_peak > h2_rss)) && h2_rss=$sampled_peak
  {
    echo "upstream_peak_in_flight=$(column_max "$samples" 3)"
    echo "upstream_connections=$(sort -n "$f.connections" 2>/dev/null | tail -n1)"
    echo "peak_rss_kb=$h2_rss"
  } >>"$f"
  record_errors capacity-h2 sqlite "$f" errors
  round_errors=$(val "$f" errors)
  h2_errors_total=$((h2_errors_total + ${round_errors:-0}))
  h2_rounds+="$h2_rss $f"$'\n'
  log "  round $round: $(val "$f" ok) ok, $(val "$f" errors) errors, at the mock $(val "$f" upstream_peak_in_flight), upstream connections $(val "$f" upstream_connections), peak RSS $((h2_rss / 1024)) MB"
  check_alive
  sleep 1
done
f="$work/results/capacity-h2"
h2_rss=$(keep_median_round "$h2_rounds" "$h2_errors_total" "$f")
h2_upstream_peak=$(val "$f" upstream_peak_in_flight)
h2_connections=$(val "$f" upstream_connections)
h2_each=$(printf '%s' "$h2_rounds" | awk 'NF { printf "%s%.1f", (n++ ? " / " : ""), $1 / 1024 }')
check_alive
stop_process h2
stop_process h2front
mock_settings '{"latency_ms":0,"ttft_ms":0,"chunks":4,"interval_ms":0}'

# ---------------------------------------------------------------------------------------
# 5. Scale of state: N keys and users activated, then passivated.

log "5/5 state: $keys keys and users pre-created in SQLite, each activated by one GET /v1/me"
write_config "$work/scale-hold.json" 86400 0
write_config "$work/scale-idle.json" "$idle_seconds" 0
write_config "$work/scale-sleep.json" 86400 "$hibernate_seconds"
seed=$(od -An -tx1 -N20 /dev/urandom | tr -d ' \n')
scale_db="$work/scale/tollgate.db"
# Start once to apply the migrations, stop, then insert the users and keys directly.
start_gateway scale "sqlite://$scale_db" "$work/scale-hold.json"
stop_process scale
# Twice N: the passivation run activates a second, fresh set after the first is passivated.
"$bin/tollgate_loadgen" keys-db --db "$scale_db" --count "$((2 * keys))" --key-seed "$seed" \
  >"$work/results/keys-db" 2>>"$work/loadgen.log" || die "inserting $((2 * keys)) keys failed"

activate() {
  # activate OUTFILE PORT FIRST: GET /v1/me with keys FIRST .. FIRST+N-1
  run_loadgen "$1" keys --url "http://127.0.0.1:$2/v1/me" --count "$keys" --start "$3" \
    --key-seed "$seed" --connections 32 --timeout 15 --max-errors 100
}

rss_settle() {
  # The VmRSS of NAME once it stops moving (allocator settling), in kB.
  local name=$1 a b i
  a=$(status_kb "$name" VmRSS)
  for ((i = 0; i < 10; i++)); do
    sleep 1
    b=$(status_kb "$name" VmRSS)
    ((b - a < 256 && a - b < 256)) && break
    a=$b
  done
  echo "$b"
}

keys_and_users() {
  # "KEYS USERS" from the gauge FAMILY{kind=...} of GET /metrics ("" if it has none).
  curl -s --max-time 5 "http://127.0.0.1:$port_scale/metrics" 2>/dev/null | awk -v f="$1" '
    $1 == f "{kind=\"key\"}" { k = $2 } $1 == f "{kind=\"user\"}" { u = $2 }
    END { if (k != "" || u != "") print (k == "" ? 0 : k) " " (u == "" ? 0 : u) }'
}
actors_live() { keys_and_users tollgate_actors; }

wait_passivated() {
  # Waits until no key or user actor is live (per /metrics), at most idle_seconds + LIMIT s;
  # without the gauge, idle_seconds + 3 s. Prints the seconds waited.
  local limit=$1 t0 now live
  t0=$(date +%s)
  if [[ -z "$(actors_live)" ]]; then
    sleep "$((idle_seconds + 3))"
    echo "$((idle_seconds + 3))"
    return
  fi
  while :; do
    now=$(date +%s)
    live=$(actors_live)
    [[ "$live" == "0 0" ]] && break
    ((now - t0 >= idle_seconds + limit)) && break
    sleep 1
  done
  sleep 1
  echo "$(($(date +%s) - t0))"
}

# 5a: actors stay (idle_seconds one day): memory per activated key + user.
start_gateway scale "sqlite://$scale_db" "$work/scale-hold.json"
curl -s -o /dev/null "http://127.0.0.1:$port_scale/v1/me" -H "Authorization: Bearer tg-live-$(printf '%048d' 0)" || true
scale_rss0=$(rss_settle scale)
scale_anon0=$(status_kb scale RssAnon)
activate "$work/results/scale.hold" "$port_scale" 0
record_errors scale-activate sqlite "$work/results/scale.hold" errors
scale_rss1=$(rss_settle scale)
scale_anon1=$(status_kb scale RssAnon)
scale_actors1=$(actors_live)
check_alive
stop_process scale
log "  held: RSS $((scale_rss0 / 1024)) MB -> $((scale_rss1 / 1024)) MB after $keys activations ($(val "$work/results/scale.hold" throughput) /s); live key/user actors: ${scale_actors1:-?}"

# 5b: idle_seconds short: the same activations, then wait for passivation; then N fresh
# keys: if passivation gave the memory back (to the OS or to the allocator for reuse), RSS
# grows little; if the passivated actors' memory is still held, it grows as much again.
passivation_limit=$((quick ? 30 : 120))
start_gateway scale "sqlite://$scale_db" "$work/scale-idle.json"
curl -s -o /dev/null "http://127.0.0.1:$port_scale/v1/me" -H "Authorization: Bearer tg-live-$(printf '%048d' 0)" || true
idle_rss0=$(rss_settle scale)
activate "$work/results/scale.idle" "$port_scale" 0
record_errors scale-passivate sqlite "$work/results/scale.idle" errors
idle_rss1=$(status_kb scale VmRSS)
idle_actors1=$(actors_live)
idle_wait1=$(wait_passivated "$passivation_limit")
idle_actors2=$(actors_live)
idle_rss2=$(rss_settle scale)
idle_rss3= idle_rss4= idle_actors4= idle_wait2=
if [[ "$(val "$work/results/scale.idle" errors)" == 0 ]]; then
  activate "$work/results/scale.idle2" "$port_scale" "$keys"
  record_errors scale-reuse sqlite "$work/results/scale.idle2" errors
  idle_rss3=$(status_kb scale VmRSS)
  idle_wait2=$(wait_passivated "$passivation_limit")
  idle_actors4=$(actors_live)
  idle_rss4=$(rss_settle scale)
else
  log "  the first activation of the passivation run failed; skipping the fresh-keys pass"
fi
idle_hwm=$(status_kb scale VmHWM)
check_alive
stop_process scale
log "  passivation (idle_seconds $idle_seconds): $((idle_rss1 / 1024)) MB after activation (actors ${idle_actors1:-?}), $((idle_rss2 / 1024)) MB ${idle_wait1} s later (actors ${idle_actors2:-?}); after $keys fresh keys ${idle_rss3:+$((idle_rss3 / 1024)) MB}, once those passivated ${idle_rss4:+$((idle_rss4 / 1024)) MB} (actors ${idle_actors4:-?})"
if [[ -n "$idle_actors2" && "$idle_actors2" != "0 0" ]]; then
  fail "passivation: key/user actors still live $idle_wait1 s after the last activation (idle_seconds $idle_seconds): ${idle_actors2}"
fi

# 5c: hibernation (hibernate_seconds short, idle_seconds one day): the same activations; once
# every actor has ended and left its record, the memory per idle key + user; then the same
# keys again, woken from their records.
hibernated_now() { keys_and_users tollgate_hibernated; }
woken_from_records() {
  curl -s --max-time 5 "http://127.0.0.1:$port_scale/metrics" 2>/dev/null |
    awk '/^tollgate_activations_total\{.*from="hibernation"/ { s += $2 } END { print s + 0 }'
}
start_gateway scale "sqlite://$scale_db" "$work/scale-sleep.json"
curl -s -o /dev/null "http://127.0.0.1:$port_scale/v1/me" -H "Authorization: Bearer tg-live-$(printf '%048d' 0)" || true
sleep_rss0=$(rss_settle scale)
activate "$work/results/scale.sleep" "$port_scale" 0
record_errors scale-hibernate sqlite "$work/results/scale.sleep" errors
sleep_wait=$(wait_passivated "$passivation_limit")
sleep_actors=$(actors_live)
sleep_records=$(hibernated_now)
# The ended actors' memory goes back to the system over jemalloc's decay time (10 s).
sleep 12
sleep_rss1=$(rss_settle scale)
sleep_hwm=$(status_kb scale VmHWM)
activate "$work/results/scale.wake" "$port_scale" 0
record_errors scale-wake sqlite "$work/results/scale.wake" errors
sleep_woken=$(woken_from_records)
check_alive
stop_process scale
log "  hibernation (hibernate_seconds $hibernate_seconds): $((sleep_rss0 / 1024)) MB -> $((sleep_rss1 / 1024)) MB with every actor ended after ${sleep_wait} s (actors ${sleep_actors:-?}, records ${sleep_records:-?}); woken again at $(val "$work/results/scale.wake" throughput) /s, $sleep_woken from records"
if [[ -n "$sleep_actors" && "$sleep_actors" != "0 0" ]]; then
  fail "hibernation: key/user actors still live $sleep_wait s after the last activation (hibernate_seconds $hibernate_seconds): ${sleep_actors}"
fi

# ---------------------------------------------------------------------------------------
# Aggregate.

med() {
  # med TEST ARM KEY: the median over rounds ("" if no round has KEY).
  local t=$1 arm=$2 k=$3 r
  for ((r = 1; r <= rounds; r++)); do val "$work/results/$t.$arm.$r" "$k"; done |
    { grep -v '^$' || true; } | median
}
sum_rounds() {
  local t=$1 arm=$2 k=$3 r s=0 v
  for ((r = 1; r <= rounds; r++)); do
    v=$(val "$work/results/$t.$arm.$r" "$k")
    s=$((s + ${v:-0}))
  done
  echo "$s"
}
fmt() {
  # fmt NUMBER [DECIMALS|auto]: with thousands separators; "-" if empty. auto: one decimal
  # below 100, none above.
  local n=${1:-} d=${2:-0}
  [[ -z "$n" ]] && { echo "-"; return; }
  awk -v n="$n" -v d="$d" 'BEGIN {
    if (d == "auto") d = (n < 100 && n > -100) ? 1 : 0
    s = sprintf("%." d "f", n); sign = ""
    if (substr(s, 1, 1) == "-") { sign = "-"; s = substr(s, 2) }
    dot = index(s, "."); ip = dot ? substr(s, 1, dot - 1) : s; fp = dot ? substr(s, dot) : ""
    out = ""
    while (length(ip) > 3) { out = "," substr(ip, length(ip) - 2) out; ip = substr(ip, 1, length(ip) - 3) }
    print sign ip out fp }'
}
sub() { [[ -z "${1:-}" || -z "${2:-}" ]] && { echo ""; return; }; awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a - b }'; }
div() { [[ -z "${1:-}" || -z "${2:-}" ]] && { echo ""; return; }; awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print ""; else printf "%.2f", a / b }'; }
meets() {
  # meets VALUE OP LIMIT -> "met" / "not met" / "-"
  [[ -z "${1:-}" ]] && { echo "-"; return; }
  awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN { ok = (op == "<=") ? v <= l : v >= l; print ok ? "met" : "not met" }'
}

declare -A rps=() wrk_err=() wrk_p50=() wrk_p99=() cpu_gw=() cpu_mock=() cpu_wrk=()
declare -A lat50=() lat99=() lat999=() latmax=() lat_err=()
declare -A light50=() light99=() light999=() light_err=()
declare -A tt50=() tt99=() tt999=() gap50=() gap99=() gap999=() tail50=() tail99=() st_err=()
for arm in "${arms[@]}"; do
  rps[$arm]=$(med wrk "$arm" rps)
  wrk_err[$arm]=$(sum_rounds wrk "$arm" errors)
  wrk_p50[$arm]=$(med wrk "$arm" p50_us)
  wrk_p99[$arm]=$(med wrk "$arm" p99_us)
  cpu_gw[$arm]=$(med wrk "$arm" cpu_gateway_us)
  cpu_mock[$arm]=$(med wrk "$arm" cpu_mock_us)
  cpu_wrk[$arm]=$(med wrk "$arm" cpu_wrk_us)
  lat50[$arm]=$(med rate "$arm" latency_p50_us)
  lat99[$arm]=$(med rate "$arm" latency_p99_us)
  lat999[$arm]=$(med rate "$arm" latency_p999_us)
  latmax[$arm]=$(med rate "$arm" latency_max_us)
  lat_err[$arm]=$(sum_rounds rate "$arm" errors)
  light50[$arm]=$(med light "$arm" latency_p50_us)
  light99[$arm]=$(med light "$arm" latency_p99_us)
  light999[$arm]=$(med light "$arm" latency_p999_us)
  light_err[$arm]=$(sum_rounds light "$arm" errors)
  tt50[$arm]=$(med stream "$arm" ttft_p50_us)
  tt99[$arm]=$(med stream "$arm" ttft_p99_us)
  tt999[$arm]=$(med stream "$arm" ttft_p999_us)
  gap50[$arm]=$(med stream "$arm" gap_p50_us)
  gap99[$arm]=$(med stream "$arm" gap_p99_us)
  gap999[$arm]=$(med stream "$arm" gap_p999_us)
  tail50[$arm]=$(med stream "$arm" tail_p50_us)
  tail99[$arm]=$(med stream "$arm" tail_p99_us)
  st_err[$arm]=$(sum_rounds stream "$arm" errors)
done

gw_arms=()
for arm in "${arms[@]}"; do [[ $arm == direct ]] || gw_arms+=("$arm"); done

# Per key actually activated (an arm that gave up activated fewer than N).
hold_ok=$(val "$work/results/scale.hold" ok)
idle_ok=$(val "$work/results/scale.idle" ok)
idle2_ok=$(val "$work/results/scale.idle2" ok)
((${hold_ok:-0} > 0)) || hold_ok=1
((${idle_ok:-0} > 0)) || idle_ok=1
((${idle2_ok:-0} > 0)) || idle2_ok=1
per_key=$(awk -v a="$scale_rss0" -v b="$scale_rss1" -v n="$hold_ok" 'BEGIN { printf "%.0f", (b - a) * 1024 / n }')
per_key_anon=$(awk -v a="$scale_anon0" -v b="$scale_anon1" -v n="$hold_ok" 'BEGIN { printf "%.0f", (b - a) * 1024 / n }')
per_actor=$(awk -v p="$per_key" 'BEGIN { printf "%.0f", p / 2 }')
sleep_ok=$(val "$work/results/scale.sleep" ok)
((${sleep_ok:-0} > 0)) || sleep_ok=1
per_sleeping_pair=$(awk -v a="$sleep_rss0" -v b="$sleep_rss1" -v n="$sleep_ok" 'BEGIN { printf "%.0f", (b - a) * 1024 / n }')
per_sleeping=$(awk -v p="$per_sleeping_pair" 'BEGIN { printf "%.0f", p / 2 }')
passivated_left=$(awk -v a="$idle_rss0" -v b="$idle_rss2" -v n="$idle_ok" 'BEGIN { printf "%.0f", (b - a) * 1024 / n }')
reuse_growth=
[[ -n "$idle_rss3" ]] && reuse_growth=$(awk -v a="$idle_rss2" -v b="$idle_rss3" -v n="$idle2_ok" 'BEGIN { printf "%.0f", (b - a) * 1024 / n }')
kb_mb_or() { if [[ -n "${1:-}" ]]; then awk -v k="$1" 'BEGIN { printf "%.1f MB", k / 1024 }'; else echo "-"; fi; }

# One table, arms as columns.
header="| measure |"
rule="|---|"
for arm in "${arms[@]}"; do header+=" ${arm_title[$arm]} |"; rule+="---:|"; done
header+=" goal (issue 4) |"
rule+="---|"
row() {
  # row LABEL GOAL ASSOC_NAME [DECIMALS]: one value per arm from the named array.
  local label=$1 goal=$2 d=${4:-0} arm
  local -n values=$3
  local line="| $label |"
  for arm in "${arms[@]}"; do line+=" $(fmt "${values[$arm]:-}" "$d") |"; done
  echo "$line $goal |"
}
added_row() {
  # added_row LABEL GOAL ASSOC_NAME: through minus direct.
  local label=$1 goal=$2 arm
  local -n values=$3
  local line="| $label | |"
  for arm in "${gw_arms[@]}"; do
    line+=" $(fmt "$(sub "${values[$arm]:-}" "${values[direct]:-}")" auto) |"
  done
  echo "$line $goal |"
}

declare -A cap_ok=() cap_err=() cap_peak=() cap_up=() cap_rss=() cap_lat=() cap_conn=()
for arm in "${capacity_arms[@]}"; do
  f="$work/results/capacity.$arm"
  cap_ok[$arm]=$(val "$f" ok)
  cap_err[$arm]=$(val "$f" errors)
  cap_peak[$arm]=$(val "$f" peak_in_flight)
  cap_up[$arm]=$(val "$f" upstream_peak_in_flight)
  cap_rss[$arm]=$(awk -v k="${rss_peak[$arm]:-0}" 'BEGIN { printf "%.1f", k / 1024 }')
  cap_lat[$arm]=$(val "$f" ttft_p99_us)
  cap_conn[$arm]=$(val "$f" connect_seconds)
done

sqlite_added_p50=$(sub "${lat50[sqlite]:-}" "${lat50[direct]:-}")
sqlite_added_p99=$(sub "${lat99[sqlite]:-}" "${lat99[direct]:-}")
sqlite_added_ttft99=$(sub "${tt99[sqlite]:-}" "${tt99[direct]:-}")
peer_ratio=
[[ -n "${rps[portkey]:-}" ]] && peer_ratio=$(div "${rps[sqlite]}" "${rps[portkey]}")

table=$(
  echo "$header"
  echo "$rule"
  echo "| **1. throughput** (wrk -t$wrk_threads -c$wrk_connections, median of $rounds × ${wrk_duration}s) |$(printf ' |%.0s' "${arms[@]}") |"
  row "requests/s" "≥ 20,000 through tollgate (SQLite); ≥ 15× the peer" rps
  row "errors (non-2xx + socket)" "0" wrk_err
  row "closed-loop latency p50, µs (wrk)" "" wrk_p50
  row "closed-loop latency p99, µs (wrk)" "" wrk_p99
  row "CPU per call: the gateway's process, µs" "" cpu_gw auto
  row "CPU per call: the mock, µs" "" cpu_mock auto
  row "CPU per call: wrk, µs" "" cpu_wrk auto
  echo "| **2. latency at $(fmt $rate) req/s paced** (open loop, median of $rounds × ${rate_duration}s) |$(printf ' |%.0s' "${arms[@]}") |"
  row "p50, µs" "" lat50 auto
  row "p99, µs" "" lat99 auto
  row "p99.9, µs" "" lat999 auto
  row "max, µs" "" latmax auto
  added_row "added p50, µs" "≤ 100 µs" lat50
  added_row "added p99, µs" "≤ 1,000 µs" lat99
  added_row "added p99.9, µs" "" lat999
  row "errors" "0" lat_err
  echo "| **2b. latency at $(fmt $light_rate) req/s paced** (light load, median of $rounds × ${rate_duration}s) |$(printf ' |%.0s' "${arms[@]}") |"
  row "p50, µs" "" light50 auto
  row "p99, µs" "" light99 auto
  row "p99.9, µs" "" light999 auto
  added_row "added p50, µs" "" light50
  added_row "added p99, µs" "" light99
  row "errors" "0" light_err
  echo "| **3. streaming** ($stream_rate streams/s, $stream_chunks chunks every $stream_interval_ms ms) |$(printf ' |%.0s' "${arms[@]}") |"
  row "time to first token p50, µs" "" tt50 auto
  row "time to first token p99, µs" "" tt99 auto
  added_row "added TTFT p50, µs" "" tt50
  added_row "added TTFT p99, µs" "≤ 1,000 µs" tt99
  added_row "added TTFT p99.9, µs" "" tt999
  row "inter-chunk gap p50, µs" "" gap50 auto
  row "inter-chunk gap p99, µs" "" gap99 auto
  added_row "added gap p50, µs" "" gap50
  added_row "added gap p99, µs" "" gap99
  row "last chunk → [DONE] p50, µs" "" tail50 auto
  row "last chunk → [DONE] p99, µs" "" tail99 auto
  row "errors" "0" st_err
  echo "| **4. capacity** ($(fmt "$capacity") concurrent streams, mock holds each $capacity_ttft_ms ms; the median of $rounds round(s) by peak RSS) |$(printf ' |%.0s' "${arms[@]}") |"
  row "completed" "$(fmt "$capacity")" cap_ok
  row "peak in flight (client)" "" cap_peak
  row "peak in flight (at the mock)" "" cap_up
  row "peak resident memory, MB (mock for direct)" "≤ 300 MB" cap_rss 1
  row "TTFT p99 under that load, µs" "" cap_lat auto
  row "errors" "0" cap_err
)

kb_mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
h2_table=$(
  echo "| 4b. capacity, upstream over HTTP/2 (HTTPS through nghttpx; tollgate on SQLite, the median of $rounds round(s) by peak RSS) | measured |"
  echo "|---|---:|"
  echo "| concurrent streams | $(fmt "$h2_streams") |"
  echo "| completed | $(fmt "$(val "$work/results/capacity-h2" ok)") |"
  echo "| peak in flight at the mock | $(fmt "$h2_upstream_peak") |"
  echo "| upstream connections (peak) | $(fmt "${h2_connections:-}") |"
  echo "| peak resident memory, MB | $(kb_mb "$h2_rss") |"
  echo "| peak resident memory of each round, MB | $h2_each |"
  echo "| TTFT p99 under that load, µs | $(fmt "$(val "$work/results/capacity-h2" ttft_p99_us)" auto) |"
  echo "| errors | $(fmt "$(val "$work/results/capacity-h2" errors)") |"
)

p999_max_ms() {
  # "P99.9 / MAX" of a results file's latencies, in milliseconds ("-" for each absent).
  local p m
  p=$(val "$1" latency_p999_us) m=$(val "$1" latency_max_us)
  echo "$(fmt "$(div "$p" 1000)" 1) / $(fmt "$(div "$m" 1000)" 1)"
}

scale_table=$(
  echo "| state (tollgate on SQLite, $(fmt "$keys") distinct keys, one user each) | measured | goal (issue 4) |"
  echo "|---|---:|---|"
  echo "| RSS before activation | $(kb_mb "$scale_rss0") MB | |"
  echo "| RSS after $(fmt "$(val "$work/results/scale.hold" ok)") × GET /v1/me (every key and user actor alive) | $(kb_mb "$scale_rss1") MB | |"
  echo "| live key / user actors then (GET /metrics) | ${scale_actors1:-n/a} | |"
  echo "| bytes per activated key + user (VmRSS) | $(fmt "$per_key") | |"
  echo "| bytes per activated key + user (RssAnon) | $(fmt "$per_key_anon") | |"
  echo "| bytes per actor (VmRSS / 2) | $(fmt "$per_actor") | |"
  echo "| activation rate, keys/s (32 connections, closed loop) | $(fmt "$(val "$work/results/scale.hold" throughput)") | |"
  echo "| activation latency p99.9 / slowest, ms | $(p999_max_ms "$work/results/scale.hold") | |"
  echo "| passivation run (idle_seconds $idle_seconds): RSS before | $(kb_mb "$idle_rss0") MB | |"
  echo "| passivation run: keys activated | $(fmt "$(val "$work/results/scale.idle" ok)") of $(fmt "$keys") | all |"
  echo "| passivation run: RSS right after the last activation | $(kb_mb "$idle_rss1") MB | |"
  echo "| passivation run: live key / user actors then | ${idle_actors1:-n/a} | |"
  echo "| passivation run: RSS ${idle_wait1} s later | $(kb_mb "$idle_rss2") MB | back down |"
  echo "| passivation run: live key / user actors then | ${idle_actors2:-n/a} | 0 0 |"
  echo "| still resident per key + user after passivation, bytes | $(fmt "$passivated_left") | |"
  echo "| passivation run: RSS after $(fmt "$keys") more, fresh keys | $(kb_mb_or "$idle_rss3") | |"
  echo "| growth per fresh key + user once the first set was passivated, bytes | $(fmt "$reuse_growth") | ≈ 0 if passivated memory is reused |"
  echo "| passivation run: fresh keys' activation latency p99.9 / slowest, ms | $(p999_max_ms "$work/results/scale.idle2") | |"
  echo "| passivation run: RSS once those were passivated too | $(kb_mb_or "$idle_rss4") | |"
  echo "| passivation run: live key / user actors then | ${idle_actors4:-n/a} | 0 0 |"
  echo "| passivation run: peak RSS | $(kb_mb "$idle_hwm") MB | |"
  echo "| hibernation run (hibernate_seconds $hibernate_seconds): RSS before | $(kb_mb "$sleep_rss0") MB | |"
  echo "| hibernation run: keys activated | $(fmt "$(val "$work/results/scale.sleep" ok)") of $(fmt "$keys") | all |"
  echo "| hibernation run: live key / user actors ${sleep_wait} s after the last activation | ${sleep_actors:-n/a} | 0 0 |"
  echo "| hibernation run: key / user records kept then | ${sleep_records:-n/a} | |"
  echo "| hibernation run: RSS once settled | $(kb_mb "$sleep_rss1") MB | |"
  echo "| **bytes per idle key + user, hibernated** (VmRSS) | $(fmt "$per_sleeping_pair") | ≤ 3,072 |"
  echo "| **bytes per idle key or user, hibernated** (VmRSS / 2) | $(fmt "$per_sleeping") | ≤ 1,536 |"
  echo "| hibernation run: peak RSS | $(kb_mb "$sleep_hwm") MB | |"
  echo "| the same keys again: wake rate, keys/s (32 connections) | $(fmt "$(val "$work/results/scale.wake" throughput)") | |"
  echo "| the same keys again: key and user actors started from their records | $(fmt "$sleep_woken") | $(fmt "$((2 * $(val "$work/results/scale.wake" ok)))") |"
  e1=$(val "$work/results/scale.hold" errors)
  e2=$(val "$work/results/scale.idle" errors)
  e3=$(val "$work/results/scale.idle2" errors)
  e4=$(val "$work/results/scale.sleep" errors)
  e5=$(val "$work/results/scale.wake" errors)
  echo "| errors | $((${e1:-0} + ${e2:-0} + ${e3:-0} + ${e4:-0} + ${e5:-0})) | 0 |"
)

goals=$(
  echo "| goal (issue 4) | measured (tollgate on SQLite) | |"
  echo "|---|---:|---|"
  echo "| throughput ≥ 20,000 requests/s | $(fmt "${rps[sqlite]:-}") | $(meets "${rps[sqlite]:-}" ">=" 20000) |"
  if [[ -n "$peer_ratio" ]]; then
    echo "| ≥ 15× the peer (Portkey) | ${peer_ratio}× | $(meets "$peer_ratio" ">=" 15) |"
  else
    echo "| ≥ 15× the peer | not measured (run with --peer portkey) | - |"
  fi
  echo "| added latency p50 ≤ 100 µs at $(fmt $rate) req/s | $(fmt "$sqlite_added_p50" auto) µs | $(meets "$sqlite_added_p50" "<=" 100) |"
  echo "| added latency p99 ≤ 1 ms at $(fmt $rate) req/s | $(fmt "$sqlite_added_p99" auto) µs | $(meets "$sqlite_added_p99" "<=" 1000) |"
  echo "| added time to first token p99 ≤ 1 ms | $(fmt "$sqlite_added_ttft99" auto) µs | $(meets "$sqlite_added_ttft99" "<=" 1000) |"
  cap_ok_all=0
  [[ "${cap_err[sqlite]:-1}" == 0 && "${cap_ok[sqlite]:-0}" == "$capacity" ]] && cap_ok_all=1
  cap_verdict="not met"
  ((cap_ok_all)) && [[ $(meets "${cap_rss[sqlite]:-}" "<=" 300) == met ]] && ((capacity >= 10000)) && cap_verdict=met
  if ((capacity < 10000)); then
    if [[ -n "$capacity_note" ]]; then
      cap_verdict="not measured at 10,000 (open-files limit)"
    else
      cap_verdict="not measured at 10,000 (--quick)"
    fi
  fi
  h2_errors=$(val "$work/results/capacity-h2" errors)
  h2_verdict="not met"
  [[ "${h2_errors:-1}" == 0 && "$(val "$work/results/capacity-h2" ok)" == "$h2_streams" ]] &&
    ((h2_streams >= 10000)) && [[ $(meets "$(kb_mb "$h2_rss")" "<=" 300) == met ]] && h2_verdict=met
  ((h2_streams < 10000)) && h2_verdict="not measured at 10,000"
  echo "| 10,000 concurrent streams in ≤ 300 MB, no errors | $(fmt "$capacity") streams: $(fmt "${cap_rss[sqlite]:-}" 1) MB, $(fmt "${cap_err[sqlite]:-}") errors | $cap_verdict |"
  echo "| the same, upstream over HTTP/2 (4b) | $(fmt "$h2_streams") streams: $(kb_mb "$h2_rss") MB, $(fmt "${h2_errors:-}") errors | $h2_verdict |"
  echo "| ≤ 1.5 KB per activated idle key or user actor | $(fmt "$per_sleeping") bytes per idle key or user, hibernated; $(fmt "$per_actor") while its actor lives ($(fmt "$keys") keys + users) | $(meets "$per_sleeping" "<=" 1536) |"
)

# ---------------------------------------------------------------------------------------
# Report.

cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
mem_total=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
load=$(cut -d' ' -f1-3 /proc/loadavg)
# How an idle CPU waits: on a KVM guest with halt polling off, every wake-up of an idle
# virtual CPU goes through the host, which sets much of the latency at a paced rate.
cpu_idle=$(cat /sys/devices/system/cpu/cpuidle/current_driver 2>/dev/null || echo "no cpuidle driver")
if [[ -r /sys/module/haltpoll/parameters/guest_halt_poll_ns ]]; then
  halt_poll=$(cat /sys/module/haltpoll/parameters/guest_halt_poll_ns)
  cpu_idle+=", guest_halt_poll_ns $halt_poll"
  if [[ $halt_poll == 0 ]]; then
    cpu_idle+=" (an idle virtual CPU halts at once; see performance.md, \"Waking an idle virtual CPU\")"
  fi
fi
tollgate_version=$("$bin/tollgate" --version 2>/dev/null | head -n1)
wrk_version=$( (wrk -v 2>&1 || true) | head -n1)
gcc_version=$(gcc --version 2>/dev/null | head -n1)

echo
echo "$table"
echo
echo "$h2_table"
echo
echo "$scale_table"
echo
echo "$goals"
echo

# The percentile curves of section 2, every round of every arm, as an SVG next to the report.
plot_latency() { # plot_latency SVG
  local svg=$1 arm r f title plots=()
  local -A color_of=([direct]="#555555" [sqlite]="#1f77b4" [pg]="#2ca02c" [portkey]="#d62728")
  for arm in "${arms[@]}"; do
    for ((r = 1; r <= rounds; r++)); do
      f="$work/results/curve.$arm.$r"
      [[ -s $f ]] || continue
      title=notitle
      ((r == 1)) && title="title '${arm_title[$arm]}'"
      # x = 1 / (1 - percentile): 2 at the median, 100 at p99; the largest (100 %) is left out.
      plots+=("'$f' using (\$1 < 100 ? 1 / (1 - \$1 / 100) : NaN):2 with lines lw 2 lc rgb '${color_of[$arm]}' $title")
    done
  done
  ((${#plots[@]})) || return 1
  local IFS=,
  gnuplot >"$work/gnuplot.log" 2>&1 <<EOF
set terminal svg size 900,540 dynamic font 'sans,13' background rgb 'white'
set output '$svg'
set title 'Latency at $(fmt "$rate") requests/s paced (open loop): each line one round of one arm'
set logscale xy
set xtics ('0' 1, '50' 2, '90' 10, '99' 100, '99.9' 1000, '99.99' 10000)
set xlabel 'percentile'
set ylabel 'latency, µs'
set grid xtics ytics mytics
set key top left box opaque
plot ${plots[*]}
EOF
}

mkdir -p "$(dirname "$out")"
plot_file="${out%.md}-latency.svg"
if ! command -v gnuplot >/dev/null; then
  plot_note="No plot of the latency percentiles: gnuplot is missing (\`scripts/deps.sh --bench\` installs it)."
elif plot_latency "$plot_file"; then
  plot_note="![Latency percentiles at $(fmt "$rate") requests/s paced, each round of each arm](${plot_file##*/})"
else
  plot_note="The plot of the latency percentiles failed (gnuplot's log: $work/gnuplot.log)."
  keep=1
fi

{
  cat <<EOF
# Benchmarks

Generated by \`scripts/bench.sh${argv[*]:+ ${argv[*]}}\` on $started_at; every number below comes from
that one run. Issue 4 sets the goals; [How it is measured](#how-it-is-measured) says how, and
[performance.md](performance.md) what the profiles show stands between these numbers and the goals.

## Machine

| | |
|---|---|
| CPU | $cpu_model, $(nproc) cores (nproc) |
| memory | $mem_total |
| kernel | $(uname -sr) |
| CPU idle | $cpu_idle |
| load average at the end | $load (the cores are shared with whatever else runs) |
| tollgate | $tollgate_version, commit $commit$dirty, Release |
| compiler | $gcc_version |
| wrk | $wrk_version |
EOF
  if [[ $peer == portkey && -n "${portkey_version:-}" ]]; then
    echo "| peer | @portkey-ai/gateway $portkey_version (@hono/node-server pinned to $portkey_hono), node $(node --version 2>/dev/null) |"
  fi
  cat <<EOF

Everything runs on loopback on the same machine: the mock upstream (2 threads), the
gateways (tollgate with its defaults: 2 actor workers that also serve the HTTP sockets,
\`log_level\` warn), and the clients.
The gateway and the client compete for the same cores, so absolute numbers are lower than
on separate machines; the side-by-side arms share that handicap.

## Goals

$goals

## Results

$table

Added = through tollgate minus direct to the mock, at the same percentile, in the same run.

$plot_note
$(for arm in "${gw_arms[@]}"; do
    if [[ -n "${rps[$arm]:-}" ]] && awk -v a="${rps[$arm]}" -v b="$rate" 'BEGIN { exit !(a < b) }'; then
      echo
      echo "- ${arm_title[$arm]}: its closed-loop throughput ($(fmt "${rps[$arm]}") req/s) is below the paced $(fmt "$rate") req/s, so at that rate it is saturated and the latency in section 2 is mostly time spent queueing; section 2b shows it below saturation."
    fi
  done)

$h2_table

$scale_table

EOF
  if ((failed)); then
    echo "## Errors in this run"
    echo
    for f in "${failures[@]}"; do echo "- $f"; done
    echo
  fi
  if ((${#peer_notes[@]})); then
    echo "## Errors of the peer gateway (not counted in the exit status)"
    echo
    for f in "${peer_notes[@]}"; do echo "- $f"; done
    echo
  fi
  cat <<EOF
## Per-round values

| test | arm | round | values |
|---|---|---:|---|
EOF
  for t in wrk rate light stream capacity; do
    for arm in "${arms[@]}"; do
      for ((r = 1; r <= rounds; r++)); do
        f="$work/results/$t.$arm.$r"
        [[ -f "$f" ]] || continue
        case $t in
          wrk)
            gw_cpu=$(val "$f" cpu_gateway_us)
            v="$(val "$f" rps) req/s, p50 $(val "$f" p50_us) µs, p99 $(val "$f" p99_us) µs, CPU per call:${gw_cpu:+ gateway $gw_cpu µs,} mock $(val "$f" cpu_mock_us) µs, wrk $(val "$f" cpu_wrk_us) µs, errors $(val "$f" errors)" ;;
          rate | light) v="p50 $(val "$f" latency_p50_us) µs, p99 $(val "$f" latency_p99_us) µs, p99.9 $(val "$f" latency_p999_us) µs, connections peak $(val "$f" peak_in_flight) in flight, errors $(val "$f" errors)" ;;
          stream) v="TTFT p50 $(val "$f" ttft_p50_us) µs / p99 $(val "$f" ttft_p99_us) µs, gap p50 $(val "$f" gap_p50_us) µs / p99 $(val "$f" gap_p99_us) µs, [DONE] tail p50 $(val "$f" tail_p50_us) µs, errors $(val "$f" errors)" ;;
          capacity) v="peak RSS $(awk -v k="$(val "$f" peak_rss_kb)" 'BEGIN { printf "%.1f", k / 1024 }') MB, $(val "$f" ok) ok, errors $(val "$f" errors)" ;;
        esac
        echo "| $t | $arm | $r | $v |"
      done
    done
  done
  cat <<EOF

## How it is measured

One command: \`scripts/bench.sh\` (\`--quick\` for a one-minute smoke run, \`--no-pg\`,
\`--keys N\`, \`--full\` for 1,000,000 keys, \`--peer portkey\`). It installs wrk
(\`scripts/deps.sh --bench\`), builds Release (\`scripts/build.sh release\`), starts
\`tollgate_mock_upstream --threads 2\` and tollgate on SQLite and on PostgreSQL
(\`scripts/services.sh --durable\`: a commit returns once PostgreSQL has flushed its WAL,
as SQLite's returns once its WAL is flushed) on free loopback ports, and creates through the admin
API a user with 10^12 micro-credits and a key without limits. Every call through tollgate
is authenticated, held, forwarded and charged with a durable ledger entry, as in production.
Body: \`$body_gateway\` (model \`mock-1\` when direct). Arms run in rounds, interleaved, the
order rotated each round; tables show the median over rounds.

1. **Throughput**: \`wrk -t$wrk_threads -c$wrk_connections -d${wrk_duration}s -s scripts/bench/chat.lua URL\`,
   closed loop. The Lua script counts answers that are not 2xx; errors = those + socket
   errors + timeouts. CPU per call is each process's user + system time over the run
   (\`/proc/PID/stat\` before and after; wrk's from the shell's \`time\`) divided by the
   calls answered: the gateway, the mock and wrk share the same $(nproc) cores, so at
   20,000 calls/s the three together have $(awk -v c="$(nproc)" 'BEGIN { printf "%.0f", c * 1e6 / 20000 }') µs per call. For PostgreSQL
   and Portkey the gateway's process is the one started here (PostgreSQL's own server
   processes are not counted).
2. **Latency at a fixed rate**: \`tollgate_loadgen rate --rate $rate --duration $rate_duration --warmup $rate_warmup\`
   (\`tests/support/loadgen.cpp\`), open loop on keep-alive connections ($loadgen_connections
   opened up front, up to $loadgen_max_connections when all are busy): request *i* is due at
   *start + i/rate* whatever happened before, and its latency runs from that due time, so a
   stall is charged for the queue behind it. **Coordinated omission is avoided.** Latency
   is to the last byte of the answer. The plot draws each round's whole distribution
   (\`tollgate_loadgen --curve\`), up to the percentile that still holds one request; the
   largest is in the table.
   Section 2b runs the same at $(fmt $light_rate) req/s, below every gateway's saturation, so that
   a gateway slower than the paced rate still shows its own latency.
3. **Streaming**: the mock streams $stream_chunks chunks $stream_interval_ms ms apart;
   \`tollgate_loadgen rate --stream --rate $stream_rate\`. Time to first token = first byte of
   the body, from the due time; gap = between consecutive SSE events carrying content;
   tail = last content event to \`data: [DONE]\` (tollgate sends [DONE] only once the charge
   is durable, so the tail is where the ledger write shows).
4. **Capacity**: the mock waits $capacity_ttft_ms ms before the first chunk.
   \`tollgate_loadgen burst --concurrency $capacity\` opens $capacity connections (256 connecting
   at once), then writes one streaming request on each and waits for all. Peak resident
   memory is VmHWM from /proc (reset through /proc/PID/clear_refs before the arm) or the
   highest VmRSS sampled every 0.1 s, whichever is larger; "at the mock" is the highest
   \`in_flight\` of \`GET /mock/stats\` in the same samples. ulimit -n $files_limit.
   The arm runs $rounds round(s) on the same processes (the peak of one run varies by about
   ±10 MB here); the table shows the round with the median peak, and the errors of all
   rounds.
   ${capacity_note:+**In this run the arm was $capacity_note.**}
   **4b** repeats it in $rounds round(s), each on a fresh gateway process, with the median
   shown as above, with tollgate (SQLite) calling the upstream over HTTPS: nghttpx
   (Debian's nghttp2-proxy) with a certificate of a CA made for the run, HTTP/2 by ALPN,
   forwarding to the mock over HTTP/1.1, and the provider's \`tls_ca\` naming that CA and
   \`max_connections\` 100 (nghttpx allows 100 streams per connection). Its
   upstream connections are the gateway's established connections to nghttpx
   (\`ss -tn state established\`, sampled every 0.2 s).
5. **State**: $(fmt "$keys") users (with accounts) and keys are inserted straight into a
   migrated SQLite database (\`tollgate_loadgen keys-db\`: key = \`tg-live-\` + 48 hex,
   key_hash = SHA-256), then each key is activated by one \`GET /v1/me\` (32 connections,
   closed loop), which spawns its key actor and its user's actor. The activations' p99.9
   and slowest answer show any pause of the gateway while its tables of keys and users
   grow. RSS is VmRSS once it
   stops moving. The first pass runs with \`actors.idle_seconds\` of a day (nothing is
   passivated); a second gateway process on the same database runs with
   \`idle_seconds: $idle_seconds\` and is sampled once GET /metrics shows no live key or
   user actor (at most $passivation_limit s past idle_seconds); then it activates $(fmt "$keys") other keys (and users) of the same
   database. If passivation released the first set's memory, RSS hardly grows for the
   second set (the allocator reuses it even when it does not return it to the OS); if it
   grows by as much as the first set did, the passivated actors' memory is still held.
   A third gateway process runs with \`hibernate_seconds: $hibernate_seconds\` (and
   idle_seconds of a day): once GET /metrics shows no live key or user actor, every key and
   user is a record kept by the directory (\`tollgate_hibernated\`), and RSS is sampled
   12 s later (jemalloc returns freed pages over 10 s) once it stops moving. That is the
   memory per idle key or user, the goal's measure. Then the same keys are activated again:
   each key and user actor starts from its record (\`tollgate_activations_total\` with
   \`from="hibernation"\`), without a database read.

Raw outputs (wrk, loadgen \`name=value\` files, RSS samples) stay in the work directory
when \`--keep\` is given or an arm fails.
EOF
} >"$out"
log "wrote $out"

if ((failed)); then
  log "FAILED: ${#failures[@]} problem(s):"
  for f in "${failures[@]}"; do echo "  - $f" >&2; done
  exit 1
fi
log "all arms ran without errors"
