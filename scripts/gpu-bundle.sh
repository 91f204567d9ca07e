#!/usr/bin/env bash
# Saves the Debian packages that the GPU benchmark machine lacks into bundle/debs/ (git-
# ignored), so that bench/gpu/run.sh can build there without a package registry. Run it
# on a Debian 12 machine that reaches its registry (the development machine), then copy
# or sync the checkout, bundle/ included, to the GPU machine.
#
# What the GPU machine (Ubuntu 24.04, seen 2026-11-22) lacks: SQLiteCpp and the sqlite3
# headers. Debian's SQLiteCpp is a static library (libSQLiteCpp.a, no runtime package);
# libsqlite3-0 is saved too because libsqlite3-dev's libsqlite3.so is a relative symlink
# to the libsqlite3.so.0.8.6 it carries. Debian 12's glibc (2.36) is older than Ubuntu
# 24.04's (2.39), so these binaries load there. About 1.9 MB in all.
#   scripts/gpu-bundle.sh            # amd64, the GPU machine's architecture
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/bundle/debs"
packages=(libsqlitecpp-dev libsqlite3-dev libsqlite3-0)
arch=amd64

mkdir -p "$dest"
rm -f "$dest"/*.deb "$dest/SHA256SUMS"
download() { (cd "$dest" && apt-get download -q -o APT::Sandbox::User=root "${packages[@]/%/:$arch}"); }
if ! download; then  # the package lists may be stale or absent
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  download
fi
(cd "$dest" && sha256sum ./*.deb >SHA256SUMS)
{
  echo "saved by scripts/gpu-bundle.sh on $(hostname) at $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  . /etc/os-release && echo "from: $PRETTY_NAME"
  for deb in "$dest"/*.deb; do dpkg-deb -W --showformat='${Package} ${Version} ${Architecture}\n' "$deb"; done
} >"$root/bundle/MANIFEST"
cat "$root/bundle/MANIFEST"
du -sh "$dest"
echo "bundle ready: bench/gpu/run.sh unpacks it into its build folder (never into /)"
