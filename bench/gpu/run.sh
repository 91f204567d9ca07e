#!/usr/bin/env bash
# On the GPU machine, in one command: build sextant against the installed PyTorch's
# LibTorch and NCCL (and SQLiteCpp from bundle/debs/ where the system lacks it), run the
# tests, bench_kernels and `sextant profile`, then train GPT-2-124M- and ~350M-shaped
# models with `sextant execute` and with the PyTorch reference (eager, torch.compile),
# and print the table of docs/benchmarks.md (also written to $OUT/table.md). Every
# stage's log goes to $OUT (default bench-gpu-out). docs/benchmarks.md says more.
#
#   bench/gpu/run.sh [--configure-only | --build-only | --bench-only] [h100-sxm-80gb|h200-141gb]
#
#   --configure-only  unpack the bundle and configure; print what CMake found (no GPU needed)
#   --build-only      ... and build
#   --bench-only      tests, kernels, profile and the matrix on an existing build
# Environment (all optional):
#   OUT          logs and results (default bench-gpu-out)
#   BUILD_DIR    build folder (default build-gpu); the bundle is unpacked in $BUILD_DIR/deps
#   BUNDLE_DIR   the .debs of scripts/gpu-bundle.sh (default bundle/debs); none: the system's
#   TORCH_PREFIX LibTorch's CMake prefix (default: python3 -c 'torch.utils.cmake_prefix_path')
#   NCCL_HOME    NCCL with include/ and lib/ (default: PyTorch's site-packages/nvidia/nccl)
#   CUDA_ARCH    CMAKE_CUDA_ARCHITECTURES (default 90: H100, H200)
#   STEPS        measured steps per run (default 30, after 5 warm-up steps)
#   COMPILE_MODELS  models run under torch.compile (default "gpt2 gpt2-medium")
#   SEXTANT_WITH_EXECUTOR  ON (default) or OFF (planner only: a configure check)
#   BUILD_TARGETS  targets to build (default: all)
#   JOBS         parallel build jobs (default: nproc)
#   CPU_TESTS    1 (default): also run the ctest entries not labelled gpu; 0: skip them
#   TORCH_ROWS   1 (default): run the PyTorch eager/compile rows; 0: skip them
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
mode=all
cluster=h100-sxm-80gb
for arg in "$@"; do
  case "$arg" in
    --configure-only) mode=configure ;;
    --build-only) mode=build ;;
    --bench-only) mode=bench ;;
    -h | --help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "run.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
    *) cluster=$arg ;;
  esac
done
mkdir -p "${OUT:-bench-gpu-out}"
out=$(cd "${OUT:-bench-gpu-out}" && pwd)
build=${BUILD_DIR:-$root/build-gpu}
bundle=${BUNDLE_DIR:-$root/bundle/debs}
steps=${STEPS:-30}
warmup=5
jobs=${JOBS:-$(nproc)}
compile_models=${COMPILE_MODELS:-gpt2 gpt2-medium}
# Open MPI refuses root without these; the GPU machine's sessions run as root.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-$build/inductor-cache}
started=$SECONDS
failed=()

# stage NAME LOG TIMEOUT_S COMMAND...: runs COMMAND with its output in LOG; on failure
# prints LOG's tail and records NAME (fatal=1 before the call: exits instead). A shell
# function runs without the time limit (timeout runs programs only). Functions run here
# are called in a `||` list, where bash ignores `set -e`: they check each step themselves.
fatal=0
stage() {
  local name=$1 log=$2 limit=$3 t0=$SECONDS status=0
  shift 3
  printf '== %-28s' "$name"
  if declare -F "$1" >/dev/null; then
    "$@" >"$log" 2>&1 || status=$?
  else
    timeout "$limit" "$@" >"$log" 2>&1 || status=$?
  fi
  if [ "$status" -eq 0 ]; then
    echo " ok   $((SECONDS - t0)) s  ($log)"
    return 0
  fi
  [ "$status" -eq 124 ] && echo "(timed out after $limit s)" >>"$log"
  echo " FAILED (exit $status) after $((SECONDS - t0)) s; last 40 lines of $log:"
  tail -40 "$log" | sed 's/^/   | /'
  if [ "$fatal" -eq 1 ]; then
    echo "run.sh: stopped: $name failed" >&2
    exit 1
  fi
  failed+=("$name")
  return 1
}

