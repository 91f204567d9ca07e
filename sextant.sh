#!/usr/bin/env bash
# Quick-start entry point: installs dependencies, builds, then runs `sextant "$@"`.
set -euo pipefail
root=$(cd "$(dirname "$0")" && pwd)
"$root/scripts/build.sh" >/dev/null 2>"$root/build.log" || { cat "$root/build.log" >&2; exit 1; }
exec "$root/build/cli/sextant" "$@"
