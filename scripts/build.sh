#!/usr/bin/env bash
# Installs missing dependencies, configures build/ (Release) and builds the given
# targets (default: everything) with -j2.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/deps.sh"
cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
if [ $# -gt 0 ]; then
  cmake --build "$root/build" -j2 --target "$@" >&2
else
  cmake --build "$root/build" -j2 >&2
fi