describe_machine() (
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  . /etc/os-release && echo "os: $PRETTY_NAME"
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "nccl", torch.cuda.nccl.version())' ||
    true
  for tool in nvcc mpirun mpicxx cmake g++ dpkg-deb; do echo "$tool: $(command -v $tool || echo missing)"; done
  cmake --version | head -1
  dpkg -l 2>/dev/null | grep -E 'libopenmpi|libsqlitecpp|libsqlite3|libboost|libcli11|nlohmann|libeigen3|libgtest|libbenchmark|libnccl' ||
    true
)

# CMake arguments, filled by the find_* functions below.
cmake_args=()
prefix_path=()

# The bundle's .debs, unpacked with dpkg-deb -x into $build/deps (never into /). Debian's
# SQLiteCppConfig.cmake locates itself from its own folder (it falls back to /usr only
# when loaded from /usr), so pointing SQLiteCpp_DIR at the unpacked copy is enough;
# FindSQLite3 gets the unpacked header and library explicitly.
find_bundle() {
  shopt -s nullglob
  local debs=("$bundle"/*.deb)
  shopt -u nullglob
  if [ ${#debs[@]} -eq 0 ]; then
    echo "no .debs in $bundle: SQLiteCpp must come from the system (scripts/gpu-bundle.sh saves them)"
    return 0
  fi
  if [ -f "$bundle/SHA256SUMS" ] && ! (cd "$bundle" && sha256sum --check --quiet SHA256SUMS); then
    echo "$bundle: the .debs do not match SHA256SUMS: run scripts/gpu-bundle.sh again"
    return 1
  fi
  local prefix=$build/deps
  rm -rf "$prefix" && mkdir -p "$prefix" || return 1
  for deb in "${debs[@]}"; do
    echo "unpacking $(basename "$deb") into $prefix"
    dpkg-deb -x "$deb" "$prefix" || return 1
  done
  local config lib
  config=$(find "$prefix" -name SQLiteCppConfig.cmake -print -quit)
  lib=$(find "$prefix" -name libsqlite3.so -print -quit)
  if [ -z "$config" ] || [ -z "$lib" ] || [ ! -e "$lib" ] || [ ! -f "$prefix/usr/include/sqlite3.h" ]; then
    echo "the bundle lacks SQLiteCppConfig.cmake, sqlite3.h or a resolvable libsqlite3.so (needs libsqlitecpp-dev," \
      "libsqlite3-dev and libsqlite3-0): run scripts/gpu-bundle.sh again"
    return 1
  fi
  cmake_args+=(-DSQLiteCpp_DIR="$(dirname "$config")" -DSQLite3_INCLUDE_DIR="$prefix/usr/include"
    -DSQLite3_LIBRARY="$lib")
  prefix_path+=("$prefix/usr")
}

# LibTorch from the installed PyTorch, MPI from mpicxx, NCCL from PyTorch's wheel (the one
# torch itself loads), nvcc from PATH or /usr/local/cuda.
find_toolchain() {
  local torch_prefix=${TORCH_PREFIX:-}
  if [ -z "$torch_prefix" ] && ! torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>/dev/null); then
    if [ "$mode" != configure ]; then
      echo "no PyTorch for python3 and no TORCH_PREFIX: nothing to build the executor against"
      return 1
    fi
    echo "no PyTorch for python3: CMake looks for LibTorch on its own (configure check only)"
    torch_prefix=""
  fi
  [ -n "$torch_prefix" ] && prefix_path+=("$torch_prefix")
  echo "LibTorch prefix: ${torch_prefix:-none given, CMake searches}"

  local nccl_home=${NCCL_HOME:-}
  if [ -z "$nccl_home" ]; then
    # PyTorch's CUDA wheels depend on nvidia-nccl-cu*, which installs nvidia/nccl/{include,lib}.
    nccl_home=$(python3 -c '
import os, nvidia
print(next(os.path.join(p, "nccl") for p in nvidia.__path__
           if os.path.isfile(os.path.join(p, "nccl", "include", "nccl.h"))))' 2>/dev/null || true)
  fi
  if [ -n "$nccl_home" ]; then
    local lib
    for lib in "$nccl_home/lib/libnccl.so" "$nccl_home/lib/libnccl.so.2" ""; do [ -e "$lib" ] && break; done
    if [ -f "$nccl_home/include/nccl.h" ] && [ -n "$lib" ]; then
      cmake_args+=(-DNCCL_INCLUDE_DIR="$nccl_home/include" -DNCCL_LIBRARY="$lib")
      echo "NCCL: $lib"
    else
      echo "NCCL_HOME=$nccl_home has no include/nccl.h and lib/libnccl.so*: CMake looks for NCCL on its own"
    fi
  else
    echo "NCCL: no nvidia/nccl beside PyTorch and no NCCL_HOME: CMake looks for it (CUDA toolkit)"
  fi

  local mpicxx
  mpicxx=$(command -v mpicxx || true)
  # Skip the MPI C++ bindings (deprecated, and absent from some builds); sextant uses the C API.
  [ -n "$mpicxx" ] && cmake_args+=(-DMPI_CXX_COMPILER="$mpicxx" -DMPI_CXX_SKIP_MPICXX=ON)
  if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
    cmake_args+=(-DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc)
  fi
}

configure() {
  find_bundle || return 1
  find_toolchain || return 1
  local prefixes
  prefixes=$(IFS=';' && echo "${prefix_path[*]}")
  # CMAKE_POLICY_VERSION_MINIMUM: CMake 4 refuses packages' config files that still ask
  # for policies older than 3.5.
  (
    set -x
    cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DSEXTANT_WITH_EXECUTOR="${SEXTANT_WITH_EXECUTOR:-ON}" \
      -DSEXTANT_BUILD_TESTS=ON -DSEXTANT_BUILD_BENCH=ON -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90}" \
      -DCMAKE_POLICY_VERSION_MINIMUM=3.5 -DCMAKE_PREFIX_PATH="$prefixes" "${cmake_args[@]}"
  )
}

build_targets() {
  local targets=()
  for t in ${BUILD_TARGETS:-}; do targets+=(--target "$t"); done
  cmake --build "$build" -j"$jobs" "${targets[@]}"
}

# What CMake resolved, from its cache: the evidence that the bundle and PyTorch's NCCL
# were the ones used.
report_resolved() {
  grep -E '^(SQLiteCpp_DIR|SQLite3_INCLUDE_DIR|SQLite3_LIBRARY|Torch_DIR|NCCL_INCLUDE_DIR|NCCL_LIBRARY|MPI_CXX_COMPILER|CMAKE_CUDA_COMPILER|CMAKE_CUDA_ARCHITECTURES):' \
    "$build/CMakeCache.txt" | sed 's/^/   /' || true
  grep -E '^-- sextant:' "$out/configure.log" | sed 's/^/   /' || true
}

# One benchmark row: plan, then `sextant execute`. Fixed: one GPU, micro-batch 8 x 4.
# sextant_row ID MODEL PRECISION RECOMPUTE ZERO
sextant_row() {
  local id=$1 model=$2 precision=$3 recompute=$4 zero=$5 s=$build/cli/sextant
  local fix="dp=1,tp=1,pp=1,vpp=1,zero=$zero,micro_batch=8,grad_accum=4,recompute=$recompute"
  fix+=",sequence_parallel=false,offload=none"
  printf '%s\t%s\t%s\t%s\t%s\n' "$id" "$model" "$precision" "$recompute" "$zero" >>"$out/rows.tsv"
  stage "plan $id" "$out/plan-$id.txt" 60 "$s" plan --model "$root/examples/models/$model.json" \
    --cluster "$cluster" --gpus 1 --global-batch 32 --seq 1024 --precision "$precision" --fp32-grads --fix "$fix" --top 1 \
    --db "$out/sextant.db" --out "$out/plan-$id.json" || return 0
  stage "sextant $id" "$out/execute-$id.log" 300 "$s" execute --plan "$out/plan-$id.json" \
    --steps $((steps + warmup)) --device cuda --db "$out/sextant.db" --metrics-out "$out/sextant-$id.jsonl" || true
}

# torch_row MODEL MODE (eager|compile)
torch_row() {
  local model=$1 run=$2 limit=300
  local args=(--config "$root/examples/models/$model.json" --micro-batch 8 --grad-accum 4 --seq 1024
    --steps "$steps" --warmup "$warmup" --out "$out/torch-$model-$run.json")
  if [ "$run" = compile ]; then args+=(--compile); limit=420; fi
  stage "pytorch $model $run" "$out/torch-$model-$run.log" "$limit" \
    python3 "$root/bench/gpu/pytorch_reference.py" "${args[@]}" || true
}

benchmark() {
  local s=$build/cli/sextant
  # The CUDA kernels against their CPU references, then every other ctest entry (the
  # CPU-rank executor tests pass --device cpu themselves).
  stage "kernel tests (GPU)" "$out/kernel-tests.log" 300 \
    ctest --test-dir "$build" -L gpu --no-tests=error --output-on-failure || true
  if [ "${CPU_TESTS:-1}" = 1 ]; then
    stage "ctest (all others)" "$out/ctest.log" 900 \
      ctest --test-dir "$build" -LE gpu -j4 --timeout 600 --output-on-failure || true
  fi
  stage "bench_kernels" "$out/bench-kernels.txt" 300 "$build/bench/bench_kernels" || true
  rm -f "$out/sextant.db" "$out/rows.tsv"
  stage "sextant profile" "$out/profile.log" 300 "$s" profile --name "$cluster-measured" --db "$out/sextant.db" || true

  # GPT-2 124M and 350M shapes, seq 1024, 32 sequences per step (micro-batch 8 x 4).
  sextant_row gpt2-bf16 gpt2 bf16 none 0
  sextant_row gpt2-medium-bf16 gpt2-medium bf16 none 0
  sextant_row gpt2-fp16 gpt2 fp16 none 0
  sextant_row gpt2-bf16-full-recompute gpt2 bf16 full 0
  for zero in 1 2 3; do sextant_row "gpt2-bf16-zero$zero" gpt2 bf16 none "$zero"; done
  for model in gpt2 gpt2-medium; do
    [ "${TORCH_ROWS:-1}" = 1 ] || break
    torch_row "$model" eager
    case " $compile_models " in *" $model "*) torch_row "$model" compile ;; esac
  done
  stage "sextant compare" "$out/compare.txt" 60 "$s" compare --db "$out/sextant.db" || true
  echo
  python3 "$root/bench/gpu/table.py" --out "$out" --cluster "$cluster" --warmup "$warmup" | tee "$out/table.md"
}

echo "sextant GPU run: mode $mode, cluster $cluster, logs in $out"
describe_machine >"$out/env.txt" 2>&1
if [ "$mode" != bench ]; then
  fatal=1
  stage "configure" "$out/configure.log" 600 configure
  report_resolved
  if [ "$mode" != configure ]; then stage "build (-j$jobs)" "$out/build.log" 1800 build_targets; fi
  fatal=0
fi
if [ "$mode" = all ] || [ "$mode" = bench ]; then benchmark; fi
echo "run.sh: $((SECONDS - started)) s in all"
if [ ${#failed[@]} -gt 0 ]; then
  echo "run.sh: failed: ${failed[*]} (logs in $out)" >&2
  exit 1
fi
