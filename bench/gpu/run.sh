#!/usr/bin/env bash
# On the GPU machine: build sextant against the installed PyTorch's LibTorch, run the
# kernel tests and benchmark, then train GPT-2-124M- and ~350M-shaped models with
# `sextant execute` and with the PyTorch reference (eager, torch.compile), and print the
# table of docs/benchmarks.md. Logs go to $OUT (default bench-gpu-out).
#   bench/gpu/run.sh [h100-sxm-80gb|h200-141gb]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cluster=${1:-h100-sxm-80gb}
out=${OUT:-bench-gpu-out}
mkdir -p "$out"
{  # what this machine has: sextant needs MPI, SQLiteCpp, Boost, CLI11, Eigen, nlohmann-json, fmt, GTest
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
  for tool in nvcc mpirun mpicxx cmake g++; do echo "$tool: $(command -v $tool || echo missing)"; done
  dpkg -l 2>/dev/null | grep -E 'libopenmpi|libsqlitecpp|libboost-graph|libcli11|nlohmann|libeigen3|libgtest|libbenchmark|libnccl' || true
} >"$out/env.txt" 2>&1
torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
if ! cmake -S "$root" -B "$root/build-gpu" -DCMAKE_PREFIX_PATH="$torch_prefix" -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DSEXTANT_WITH_EXECUTOR=ON -DSEXTANT_BUILD_BENCH=ON -DSEXTANT_BUILD_TESTS=ON >"$out/configure.log" 2>&1; then
  echo "configure failed (what is missing: $out/env.txt):"; tail -20 "$out/configure.log"; exit 1
fi
cmake --build "$root/build-gpu" -j"$(nproc)" >"$out/build.log" 2>&1
s="$root/build-gpu/cli/sextant"
(cd "$root/build-gpu" && ctest -R 'Kernel|OptimizerStep|LossScaler' --output-on-failure) >"$out/kernel-tests.log" 2>&1
"$root/build-gpu/bench/bench_kernels" | tee "$out/bench-kernels.txt"
"$s" profile --name "$cluster-measured" --db "$out/sextant.db" >"$out/profile.log" 2>&1

# GPT-2 124M and 350M shapes, seq 1024, 32 sequences per step (micro-batch 8 x 4).
for model in gpt2 gpt2-medium; do
  "$s" plan --model "$root/examples/models/$model.json" --cluster "$cluster" --gpus 1 --global-batch 32 --seq 1024 \
    --precision bf16 --fix dp=1,tp=1,pp=1,vpp=1,zero=0,micro_batch=8,recompute=none,sequence_parallel=false,offload=none \
    --top 1 --db "$out/sextant.db" --out "$out/plan-$model.json" >"$out/plan-$model.txt"
  "$s" execute --plan "$out/plan-$model.json" --steps 30 --device cuda --db "$out/sextant.db" \
    --metrics-out "$out/sextant-$model.jsonl" >"$out/execute-$model.log" 2>&1
  for mode in eager compile; do
    python3 "$root/bench/gpu/pytorch_reference.py" --config "$root/examples/models/$model.json" --micro-batch 8 \
      --grad-accum 4 --seq 1024 --steps 30 $([ "$mode" = compile ] && echo --compile) >"$out/torch-$model-$mode.json"
  done
done
"$s" compare --db "$out/sextant.db" | tee "$out/compare.txt"

python3 - "$out" "$cluster" <<'PY'
import json, statistics, sys
out, cluster = sys.argv[1], sys.argv[2]
peak_flops = 989e12  # dense bf16, H100 SXM and H200 datasheets
print(f"| model | sextant tok/s | eager tok/s | compile tok/s | sextant/eager | sextant/compile | MFU sextant / eager / compile | peak GiB sextant / eager / compile |")
print("|---|---|---|---|---|---|---|---|")
for model in ["gpt2", "gpt2-medium"]:
    steps = [json.loads(l) for l in open(f"{out}/sextant-{model}.jsonl")][5:]  # after warm-up
    ours = statistics.median(s["tokens_per_s"] for s in steps)
    flops_per_token = statistics.median(s["mfu"] * peak_flops / s["tokens_per_s"] for s in steps)  # sextant's convention
    peak = max(s["peak_bytes"] for s in steps)
    ref = {m: json.load(open(f"{out}/torch-{model}-{m}.json")) for m in ["eager", "compile"]}
    mfu = lambda tps: 100 * tps * flops_per_token / peak_flops
    print(f"| {model} | {ours:,.0f} | {ref['eager']['tokens_per_s']:,.0f} | {ref['compile']['tokens_per_s']:,.0f} | "
          f"{ours / ref['eager']['tokens_per_s']:.2f}x | {ours / ref['compile']['tokens_per_s']:.2f}x | "
          f"{mfu(ours):.1f}% / {mfu(ref['eager']['tokens_per_s']):.1f}% / {mfu(ref['compile']['tokens_per_s']):.1f}% | "
          f"{peak / 2**30:.1f} / {ref['eager']['peak_bytes'] / 2**30:.1f} / {ref['compile']['peak_bytes'] / 2**30:.1f} |")
print(f"device: {ref['eager']['device']}, torch {ref['eager']['torch']}, {ref['eager']['date']}, cluster {cluster}")
PY
