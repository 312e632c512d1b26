#!/usr/bin/env bash
# Throwaway PostgreSQL 15 and Redis on loopback for tests and benchmarks.
#
#   scripts/services.sh start [--durable] [DIR]
#                                     start both on free ports, data under DIR
#                                     (default: a new mktemp -d under /tmp);
#                                     writes DIR/env and prints it
#   scripts/services.sh stop DIR      stop both and remove DIR
#   scripts/services.sh env DIR       print DIR/env
#
# DIR/env holds:
#   export TOLLGATE_TEST_PG_URL=postgresql://postgres@127.0.0.1:PORT/postgres
#   export TOLLGATE_TEST_REDIS_URL=redis://127.0.0.1:PORT
# Use it with: . DIR/env
#
# PostgreSQL refuses to run as root, so DIR/pg is owned by postgres and initdb/pg_ctl run
# through runuser. DIR must be traversable by the postgres user (/tmp is; /root, /work
# usually are not). For tests, PostgreSQL's durability is off (fsync, synchronous_commit,
# full_page_writes): a test needs the server's behaviour, not its flushes. --durable keeps
# them on, as PostgreSQL does by default (a commit returns once its WAL is flushed): as in
# production, and as benchmarks need, since a ledger on a server that does not flush is
# not comparable with one that does.
set -euo pipefail

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
MARKER=.tollgate-services

usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"; }
die() { echo "services.sh: $*" >&2; exit 1; }

as_postgres() {
  # cd somewhere postgres can read so tools do not trip over the caller's cwd.
  (cd / && runuser -u postgres -- "$@")
}

