#!/usr/bin/env bash
# Builds the libFuzzer target with clang (ASan + UBSan) and runs it for $1 seconds
# (default 600) on a corpus seeded with the shipped model and cluster files.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-600}
"$root/scripts/deps.sh" planner
command -v clang++ >/dev/null || { echo "fuzz: clang++ not found" >&2; exit 1; }
build="$root/build-fuzz"
flags="-fsanitize=address,undefined,fuzzer-no-link -fno-sanitize-recover=undefined -g -O1"
cmake -S "$root" -B "$build" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" \
  -DSEXTANT_BUILD_FUZZ=ON -DSEXTANT_WITH_EXECUTOR=OFF -DSEXTANT_BUILD_TESTS=OFF -DSEXTANT_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" -j2 --target fuzz_json_readers >&2
corpus="$build/corpus"
mkdir -p "$corpus"
cp "$root"/examples/models/*.json "$root"/examples/clusters/*.json "$root"/profiles/clusters/*.json "$corpus/"
"$build/fuzz/fuzz_json_readers" "$corpus" -max_total_time="$seconds" -max_len=4096 -timeout=10 \
  -print_final_stats=1 2>&1 | tail -n 25
