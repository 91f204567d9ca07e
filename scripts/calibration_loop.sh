#!/usr/bin/env bash
# The closed loop on this machine: profile (1 and 2 ranks), plan with the measured
# profile, execute 12 configurations (3 model sizes, 9 layouts) REPEATS times each in
# round-robin order, calibrate on every other configuration, compare (held-out error on
# the rest), plan again with the calibration. Writes DIR/sextant.db; prints compare's table.
#   scripts/calibration_loop.sh [DIR] [REPEATS=4] [STEPS=12]    (about 20 minutes on 2 cores)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-calibration-loop}
repeats=${2:-4}
steps=${3:-12}
mkdir -p "$dir" && cd "$dir" && rm -f sextant.db plan-*.json
s="$root/build/cli/sextant"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
"$s" profile --name local-cpu-1rank --passes 5 >/dev/null 2>&1
mpirun --oversubscribe -np 2 "$s" profile --name local-cpu-2ranks --passes 5 >/dev/null 2>&1
base="zero=0,recompute=none,sequence_parallel=false,vpp=1"
configurations=(  # model ranks layout
  "tiny-llama 1 dp=1,tp=1,pp=1,micro_batch=4,$base"
  "tiny-llama 2 dp=2,tp=1,pp=1,micro_batch=4,$base"
  "tiny-llama 2 dp=1,tp=2,pp=1,micro_batch=4,$base"
  "tiny-llama 2 dp=1,tp=1,pp=2,micro_batch=2,$base"
  "small-llama 1 dp=1,tp=1,pp=1,micro_batch=4,$base"
  "small-llama 1 dp=1,tp=1,pp=1,micro_batch=4,zero=0,recompute=full,sequence_parallel=false,vpp=1"
  "small-llama 2 dp=2,tp=1,pp=1,micro_batch=4,zero=1,recompute=none,sequence_parallel=false,vpp=1"
  "small-llama 2 dp=1,tp=2,pp=1,micro_batch=4,zero=0,recompute=selective,sequence_parallel=true,vpp=1"
  "small-llama 2 dp=1,tp=1,pp=2,micro_batch=2,zero=0,recompute=none,sequence_parallel=false,vpp=2"
  "mini-gpt2 1 dp=1,tp=1,pp=1,micro_batch=4,$base"
  "mini-gpt2 2 dp=2,tp=1,pp=1,micro_batch=4,zero=3,recompute=none,sequence_parallel=false,vpp=1"
  "mini-gpt2 2 dp=1,tp=1,pp=2,micro_batch=2,$base"
)
i=0
for c in "${configurations[@]}"; do  # one plan per configuration, planned with its rank count's profile
  read -r model ranks layout <<<"$c"
  profile=local-cpu-1rank
  [ "$ranks" -gt 1 ] && profile=local-cpu-2ranks
  "$s" plan --model "$root/examples/models/$model.json" --cluster local-cpu --gpus "$ranks" --global-batch 16 \
    --seq 128 --precision fp32 --profile "$profile" --top 1 --out "plan-$i.json" --fix "$layout,offload=none" >/dev/null
  i=$((i + 1))
done
for ((r = 0; r < repeats; r++)); do  # round-robin, so a slow spell of the machine hits every configuration
  i=0
  for c in "${configurations[@]}"; do
    read -r model ranks layout <<<"$c"
    mpirun --oversubscribe -np "$ranks" "$s" execute --plan "plan-$i.json" --steps "$steps" >/dev/null 2>&1
    i=$((i + 1))
  done
done
"$s" calibrate
"$s" compare
# and back to the planner: the best layout for small-llama on 2 ranks, calibrated
"$s" plan --model "$root/examples/models/small-llama.json" --cluster local-cpu --gpus 2 --global-batch 16 \
  --seq 128 --precision fp32 --profile local-cpu-2ranks --calibrated --top 3
