#!/usr/bin/env bash
# Build tollgate with a CMake preset (default: release).
#
#   scripts/build.sh [preset]     presets: release debug asan tsan (see CMakePresets.json)
#
# Output lands in build/<preset>/, binaries in build/<preset>/bin/. Configures only when
# build/<preset>/build.ninja is missing (ninja re-runs CMake itself when CMakeLists change).
# CMake uses ccache automatically when it is installed.
set -euo pipefail

root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

preset=${1:-release}
if (($# > 1)); then
  echo "usage: scripts/build.sh [preset]" >&2
  exit 2
fi

if command -v ccache >/dev/null 2>&1; then
  # Paths under the checkout are hashed relative to it, so that another clone of the repo
  # (CI's fresh checkout) hits the same cache entries.
  export CCACHE_BASEDIR="$root" CCACHE_NOHASHDIR=1
  # Cache stays in ccache's default dir (~/.cache/ccache) unless CCACHE_DIR is set.
  if [[ "$(ccache --get-config max_size 2>/dev/null || true)" != "2.0G" ]]; then
    ccache -M 2G >/dev/null
  fi
fi

if [[ ! -f "build/$preset/build.ninja" ]]; then
  cmake --preset "$preset"
fi
cmake --build --preset "$preset" -j "$(nproc)"
