#!/usr/bin/env bash
# Install what is missing, build the release preset and run the gateway in the foreground
# with the default config (SQLite in ./data, listening on 127.0.0.1:8080).
#
#   scripts/run.sh [tollgate args...]
set -euo pipefail

root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

bash scripts/deps.sh
bash scripts/build.sh release
exec build/release/bin/tollgate --config config/tollgate.json "$@"
