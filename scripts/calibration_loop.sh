#!/usr/bin/env bash
# The closed loop on this machine: profile (1 and 2 ranks), plan with the measured
# profile, execute 12 runs (3 model sizes, 9 layouts), calibrate on every other run,
# compare (held-out error on the rest). Writes DIR/sextant.db; prints compare's table.
#   scripts/calibration_loop.sh [DIR]     (about 6 minutes on 2 cores)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-calibration-loop}
mkdir -p "$dir" && cd "$dir" && rm -f sextant.db
s="$root/build/cli/sextant"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
"$s" profile --name local-cpu-1rank >/dev/null 2>&1
mpirun --oversubscribe -np 2 "$s" profile --name local-cpu-2ranks >/dev/null 2>&1
run() {  # model ranks layout
  local profile=local-cpu-1rank
  [ "$2" -gt 1 ] && profile=local-cpu-2ranks
  "$s" plan --model "$root/examples/models/$1.json" --cluster local-cpu --gpus "$2" --global-batch 16 --seq 128 \
    --precision fp32 --profile "$profile" --top 1 --out plan.json \
    --fix "$3,offload=none" >/dev/null
  mpirun --oversubscribe -np "$2" "$s" execute --plan plan.json --steps 10 >/dev/null 2>&1
}
base="zero=0,recompute=none,sequence_parallel=false,vpp=1"
run tiny-llama 1 "dp=1,tp=1,pp=1,micro_batch=4,$base"
run tiny-llama 2 "dp=2,tp=1,pp=1,micro_batch=4,$base"
run tiny-llama 2 "dp=1,tp=2,pp=1,micro_batch=4,$base"
run tiny-llama 2 "dp=1,tp=1,pp=2,micro_batch=2,$base"
run small-llama 1 "dp=1,tp=1,pp=1,micro_batch=4,$base"
run small-llama 1 "dp=1,tp=1,pp=1,micro_batch=4,zero=0,recompute=full,sequence_parallel=false,vpp=1"
run small-llama 2 "dp=2,tp=1,pp=1,micro_batch=4,zero=1,recompute=none,sequence_parallel=false,vpp=1"
run small-llama 2 "dp=1,tp=2,pp=1,micro_batch=4,zero=0,recompute=selective,sequence_parallel=true,vpp=1"
run small-llama 2 "dp=1,tp=1,pp=2,micro_batch=2,zero=0,recompute=none,sequence_parallel=false,vpp=2"
run mini-gpt2 1 "dp=1,tp=1,pp=1,micro_batch=4,$base"
run mini-gpt2 2 "dp=2,tp=1,pp=1,micro_batch=4,zero=3,recompute=none,sequence_parallel=false,vpp=1"
run mini-gpt2 2 "dp=1,tp=1,pp=2,micro_batch=2,$base"
"$s" calibrate
"$s" compare
