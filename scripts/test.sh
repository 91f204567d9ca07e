#!/usr/bin/env bash
# The whole test suite: installs dependencies, builds everything, runs every ctest
# suite (the accuracy table against Korthikanti et al. is printed by its test).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/build.sh"
cd "$root/build"
ctest --output-on-failure -j2
