#!/usr/bin/env python3
"""The results table of bench/gpu/run.sh, in markdown, from the files it leaves in --out:
rows.tsv (one line per sextant run: id, model, precision, recompute, zero),
sextant-<id>.jsonl (`sextant execute --metrics-out`, one JSON line per step) and
torch-<model>-<eager|compile>.json (bench/gpu/pytorch_reference.py).

Every figure is a median over the steps after --warmup. Ratios and the references' MFU
are against PyTorch in bf16 on the same model. MFU is sextant's (3 x forward FLOPs per
token, attention included, over the cluster's dense peak for the run's precision); the
references' MFU uses the same FLOPs per token and peak, read back from sextant's bf16
run: mfu_ref = mfu_sextant x tokens_per_s_ref / tokens_per_s_sextant.
  python3 bench/gpu/table.py --out bench-gpu-out --cluster h100-sxm-80gb --warmup 5
"""
import argparse
import csv
import json
import os
import statistics
import time

PHASES = ["forward_s", "backward_s", "optimizer_s", "comm_wait_s"]  # per step, when the executor writes them


def load_sextant(path, warmup):
    if not os.path.exists(path):
        return None
    steps = [json.loads(line) for line in open(path) if line.strip()]
    steps = steps[warmup:] or steps  # a short run: keep what there is
    if not steps:
        return None
    med = lambda key: statistics.median(s[key] for s in steps)
    run = {"tokens_per_s": med("tokens_per_s"), "mfu": med("mfu"), "peak_bytes": max(s["peak_bytes"] for s in steps),
           "steps": len(steps)}
    for phase in PHASES:
        if all(phase in s for s in steps):
            run[phase] = med(phase)
    return run


def load_reference(path):
    if not os.path.exists(path):
        return None
    lines = [line for line in open(path) if line.strip()]
    return json.loads(lines[-1]) if lines else None


def fmt(value, spec, missing="–"):
    return missing if value is None else format(value, spec)


def label(row):
    text = f"{row['model']} {row['precision']}"
    if row["recompute"] != "none":
        text += f", {row['recompute']} recompute"
    if row["zero"] != "0":
        text += f", ZeRO-{row['zero']}"
    return text


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--cluster", required=True)
    ap.add_argument("--warmup", type=int, default=5)
    a = ap.parse_args()
    fields = ["id", "model", "precision", "recompute", "zero"]
    rows_path = os.path.join(a.out, "rows.tsv")
    rows = list(csv.DictReader(open(rows_path), fieldnames=fields, delimiter="\t")) if os.path.exists(rows_path) else []
    runs = {r["id"]: load_sextant(os.path.join(a.out, f"sextant-{r['id']}.jsonl"), a.warmup) for r in rows}
    models = list(dict.fromkeys(r["model"] for r in rows))
    refs = {(m, mode): load_reference(os.path.join(a.out, f"torch-{m}-{mode}.json"))
            for m in models for mode in ("eager", "compile")}

    print("| run | sextant tok/s | eager tok/s | compile tok/s | sextant ÷ eager | sextant ÷ compile "
          "| MFU % sextant / eager / compile | peak GiB sextant / eager / compile "
          "| forward / backward / optimizer / comm wait ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        ours = runs[row["id"]]
        eager, compiled = refs[(row["model"], "eager")], refs[(row["model"], "compile")]
        base = runs.get(f"{row['model']}-bf16")  # sextant bf16 on this model: the references' MFU
        tps = lambda r: r["tokens_per_s"] if r else None
        ratio = lambda ref: ours["tokens_per_s"] / ref["tokens_per_s"] if ours and ref else None
        ref_mfu = lambda ref: 100 * base["mfu"] * ref["tokens_per_s"] / base["tokens_per_s"] if base and ref else None
        gib = lambda r: r["peak_bytes"] / 2**30 if r else None
        phases = " / ".join(fmt(1e3 * ours[p], ".1f") if ours and p in ours else "–" for p in PHASES)
        print(f"| {label(row)} | {fmt(tps(ours), ',.0f', 'failed')} | {fmt(tps(eager), ',.0f')} "
              f"| {fmt(tps(compiled), ',.0f')} | {fmt(ratio(eager), '.2f')} | {fmt(ratio(compiled), '.2f')} "
              f"| {fmt(100 * ours['mfu'] if ours else None, '.1f')} / {fmt(ref_mfu(eager), '.1f')} "
              f"/ {fmt(ref_mfu(compiled), '.1f')} | {fmt(gib(ours), '.1f')} / {fmt(gib(eager), '.1f')} "
              f"/ {fmt(gib(compiled), '.1f')} | {phases} |")
    any_ref = next((r for r in refs.values() if r), None)
    measured = sorted({r["steps"] for r in runs.values() if r})
    print()
    if any_ref:
        print(f"device: {any_ref['device']}, torch {any_ref['torch']}, {any_ref['date']}, cluster {a.cluster}; "
              f"medians over {'/'.join(map(str, measured)) or '?'} steps after {a.warmup} warm-up steps; "
              "micro-batch 8 x 4, seq 1024")
    else:  # the device from nvidia-smi's line in env.txt (run.sh), the date from the clock
        env = os.path.join(a.out, "env.txt")
        gpu = next((l.strip() for l in open(env) if "NVIDIA" in l or "H100" in l or "H200" in l), "?") \
            if os.path.exists(env) else "?"
        print(f"device: {gpu}, {time.strftime('%Y-%m-%d')}, cluster {a.cluster}; no PyTorch reference result "
              "(see torch-*.log)")
    compile_s = [f"{m} {r['warmup_s']:.0f} s" for (m, mode), r in refs.items() if mode == "compile" and r
                 and "warmup_s" in r]
    if compile_s:
        print(f"torch.compile warm-up (compiling included): {', '.join(compile_s)}")
    print("Ratios and reference MFU: against PyTorch bf16 on the same model, whatever the sextant row's settings.")


if __name__ == "__main__":
    main()
