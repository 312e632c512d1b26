#!/usr/bin/env bash
# Install the Debian (bookworm) packages tollgate needs, only those missing.
#
#   scripts/deps.sh            build + run: toolchain, libraries, curl
#   scripts/deps.sh --test     also the test services (postgresql, redis-server)
#   scripts/deps.sh --bench    also wrk, nghttpx, openssl and gnuplot (flags combine)
#
# Prints one line naming what it installs, or nothing when everything is present.
# apt-get update runs only when something is missing, so a warm machine is instant.
set -euo pipefail

usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"; }

want_test=0
want_bench=0
for arg in "$@"; do
  case "$arg" in
    --test) want_test=1 ;;
    --bench) want_bench=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "deps.sh: unknown argument: $arg" >&2; usage >&2; exit 2 ;;
  esac
done

# Toolchain.
packages=(cmake ninja-build g++ ccache pkg-config)
# Libraries. librestinio-dev pulls libfmt-dev and libhttp-parser-dev itself but not
# standalone asio (its CMake target needs <asio.hpp> and links fmt::fmt + http_parser).
packages+=(libcaf-dev librestinio-dev libasio-dev libfmt-dev libhttp-parser-dev
  nlohmann-json3-dev libsoci-dev libsqlite3-dev libpq-dev libhiredis-dev
  libcurl4-openssl-dev libssl-dev libspdlog-dev libboost-test-dev libjemalloc-dev libsimdjson-dev)
# Runtime tools. ca-certificates: libcurl needs the CA bundle to verify HTTPS upstreams
# (it is only a Recommends of libcurl4, so --no-install-recommends would skip it).
packages+=(curl ca-certificates)
if ((want_test)); then
  # postgresql pulls postgresql-15 (+ psql); redis-server pulls redis-tools (redis-cli).
  # openssl: the cluster TLS test makes its own CA and node certificates.
  # nghttp2-proxy: nghttpx, an HTTPS and HTTP/2 front for the mock upstream.
  packages+=(postgresql redis-server openssl nghttp2-proxy)
fi
if ((want_bench)); then
  # nghttpx and openssl: the capacity arm over HTTP/2 (HTTPS with a CA made for the run).
  # gnuplot-nox: the plot of latency percentiles per arm (SVG, no X needed).
  packages+=(wrk nghttp2-proxy openssl gnuplot-nox)
fi

missing=()
for pkg in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  if [[ "$status" != "install ok installed" ]]; then
    missing+=("$pkg")
  fi
done

((${#missing[@]} == 0)) && exit 0

echo "deps.sh: installing ${missing[*]}"

sudo=()
if ((EUID != 0)); then
  if command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
  else
    echo "deps.sh: must run as root (or with sudo available) to install packages" >&2
    exit 1
  fi
fi

log=$(mktemp /tmp/tollgate-deps.XXXXXX.log)
if ! { "${sudo[@]}" apt-get update -q &&
       "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
         apt-get install -y -q --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
  tail -n 40 "$log" >&2
  echo "deps.sh: apt-get failed; full log in $log" >&2
  exit 1
fi
rm -f "$log"
