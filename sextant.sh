#!/usr/bin/env bash
# Quick-start entry point: installs dependencies, builds the sextant binary, runs it.
set -euo pipefail
root=$(cd "$(dirname "$0")" && pwd)
if ! "$root/scripts/build.sh" sextant >"$root/build.log" 2>&1; then
  cat "$root/build.log" >&2
  exit 1
fi
exec "$root/build/cli/sextant" "$@"
