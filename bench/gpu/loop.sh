#!/usr/bin/env bash
# The closed loop on one GPU (issue 13 item 7): `sextant profile` (CUDA-event timed) ->
# `plan --profile` -> `execute` over GPT-2 124M/350M/774M and a Llama-3.2-1B-shaped model
# (GQA, 128K vocabulary) with recompute and ZeRO variants -> `calibrate` -> `compare`.
# Run after `bench/gpu/run.sh --build-only` on the GPU machine. Everything lands in $OUT
# (default bench-gpu-out): sextant.db (profile, plans' predictions, every measured step),
# compare.txt/json, calibrate.txt, loop.log, and runs.tsv (one line per run).
#   bench/gpu/loop.sh [cluster]      (default h100-sxm-80gb; about 5 minutes on an H100)
# Environment: BUILD_DIR (default build-gpu), STEPS (default 15), OUT, PROFILE (1: measure and
# plan with --profile; 0: plan with the cluster's built-in kernel rates), ONLY (run numbers to
# run, e.g. "1 3 5"; default all), TRACE (1: also write the measured trace of run 1's last step).
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cluster=${1:-h100-sxm-80gb}
mkdir -p "${OUT:-bench-gpu-out}"
out=$(cd "${OUT:-bench-gpu-out}" && pwd)
s=${BUILD_DIR:-$root/build-gpu}/cli/sextant
steps=${STEPS:-15}
db=$out/sextant.db
rm -f "$db" "$out/runs.tsv"
profile=$cluster-measured
profile_args=()
if [ "${PROFILE:-1}" = 1 ]; then
  echo "== profile ($profile)"
  "$s" profile --name "$profile" --db "$db" >"$out/profile.log" 2>&1 || echo "profile failed: $(tail -3 "$out/profile.log")"
  profile_args=(--profile "$profile")
fi

# model seq global_batch layout (dp=1, tp=1, pp=1 on one GPU; bf16, fp32 gradients)
runs=(
  "gpt2 1024 32 micro_batch=8,zero=0,recompute=none"
  "gpt2 1024 32 micro_batch=16,zero=0,recompute=none"
  "gpt2 1024 32 micro_batch=4,zero=0,recompute=full"
  "gpt2 1024 32 micro_batch=8,zero=3,recompute=none"
  "gpt2-medium 1024 32 micro_batch=8,zero=0,recompute=none"
  "gpt2-medium 1024 32 micro_batch=8,zero=0,recompute=full"
  "gpt2-medium 1024 32 micro_batch=4,zero=1,recompute=selective"
  "gpt2-medium 1024 32 micro_batch=16,zero=0,recompute=none"
  "gpt2-large 1024 32 micro_batch=8,zero=0,recompute=none"
  "gpt2-large 1024 32 micro_batch=4,zero=0,recompute=full"
  "gpt2-large 1024 32 micro_batch=8,zero=3,recompute=none"
  "llama-3.2-1b 2048 16 micro_batch=4,zero=0,recompute=none"
  "llama-3.2-1b 2048 16 micro_batch=2,zero=0,recompute=full"
  "llama-3.2-1b 2048 16 micro_batch=4,zero=1,recompute=selective"
)
i=0
for r in "${runs[@]}"; do
  read -r model seq gb layout <<<"$r"
  i=$((i + 1))
  if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $i "* ]]; then continue; fi
  fix="dp=1,tp=1,pp=1,vpp=1,$layout,sequence_parallel=false,offload=none"
  plan=$out/plan-$i.json
  if ! "$s" plan --model "$root/examples/models/$model.json" --cluster "$cluster" --gpus 1 --global-batch "$gb" \
    --seq "$seq" --precision bf16 --fp32-grads "${profile_args[@]}" --fix "$fix" --top 1 --db "$db" --out "$plan" \
    >"$out/plan-$i.txt" 2>&1; then
    echo "run $i $model $layout: plan failed: $(tail -2 "$out/plan-$i.txt")"
    continue
  fi
  t0=$SECONDS
  trace=()
  [ "${TRACE:-0}" = 1 ] && [ "$i" = 1 ] && trace=(--trace "$out/trace-$i.json")
  if timeout 240 "$s" execute --plan "$plan" --steps "$steps" --device cuda --db "$db" "${trace[@]}" \
    --metrics-out "$out/metrics-$i.jsonl" >"$out/execute-$i.log" 2>&1; then
    status=ok
  else
    status="failed: $(tail -2 "$out/execute-$i.log" | tr '\n' ' ')"
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s s\n' "$i" "$model" "$seq" "$layout" "$status" "$((SECONDS - t0))" | tee -a "$out/runs.tsv"
done
if [ "${TRACE:-0}" = 1 ] && [ -f "$out/plan-1.json" ]; then
  "$s" simulate --plan "$out/plan-1.json" --out "$out/predicted-1.json" --db "$db" >/dev/null 2>&1 ||
    echo "simulate failed"
fi
"$s" calibrate --db "$db" >"$out/calibrate.txt" 2>&1; cat "$out/calibrate.txt"
"$s" compare --db "$db" >"$out/compare.txt" 2>&1; cat "$out/compare.txt"
"$s" compare --db "$db" --format json >"$out/compare.json" 2>&1
