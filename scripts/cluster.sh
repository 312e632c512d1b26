#!/usr/bin/env bash
# A local tollgate cluster on loopback: N nodes sharing one throwaway PostgreSQL.
#
#   scripts/cluster.sh start N [--dir DIR] [--base-port P] [--config FILE] [--no-build]
#                                 start PostgreSQL + Redis (scripts/services.sh) and N nodes,
#                                 wait until all are alive and every shard is owned
#   scripts/cluster.sh add [--dir DIR]      start the next node; wait until it holds shards
#   scripts/cluster.sh drain I [--dir DIR]  hand node I's shards to the others
#                                 (POST /admin/cluster/drain/node-I through another node),
#                                 then SIGTERM it and wait for it to exit
#   scripts/cluster.sh kill I [--dir DIR]   kill -9 node I (a crash: its leases expire)
#   scripts/cluster.sh status [--dir DIR]   members, their state and shard counts
#   scripts/cluster.sh stop [--dir DIR]     SIGTERM every node, stop the services, remove DIR
#
#   --dir DIR        where everything lives (default /tmp/tollgate-cluster); must be
#                    traversable by the postgres user (/tmp is)
#   --base-port P    node I serves HTTP on 127.0.0.1:P+I and reaches its peers on
#                    127.0.0.1:P+100+I (default 8100: 8101, 8102, ... and 8201, 8202, ...)
#   --config FILE    the gateway's config file (default config/tollgate.json: the offline
#                    echo model echo-1)
#   --no-build       use build/release/bin/tollgate as it is; without it, start runs
#                    scripts/deps.sh --test, and scripts/build.sh release if the binary is missing
#
# Node I has node id node-I, data dir DIR/node-I, log DIR/node-I.log and pid DIR/node-I.pid.
# Every node uses the same admin key, generated at start and kept in DIR/admin.key:
#   ADMIN=$(cat DIR/admin.key)
#   curl -s 127.0.0.1:8101/admin/cluster -H "Authorization: Bearer $ADMIN"
# Waits are bounded by CLUSTER_WAIT_SECONDS (default 60). Exits non-zero with a message on
# any failure; a failed start stops what it started and keeps the node logs in DIR.
set -euo pipefail

root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)

usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"; }
die() { echo "cluster.sh: $*" >&2; exit 1; }
log() { printf '[cluster %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

MARKER=.tollgate-cluster
bin="$root/build/release/bin/tollgate"
wait_seconds=${CLUSTER_WAIT_SECONDS:-60}
[[ $wait_seconds =~ ^[0-9]+$ ]] || die "CLUSTER_WAIT_SECONDS must be a number of seconds"

# ---------------------------------------------------------------------------------------
# Arguments.

cmd=${1:-}
case "$cmd" in
  -h|--help) usage; exit 0 ;;
  start|add|drain|kill|status|stop) shift ;;
  "") usage >&2; exit 2 ;;
  *) usage >&2; die "unknown command: $cmd" ;;
esac

dir=/tmp/tollgate-cluster
base_port='' config='' build=1
positional=()
while (($#)); do
  case "$1" in
    --dir) [[ -n ${2:-} ]] || die "--dir needs a directory"; dir=$2; shift ;;
    --dir=*) dir=${1#*=} ;;
    --base-port) [[ ${2:-} =~ ^[0-9]+$ ]] || die "--base-port needs a number"; base_port=$2; shift ;;
    --base-port=*) base_port=${1#*=} ;;
    --config) [[ -n ${2:-} ]] || die "--config needs a file"; config=$2; shift ;;
    --config=*) config=${1#*=} ;;
    --no-build) build=0 ;;
    -h|--help) usage; exit 0 ;;
    -*) usage >&2; die "unknown option: $1" ;;
    *) positional+=("$1") ;;
  esac
  shift
done
[[ -n $dir ]] || die "--dir needs a directory"
dir=$(realpath -m -- "$dir")
if [[ $cmd != start ]]; then
  [[ -z $base_port && -z $config && $build == 1 ]] ||
    die "--base-port, --config and --no-build apply to start only"
fi
if [[ -n $config ]]; then
  [[ -f $config ]] || die "config file $config not found"
  config=$(realpath -- "$config")
fi

