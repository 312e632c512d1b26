#!/usr/bin/env bash
# Install what is missing (with the test services), build the release preset, start a
# throwaway PostgreSQL + Redis, run the test suite, stop the services on any exit.
#
#   scripts/test.sh [ctest args...]     e.g. scripts/test.sh -R ledger
#
# Exits with ctest's status and prints the wall time of each phase at the end.
set -euo pipefail

root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

phases=()
phase=deps
phase_start=$EPOCHREALTIME
svc_dir=""

elapsed() { # seconds since $1 (an EPOCHREALTIME), with one decimal
  awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'
}
end_phase() { # end_phase NEXT: close the current phase, start NEXT
  phases+=("$phase $(elapsed "$phase_start")s")
  phase=$1
  phase_start=$EPOCHREALTIME
}

# shellcheck disable=SC2317  # invoked via trap
on_exit() {
  local rc=$?
  trap - EXIT INT TERM
  [[ -n "$phase" ]] && phases+=("$phase(interrupted/failed) $(elapsed "$phase_start")s")
  if [[ -n "$svc_dir" ]]; then
    bash scripts/services.sh stop "$svc_dir" || true
  fi
  if ((${#phases[@]})); then
    echo "test.sh: wall time: ${phases[*]}"
  fi
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bash scripts/deps.sh --test
end_phase build

bash scripts/build.sh release
end_phase services

svc_dir=$(mktemp -d /tmp/tollgate-test.XXXXXX)
bash scripts/services.sh start "$svc_dir"
# shellcheck source=/dev/null
. "$svc_dir/env"
end_phase tests

rc=0
ctest --preset release -j2 --output-on-failure "$@" || rc=$?
end_phase ""
exit "$rc"
