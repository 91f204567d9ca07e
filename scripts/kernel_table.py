#!/usr/bin/env python3
"""Writes a built-in kernel-rate table (profiles/kernels/NAME.json) from a measured-figures
file such as ../shared/validation/h100-figures-2026-11-22.json (the team's H100 figures).

The table keeps the measurements themselves, regrouped for the cost model
(cost_model/kernel_rates.h): bf16 GEMM TFLOP/s on the full (m, n, k) grid of the NT
(forward, y = x W^T) and NN (backward) layouts; memory-bound GB/s by op kind and bytes
touched; causal flash-attention TFLOP/s (full-square FLOPs, forward and forward+backward
with backward counted as 2.5x forward, as FlashAttention-2 counts); kernel launch cost.
Where the NT and NN grids lack a point the other layout measured at that shape, the other
layout's value fills it; a point neither measured takes the next smaller m (both listed in
"gemm_filled").
  scripts/kernel_table.py FIGURES.json NAME [--cross-entropy FWD_GBPS FWD_BWD_GBPS BYTES NOTE] > profiles/kernels/NAME.json

--cross-entropy replaces the cross-entropy rates with the trainer's own fused kernel's
(forward reads the 16-bit logits; backward reads them and writes their gradient), as
bench/gpu/bench_kernels measured them; the figures' PyTorch-eager rates stay in the table
under reference_gb_per_s (the cost model does not read them).
"""
import json
import sys

fig = json.load(open(sys.argv[1]))
name = sys.argv[2]
own_ce = None
if len(sys.argv) > 3:
    if sys.argv[3] != "--cross-entropy" or len(sys.argv) != 8:
        sys.exit(__doc__)
    own_ce = (float(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6]), sys.argv[7])
gemm = {"NT": {}, "NN": {}}
for r in fig["gemm_bf16"]:
    if r["layout"] in gemm:
        gemm[r["layout"]][(r["m"], r["n"], r["k"])] = r["tflops"]
shapes = sorted(set(gemm["NT"]) | set(gemm["NN"]))
filled = []
for layout, other in (("NT", "NN"), ("NN", "NT")):
    for s in shapes:
        if s not in gemm[layout]:
            gemm[layout][s] = gemm[other][s]
            filled.append([layout, *s])
# A grid point neither layout measured: the next smaller m at the same n, k (GEMMs past
# ~8K rows run at a flat rate), listed in "filled".
ms, ns, ks = (sorted({s[i] for s in shapes}) for i in range(3))
for layout in ("NT", "NN"):
    for m in ms:
        for n in ns:
            for k in ks:
                if (m, n, k) not in gemm[layout]:
                    smaller = max(x for x in ms if x < m)
                    gemm[layout][(m, n, k)] = gemm[layout][(smaller, n, k)]
                    filled.append([layout, m, n, k])
shapes = sorted(gemm["NT"])
kinds = {"copy": "copy", "add": "add", "layer_norm fwd": "layer_norm", "rms_norm fwd": "rms_norm",
         "gelu tanh fwd": "gelu", "silu*mul (swiglu) fwd": "swiglu", "layer_norm fwd+bwd": "layer_norm_fwd_bwd",
         "cross_entropy fwd (": "cross_entropy", "cross_entropy fwd+bwd": "cross_entropy_fwd_bwd",
         "torch fused AdamW": "adamw"}
memory = {}
for r in fig["memory_bound_bf16"]:
    if "manual" in r["op"]:
        continue  # unfused fp32 reference, not a kernel a trainer runs
    kind = next((kinds[k] for k in sorted(kinds, key=len, reverse=True) if r["op"].startswith(k)), None)
    if kind is None:
        sys.exit(f"unknown memory-bound op {r['op']!r}")
    memory.setdefault(kind, []).append([r["bytes"], round(r["gb_per_s"], 1)])
for v in memory.values():
    v.sort()
ce_note = ""
reference = {}
if own_ce:
    fwd, fwd_bwd, nbytes, note = own_ce
    reference["cross_entropy_pytorch_eager"] = memory.pop("cross_entropy")
    reference["cross_entropy_pytorch_eager_fwd_bwd"] = memory.pop("cross_entropy_fwd_bwd")
    memory["cross_entropy"] = [[nbytes, fwd]]
    memory["cross_entropy_fwd_bwd"] = [[3 * nbytes, fwd_bwd]]
    ce_note = " Cross-entropy: " + note + "."
attention = [[a["s"], a["d"], a["b"] * a["heads"], round(a["fwd_tflops_full_square"], 1),
              round(a["fwd_bwd_tflops_full_square"], 1)] for a in fig["sdpa_causal_bf16"]]
out = {
    "name": name,
    "source": fig["source"] + " Method: " + fig["method"] + "." + ce_note + " Regrouped by scripts/kernel_table.py.",
    "device": fig["device"],
    "date": fig["date"],
    "launch_us": round(fig["launch"]["device_s_per_tiny_kernel"] * 1e6, 2),
    "host_us_per_op": round(fig["launch"]["host_s_per_eager_op"] * 1e6, 2),
    "gemm_bf16_tflops": {l: [[*s, round(gemm[l][s], 1)] for s in shapes] for l in ("NT", "NN")},
    "gemm_filled": filled,
    "memory_bound_gb_per_s": memory,
    "reference_gb_per_s": reference,
    "attention_causal_tflops": {"columns": ["s", "d", "batch_x_heads", "fwd", "fwd_bwd"], "rows": attention},
}
text = json.dumps(out, separators=(",", ":"))
# one GEMM point per line keeps diffs readable
text = text.replace("],[", "],\n[")
print(text)
