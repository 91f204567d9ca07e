#!/usr/bin/env bash
# Builds the libFuzzer target with clang (ASan + UBSan) and runs it for $1 seconds
# (default 600) on a corpus seeded with the shipped model and cluster files and two plan
# files written by this build's `sextant plan`.
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
cmake --build "$build" -j2 --target fuzz_json_readers sextant >&2
corpus="$build/corpus"
mkdir -p "$corpus"
cp "$root"/examples/models/*.json "$root"/examples/clusters/*.json "$root"/profiles/clusters/*.json "$corpus/"
"$build/cli/sextant" plan --model "$root/examples/models/tiny-llama.json" --cluster local-cpu --gpus 4 \
  --global-batch 16 --seq 64 --precision fp32 --fix pp=2,vpp=2,tp=2 --top 1 --db "$build/fuzz.db" \
  --out "$corpus/plan-tiny.json" >/dev/null
"$build/cli/sextant" plan --model "$root/examples/models/llama-2-7b.json" --cluster dgx-h100-80gb --gpus 64 \
  --global-batch 512 --seq 4096 --top 1 --db "$build/fuzz.db" --out "$corpus/plan-llama.json" >/dev/null
"$build/fuzz/fuzz_json_readers" "$corpus" -max_total_time="$seconds" -max_len=16384 -timeout=10 \
  -print_final_stats=1 2>&1 | tail -n 25