port_in_use() {
  # Something answers on 127.0.0.1:$1?
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

free_port() {
  # A port that is free now, not equal to $1 (the other service's port).
  local avoid=${1:-0} port i
  for ((i = 0; i < 50; i++)); do
    if command -v python3 >/dev/null 2>&1; then
      port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
    else
      port=$((20000 + RANDOM % 30000))
    fi
    if [[ "$port" != "$avoid" ]] && ! port_in_use "$port"; then
      echo "$port"
      return 0
    fi
  done
  die "could not find a free port"
}

alive() {
  # Process $1 exists and is not a zombie waiting for its (re)parent to reap it.
  local state
  kill -0 "$1" 2>/dev/null || return 1
  state=$(awk '/^State:/ { print $2 }' "/proc/$1/status" 2>/dev/null || true)
  [[ "$state" != Z ]]
}

stop_services() {
  local dir=$1 pid i
  if [[ -f "$dir/pg/postmaster.pid" ]]; then
    as_postgres "$PG_BIN/pg_ctl" stop -D "$dir/pg" -m fast -w -t 30 >/dev/null ||
      echo "services.sh: pg_ctl stop failed (see $dir/pg.log)" >&2
  fi
  if [[ -f "$dir/redis.pid" ]]; then
    pid=$(<"$dir/redis.pid")
    if [[ -f "$dir/ports" ]]; then
      # shellcheck source=/dev/null
      . "$dir/ports"
      redis-cli -h 127.0.0.1 -p "${REDIS_PORT:?}" shutdown nosave >/dev/null 2>&1 || true
    fi
    # Wait for it to go; fall back to signalling the pid we started.
    for ((i = 0; i < 100; i++)); do
      alive "$pid" || break
      if ((i == 50)); then kill "$pid" 2>/dev/null || true; fi
      sleep 0.1
    done
    alive "$pid" && echo "services.sh: redis (pid $pid) did not stop" >&2
  fi
  return 0
}

start_failed() {
  # Show the failing log, stop whatever did start, keep DIR for inspection.
  local dir=$1 log=$2
  tail -n 20 "$dir/$log" >&2 2>/dev/null || true
  stop_services "$dir"
  die "start failed; logs kept in $dir (scripts/services.sh stop $dir removes it)"
}

cmd_start() {
  local durability="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  if [[ "${1:-}" == --durable ]]; then
    durability="-c fsync=on -c synchronous_commit=on -c full_page_writes=on"
    shift
  fi
  local dir=${1:-}
  if [[ -z "$dir" ]]; then
    dir=$(mktemp -d /tmp/tollgate-svc.XXXXXX)
  else
    mkdir -p "$dir"
    [[ -z "$(ls -A "$dir")" ]] || die "$dir is not empty (stop it first, or pick another DIR)"
  fi
  dir=$(cd "$dir" && pwd)
  chmod 755 "$dir"
  touch "$dir/$MARKER"

  [[ -x "$PG_BIN/initdb" ]] || die "$PG_BIN/initdb not found (run scripts/deps.sh --test)"
  command -v redis-server >/dev/null 2>&1 || die "redis-server not found (run scripts/deps.sh --test)"

  local pg_port redis_port
  pg_port=$(free_port)
  redis_port=$(free_port "$pg_port")
  printf 'PG_PORT=%s\nREDIS_PORT=%s\n' "$pg_port" "$redis_port" >"$dir/ports"


  # PostgreSQL.
  mkdir -p "$dir/pg" "$dir/pgsock"
  touch "$dir/pg.log"
  chown postgres:postgres "$dir/pg" "$dir/pgsock" "$dir/pg.log"
  chmod 700 "$dir/pg"
  as_postgres test -w "$dir/pg" ||
    die "user postgres cannot reach $dir (use a DIR under /tmp)"
  as_postgres "$PG_BIN/initdb" -D "$dir/pg" -A trust -U postgres --no-sync \
    -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 ||
    start_failed "$dir" initdb.log
  as_postgres "$PG_BIN/pg_ctl" start -w -t 60 -D "$dir/pg" -l "$dir/pg.log" \
    -o "-p $pg_port -k $dir/pgsock -c listen_addresses=127.0.0.1 $durability -c max_connections=300" \
    >/dev/null ||
    start_failed "$dir" pg.log

  # Redis.
  mkdir -p "$dir/redis"
  redis-server --port "$redis_port" --bind 127.0.0.1 --daemonize yes \
    --dir "$dir/redis" --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" \
    --save '' --appendonly no ||
    start_failed "$dir" redis.log
  local i ready=0
  for ((i = 0; i < 100; i++)); do
    if [[ "$(redis-cli -h 127.0.0.1 -p "$redis_port" ping 2>/dev/null)" == PONG ]]; then
      ready=1
      break
    fi
    sleep 0.1
  done
  ((ready)) || start_failed "$dir" redis.log
  # redis writes its pidfile just after it starts answering; make sure stop can find it.
  for ((i = 0; i < 50; i++)); do
    [[ -s "$dir/redis.pid" ]] && break
    sleep 0.1
  done

  {
    echo "export TOLLGATE_TEST_PG_URL=postgresql://postgres@127.0.0.1:$pg_port/postgres"
    echo "export TOLLGATE_TEST_REDIS_URL=redis://127.0.0.1:$redis_port"
  } >"$dir/env"
  echo "# services in $dir (stop: scripts/services.sh stop $dir)"
  cat "$dir/env"
}

cmd_stop() {
  local dir=${1:-}
  [[ -n "$dir" ]] || die "usage: services.sh stop DIR"
  if [[ ! -d "$dir" ]]; then
    echo "services.sh: $dir does not exist; nothing to stop" >&2
    return 0
  fi
  [[ -f "$dir/$MARKER" ]] || die "$dir was not made by services.sh start; not touching it"
  stop_services "$dir"
  rm -rf -- "$dir"
}

cmd_env() {
  local dir=${1:-}
  [[ -n "$dir" ]] || die "usage: services.sh env DIR"
  [[ -f "$dir/env" ]] || die "no env file in $dir (not started?)"
  cat "$dir/env"
}

case "${1:-}" in
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  env) shift; cmd_env "$@" ;;
  -h|--help) usage ;;
  *) usage >&2; exit 2 ;;
esac
