#!/usr/bin/env bash
# Installs the Debian packages sextant builds against, only those missing.
# Uses sudo only when not root. Safe to run repeatedly.
set -euo pipefail
packages=(cmake g++ make pkg-config libboost-graph-dev libsqlitecpp-dev libsqlite3-dev
          libcli11-dev nlohmann-json3-dev libgtest-dev libgmock-dev libbenchmark-dev
          libtorch-dev libopenblas0-pthread libopenmpi-dev openmpi-bin libeigen3-dev
          python3)  # python3 >= 3.11 (tomllib): the exporter tests read the torchtitan TOML back
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "sextant: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
