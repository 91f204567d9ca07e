#!/usr/bin/env bash
# Quick-start entry point: installs what the command needs, builds it, runs it.
# plan, compare, calibrate, export (every command that needs no training): the planner's packages and the sextant binary.
# execute, profile: also LibTorch and OpenMPI, and sextant-runtime.
set -euo pipefail
root=$(cd "$(dirname "$0")" && pwd)
targets=(sextant)
case "${1:-}" in
  execute | profile) targets+=(sextant-runtime) ;;
esac
if ! "$root/scripts/build.sh" "${targets[@]}" >"$root/build.log" 2>&1; then
  cat "$root/build.log" >&2
  exit 1
fi
exec "$root/build/cli/sextant" "$@"