expect_args() {
  # expect_args COUNT WHAT: exactly COUNT positional arguments.
  ((${#positional[@]} == $1)) || { usage >&2; die "$cmd takes $2"; }
}

node_index() {
  # node_index ARG: ARG as a node number 1..99, or die.
  [[ $1 =~ ^[1-9][0-9]?$ ]] || die "node number must be 1..99, not '$1'"
  echo "$1"
}

# ---------------------------------------------------------------------------------------
# The cluster's directory and processes.

load_state() {
  # Reads DIR/cluster.conf written by start: BASE_PORT, CONFIG, PG_URL, REDIS_URL.
  [[ -d $dir ]] || die "$dir does not exist (no cluster started there; see scripts/cluster.sh start)"
  [[ -f $dir/$MARKER ]] || die "$dir was not made by scripts/cluster.sh start; not touching it"
  [[ -f $dir/cluster.conf ]] || die "$dir/cluster.conf is missing (the start did not finish?)"
  # shellcheck source=/dev/null
  . "$dir/cluster.conf"
  [[ -f $dir/admin.key ]] || die "$dir/admin.key is missing"
  admin_key=$(<"$dir/admin.key")
}

http_port() { echo $((BASE_PORT + $1)); }
cluster_port() { echo $((BASE_PORT + 100 + $1)); }

port_in_use() {
  # Something answers on 127.0.0.1:$1?
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

alive() {
  # Process $1 exists and is not a zombie.
  local state
  kill -0 "$1" 2>/dev/null || return 1
  state=$(awk '/^State:/ { print $2 }' "/proc/$1/status" 2>/dev/null || true)
  [[ -n $state && $state != Z ]]
}

node_pid() {
  # node_pid I: the pid of node I if it runs (the pid file names a live tollgate started
  # for this DIR as node-I), else fails. Guards against a pid reused by another process.
  local i=$1 pid cmdline
  [[ -f $dir/node-$i.pid ]] || return 1
  pid=$(<"$dir/node-$i.pid")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  alive "$pid" || return 1
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $cmdline == *"--node-id node-$i "* && $cmdline == *"--data-dir $dir/node-$i "* ]] || return 1
  echo "$pid"
}

known_nodes() {
  # Every node number ever started in DIR (their data dirs), ascending.
  local d
  for d in "$dir"/node-*/; do
    [[ -d $d ]] || continue
    d=${d%/}
    d=${d##*/node-}
    [[ $d =~ ^[0-9]+$ ]] && echo "$d"
  done | sort -n
}

running_nodes() {
  local i
  for i in $(known_nodes); do
    node_pid "$i" >/dev/null && echo "$i"
  done
  return 0
}

wait_exit() {
  # wait_exit PID SECONDS: until PID is gone; fails on timeout.
  local pid=$1 deadline=$((SECONDS + $2))
  while alive "$pid"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

start_node() {
  # start_node I [SEEDS]: node I in the background, in its own session so that it outlives
  # this script and a Ctrl-C in its terminal.
  local i=$1 seeds=${2:-} hp cp pidfile n
  hp=$(http_port "$i")
  cp=$(cluster_port "$i")
  port_in_use "$hp" && die "port $hp (HTTP of node-$i) is in use; pick another --base-port"
  port_in_use "$cp" && die "port $cp (cluster of node-$i) is in use; pick another --base-port"
  mkdir -p "$dir/node-$i"
  pidfile="$dir/node-$i.pid"
  rm -f -- "$pidfile"
  local args=(--config "$CONFIG" --listen "127.0.0.1:$hp" --cluster-listen "127.0.0.1:$cp"
    --node-id "node-$i" --data-dir "$dir/node-$i" --database "$PG_URL" --redis "$REDIS_URL")
  [[ -n $seeds ]] && args+=(--join "$seeds")
  log "starting node-$i: http 127.0.0.1:$hp, cluster 127.0.0.1:$cp${seeds:+, joining $seeds}"
  # shellcheck disable=SC2016  # $$ and $0 are the inner shell's: it writes its pid, then execs
  env -u TOLLGATE_JOIN TOLLGATE_ADMIN_KEY="$admin_key" \
    setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$bin" "${args[@]}" \
    </dev/null >"$dir/node-$i.log" 2>&1 &
  for ((n = 0; n < 50; n++)); do
    [[ -s $pidfile ]] && break
    sleep 0.1
  done
  [[ -s $pidfile ]] || die "node-$i did not start (see $dir/node-$i.log)"
}

node_failed() {
  # node_failed I MESSAGE: show the end of node I's log and die.
  echo "--- last lines of $dir/node-$1.log:" >&2
  tail -n 20 "$dir/node-$1.log" >&2 2>/dev/null || true
  die "$2"
}

wait_health() {
  # wait_health I: until node I answers GET /health.
  local i=$1 url deadline=$((SECONDS + wait_seconds))
  url="http://127.0.0.1:$(http_port "$i")/health"
  until curl -sf -o /dev/null --max-time 2 "$url"; do
    node_pid "$i" >/dev/null || node_failed "$i" "node-$i exited during start"
    ((SECONDS < deadline)) || node_failed "$i" "node-$i did not answer $url within $wait_seconds s"
    sleep 0.1
  done
}

cluster_json() {
  # cluster_json I: GET /admin/cluster through node I.
  curl -sf --max-time 5 -H "Authorization: Bearer $admin_key" \
    "http://127.0.0.1:$(http_port "$1")/admin/cluster"
}

# The JSON of GET /admin/cluster is read with python3 (jq if there is no python3).
query() {
  # query MODE [ARGS] < JSON
  #   counts        "ALIVE FREE IDLE SIGNATURE": alive members, shards without a live lease,
  #                 alive active members holding no shard, and "node-1:87,node-2:85,..."
  #   node ID       "STATE ALIVE(0|1) SHARDS" of member ID ("missing 0 0" if unknown)
  #   table PIDS    a table of the members; PIDS is "node-1=PID node-2=- ..."
  if command -v python3 >/dev/null 2>&1; then
    python3 -c '
import json, sys
c = json.load(sys.stdin)
mode, members = sys.argv[1], c.get("members", [])
if mode == "counts":
    alive = [m for m in members if m["alive"]]
    print(len(alive), c.get("free_shards", -1),
          sum(1 for m in alive if m["state"] == "active" and m["shards"] == 0),
          ",".join("%s:%d" % (m["node_id"], m["shards"]) for m in alive) or "-")
elif mode == "node":
    m = next((m for m in members if m["node_id"] == sys.argv[2]), None)
    print("missing 0 0" if m is None else "%s %d %d" % (m["state"], m["alive"], m["shards"]))
else:
    pids = dict(p.split("=", 1) for p in sys.argv[2].split())
    fmt = "%-10s %-9s %-6s %7s  %-21s %-21s %s"
    print(fmt % ("node", "state", "alive", "shards", "http", "cluster", "pid"))
    for m in members:
        print(fmt % (m["node_id"], m["state"], "yes" if m["alive"] else "no", m["shards"],
                     m["http_address"], m["cluster_address"], pids.get(m["node_id"], "-")))
    epochs = [l["epoch"] for l in c.get("leases", [])]
    print("%d shards, %d free, highest epoch %d (asked %s)"
          % (c.get("shards", 0), c.get("free_shards", 0), max(epochs or [0]), c.get("node_id")))
' "$@"
  elif command -v jq >/dev/null 2>&1; then
    case "$1" in
      counts) jq -r '[.members[] | select(.alive)] as $a
                | "\($a | length) \(.free_shards) \([$a[] | select(.state == "active" and .shards == 0)] | length) \([$a[] | "\(.node_id):\(.shards)"] | join(",") | if . == "" then "-" else . end)"' ;;
      node) jq -r --arg n "$2" 'first((.members[] | select(.node_id == $n)
              | "\(.state) \(if .alive then 1 else 0 end) \(.shards)"), "missing 0 0")' ;;
      table)
        jq -r --arg pids "$2" '($pids | split(" ") | map(split("=") | {(.[0]): .[1]}) | add) as $p
          | (["node", "state", "alive", "shards", "http", "cluster", "pid"] | @tsv),
            (.members[] | [.node_id, .state, (if .alive then "yes" else "no" end),
                           (.shards | tostring), .http_address, .cluster_address,
                           ($p[.node_id] // "-")] | @tsv),
            "\(.shards) shards, \(.free_shards) free, highest epoch \([.leases[].epoch] | max // 0) (asked \(.node_id))"' ;;
    esac
  else
    die "python3 (or jq) is needed to read GET /admin/cluster"
  fi
}

any_running_node() {
  # any_running_node [EXCEPT]: the lowest running node other than EXCEPT.
  local i
  for i in $(running_nodes); do
    [[ $i == "${1:-}" ]] && continue
    echo "$i"
    return 0
  done
  return 1
}

wait_cluster() {
  # wait_cluster VIA ALIVE: until GET /admin/cluster through node VIA shows ALIVE alive
  # members, no free shard, every active member holding shards, and the shard counts
  # unchanged for settle_ms (longer than the renewal interval, lease_seconds / 4, of the
  # default 6 s lease: shards move on renewals, so a hand-over in progress shows).
  local via=$1 want=$2 deadline=$((SECONDS + wait_seconds)) json="" counts="" last="" since=0 now
  local alive free idle signature settle_ms=2000
  while :; do
    now=$((${EPOCHREALTIME/./} / 1000))
    if json=$(cluster_json "$via" 2>/dev/null) && counts=$(query counts <<<"$json"); then
      read -r alive free idle signature <<<"$counts"
      if [[ $alive == "$want" && $free == 0 && $idle == 0 ]]; then
        if [[ $signature != "$last" ]]; then
          last=$signature since=$now
        elif ((now - since >= settle_ms)); then
          return 0
        fi
      else
        last=""
      fi
    fi
    node_pid "$via" >/dev/null || node_failed "$via" "node-$via exited while waiting for the cluster"
    if ((SECONDS >= deadline)); then
      [[ -n $json ]] && { query table "" <<<"$json" >&2 || true; }
      node_failed "$via" "the cluster did not settle within $wait_seconds s (wanted $want alive members, every shard owned, and each active member holding shards; last seen: ${alive:-?} alive, ${free:-?} free shards, ${idle:-?} active members without shards)"
    fi
    sleep 0.2
  done
}

print_nodes() {
  local i pid
  for i in $(running_nodes); do
    pid=$(node_pid "$i")
    printf '  node-%-3s http://127.0.0.1:%-6s cluster 127.0.0.1:%-6s pid %-8s log %s\n' \
      "$i" "$(http_port "$i")" "$(cluster_port "$i")" "$pid" "$dir/node-$i.log"
  done
}

dir_args() {
  # " --dir DIR" when DIR is not the default, for the hints printed.
  [[ $dir == /tmp/tollgate-cluster ]] || printf ' --dir %s' "$dir"
}

# ---------------------------------------------------------------------------------------
# Commands.

start_pids=()
start_services_dir=
start_cleanup() {
  # A failed start stops what it started; node logs stay in DIR.
  local rc=$? pid
  trap - EXIT INT TERM
  if ((rc != 0)); then
    for pid in "${start_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${start_pids[@]}"; do
      wait_exit "$pid" 15 || kill -KILL "$pid" 2>/dev/null || true
    done
    if [[ -n $start_services_dir ]]; then
      bash "$root/scripts/services.sh" stop "$start_services_dir" >/dev/null 2>&1 || true
    fi
    echo "cluster.sh: start failed; stopped what it started; logs kept in $dir" \
      "(scripts/cluster.sh stop$(dir_args) removes it)" >&2
  fi
  exit "$rc"
}

cmd_start() {
  expect_args 1 "the number of nodes: start N"
  local n=${positional[0]} i
  [[ $n =~ ^[1-9][0-9]?$ ]] || die "N must be 1..99, not '$n'"
  BASE_PORT=${base_port:-8100}
  ((BASE_PORT >= 1 && BASE_PORT + 200 <= 65535)) || die "--base-port must be 1..65335"
  CONFIG=${config:-$root/config/tollgate.json}
  [[ -f $CONFIG ]] || die "config file $CONFIG not found"

  if [[ -d $dir && -n "$(ls -A "$dir")" ]]; then
    if [[ -f $dir/$MARKER && -n "$(running_nodes)" ]]; then
      die "a cluster already runs in $dir (scripts/cluster.sh stop$(dir_args) first)"
    fi
    die "$dir is not empty (scripts/cluster.sh stop$(dir_args) removes a cluster's directory, or pick another --dir)"
  fi
  for ((i = 1; i <= n; i++)); do
    port_in_use $((BASE_PORT + i)) && die "port $((BASE_PORT + i)) is in use; pick another --base-port"
    port_in_use $((BASE_PORT + 100 + i)) &&
      die "port $((BASE_PORT + 100 + i)) is in use; pick another --base-port"
  done

  if ((build)); then
    bash "$root/scripts/deps.sh" --test
    if [[ ! -x $bin ]]; then
      log "building Release (scripts/build.sh release)"
      bash "$root/scripts/build.sh" release
    fi
  fi
  [[ -x $bin ]] || die "$bin is missing (run without --no-build, or scripts/build.sh release)"
  command -v curl >/dev/null 2>&1 || die "curl is missing (scripts/deps.sh)"
  command -v python3 >/dev/null 2>&1 || command -v jq >/dev/null 2>&1 ||
    die "python3 (or jq) is needed to read GET /admin/cluster"

  mkdir -p "$dir"
  chmod 755 "$dir" # PostgreSQL runs as user postgres under DIR/services
  touch "$dir/$MARKER"
  trap start_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM

  log "starting PostgreSQL and Redis (scripts/services.sh start $dir/services)"
  start_services_dir="$dir/services"
  bash "$root/scripts/services.sh" start "$dir/services" >"$dir/services.log" 2>&1 ||
    { cat "$dir/services.log" >&2; die "scripts/services.sh start failed"; }
  # shellcheck source=/dev/null
  . "$dir/services/env"
  PG_URL=$TOLLGATE_TEST_PG_URL
  REDIS_URL=$TOLLGATE_TEST_REDIS_URL

  admin_key="tg-admin-$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')"
  (umask 077 && echo "$admin_key" >"$dir/admin.key")
  {
    printf 'BASE_PORT=%q\n' "$BASE_PORT"
    printf 'CONFIG=%q\n' "$CONFIG"
    printf 'PG_URL=%q\n' "$PG_URL"
    printf 'REDIS_URL=%q\n' "$REDIS_URL"
  } >"$dir/cluster.conf"

  local seed
  seed="127.0.0.1:$(cluster_port 1)"
  for ((i = 1; i <= n; i++)); do
    if ((i == 1)); then start_node 1; else start_node "$i" "$seed"; fi
    start_pids+=("$(<"$dir/node-$i.pid")")
    wait_health "$i"
  done
  log "waiting for $n alive members and every shard owned"
  wait_cluster 1 "$n"
  trap - EXIT INT TERM

  echo
  echo "tollgate cluster of $n node(s) in $dir"
  print_nodes
  echo "admin key:  $dir/admin.key   (ADMIN=\$(cat $dir/admin.key))"
  echo "database:   $PG_URL"
  echo "cluster:    curl -s 127.0.0.1:$(http_port 1)/admin/cluster -H \"Authorization: Bearer \$ADMIN\""
  echo "status:     scripts/cluster.sh status$(dir_args)"
  echo "grow:       scripts/cluster.sh add$(dir_args)"
  echo "shrink:     scripts/cluster.sh drain I$(dir_args)"
  echo "stop:       scripts/cluster.sh stop$(dir_args)"
}

cmd_add() {
  expect_args 0 "no arguments"
  load_state
  local last i seeds="" r
  last=$(known_nodes | tail -n 1)
  i=$((${last:-0} + 1))
  ((i <= 99)) || die "node numbers go up to 99"
  for r in $(running_nodes); do
    seeds+="${seeds:+,}127.0.0.1:$(cluster_port "$r")"
  done
  [[ -n $seeds ]] || log "no node is running: node-$i starts alone (members are also found in the database)"
  local want
  want=$(($(running_nodes | wc -l) + 1))
  start_node "$i" "$seeds"
  wait_health "$i"
  log "waiting for node-$i to hold shards"
  wait_cluster "$i" "$want"
  echo "node-$i runs: http://127.0.0.1:$(http_port "$i"), pid $(node_pid "$i"), log $dir/node-$i.log"
}

cmd_drain() {
  expect_args 1 "a node number: drain I"
  load_state
  local i via pid code body line state shards deadline free
  i=$(node_index "${positional[0]}")
  pid=$(node_pid "$i") || die "node-$i is not running"
  via=$(any_running_node "$i") ||
    die "node-$i is the only running node: nobody can take its shards (use scripts/cluster.sh stop)"

  log "draining node-$i through node-$via"
  body=$(mktemp)
  code=$(curl -s -o "$body" -w '%{http_code}' --max-time 10 -X POST \
    -H "Authorization: Bearer $admin_key" \
    "http://127.0.0.1:$(http_port "$via")/admin/cluster/drain/node-$i") || code=000
  if [[ $code != 202 ]]; then
    cat "$body" >&2 && echo >&2
    rm -f -- "$body"
    die "POST /admin/cluster/drain/node-$i answered $code (wanted 202)"
  fi
  rm -f -- "$body"

  log "waiting for node-$i to hand all its shards over"
  deadline=$((SECONDS + wait_seconds))
  while :; do
    if line=$(cluster_json "$via" 2>/dev/null | query node "node-$i") &&
      read -r state _ shards <<<"$line" && [[ $state == draining && $shards == 0 ]] &&
      free=$(cluster_json "$via" | query counts | cut -d' ' -f2) && [[ $free == 0 ]]; then
      break
    fi
    node_pid "$i" >/dev/null || node_failed "$i" "node-$i exited while draining"
    ((SECONDS < deadline)) ||
      node_failed "$i" "node-$i still holds shards after $wait_seconds s (state ${state:-?}, shards ${shards:-?})"
    sleep 0.2
  done

  log "node-$i holds no shard; sending SIGTERM (pid $pid)"
  kill -TERM "$pid"
  wait_exit "$pid" "$wait_seconds" ||
    node_failed "$i" "node-$i (pid $pid) did not exit within $wait_seconds s after SIGTERM"
  rm -f -- "$dir/node-$i.pid"
  line=$(cluster_json "$via" | query node "node-$i") || line="? ? ?"
  read -r state _ _ <<<"$line"
  echo "node-$i drained and exited; the cluster records it as '$state'"
}

cmd_kill() {
  expect_args 1 "a node number: kill I"
  load_state
  local i pid
  i=$(node_index "${positional[0]}")
  pid=$(node_pid "$i") || die "node-$i is not running"
  kill -KILL "$pid"
  wait_exit "$pid" 10 || die "node-$i (pid $pid) is still there after kill -9"
  rm -f -- "$dir/node-$i.pid"
  echo "node-$i (pid $pid) killed; its leases expire within the lease (cluster.lease_seconds," \
    "6 s by default), then the others take its shards over (scripts/cluster.sh status$(dir_args))"
}

cmd_status() {
  expect_args 0 "no arguments"
  load_state
  local via pids="" i json
  via=$(any_running_node) || die "no node of $dir is running"
  for i in $(known_nodes); do
    pids+=" node-$i=$(node_pid "$i" || echo -)"
  done
  json=$(cluster_json "$via") || die "GET /admin/cluster on node-$via failed"
  query table "$pids" <<<"$json"
}

cmd_stop() {
  expect_args 0 "no arguments"
  if [[ ! -d $dir ]]; then
    echo "cluster.sh: $dir does not exist; nothing to stop" >&2
    return 0
  fi
  [[ -f $dir/$MARKER ]] || die "$dir was not made by scripts/cluster.sh start; not touching it"
  local i pid failed=0
  local -A pid_of=()
  for i in $(running_nodes); do
    pid_of[$i]=$(node_pid "$i")
  done
  for i in "${!pid_of[@]}"; do
    log "stopping node-$i (SIGTERM to pid ${pid_of[$i]})"
    kill -TERM "${pid_of[$i]}" 2>/dev/null || true
  done
  for i in "${!pid_of[@]}"; do
    if wait_exit "${pid_of[$i]}" "$wait_seconds"; then
      rm -f -- "$dir/node-$i.pid"
    else
      echo "cluster.sh: node-$i (pid ${pid_of[$i]}) did not exit within $wait_seconds s" \
        "(see $dir/node-$i.log; scripts/cluster.sh kill $i$(dir_args) ends it)" >&2
      failed=1
    fi
  done
  ((failed)) && die "not every node stopped; $dir kept"
  if [[ -d $dir/services ]]; then
    log "stopping PostgreSQL and Redis"
    bash "$root/scripts/services.sh" stop "$dir/services" >/dev/null ||
      die "scripts/services.sh stop $dir/services failed; $dir kept"
  fi
  rm -rf -- "$dir"
  echo "cluster in $dir stopped and removed"
}

"cmd_$cmd"
