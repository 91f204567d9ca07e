#!/usr/bin/env bash
# Installs the Debian packages sextant builds against, only those missing.
#   scripts/deps.sh planner   the planner: `sextant` (plan, compare, calibrate, export,
#                             and later commands that need no training), its tests and benchmarks
#   scripts/deps.sh [all]     also the executor (sextant-runtime: execute, profile):
#                             LibTorch and OpenMPI
# Uses sudo only when not root. Safe to run repeatedly.
set -euo pipefail
what=${1:-all}
planner=(cmake g++ make pkg-config libboost-graph-dev libsqlitecpp-dev libsqlite3-dev
         libcli11-dev nlohmann-json3-dev libeigen3-dev libgtest-dev libgmock-dev libbenchmark-dev
         python3)  # python3 >= 3.11 (tomllib): the exporter tests read the torchtitan TOML back
executor=(libtorch-dev libopenblas0-pthread libopenmpi-dev openmpi-bin)
case "$what" in
  planner) packages=("${planner[@]}") ;;
  all) packages=("${planner[@]}" "${executor[@]}") ;;
  *) echo "usage: scripts/deps.sh [planner|all]" >&2; exit 2 ;;
esac
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "sextant: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
