#!/usr/bin/env python3
"""PyTorch reference for `sextant execute` on one GPU: the same GPT-2-shaped model (learned
positions, pre-LayerNorm, GELU-tanh MLP, biases, tied embeddings, no dropout), batch,
sequence length and precision, trained the way a PyTorch user would: fp32 parameters,
bf16 autocast, fused AdamW, scaled_dot_product_attention; eager or torch.compile.

Prints one JSON line (and writes it to --out): tokens/s (median step after warm-up), peak
allocated bytes, and warmup_s, the warm-up steps' time (under --compile, mostly compiling).
Progress goes to stderr.
  python3 bench/gpu/pytorch_reference.py --config examples/models/gpt2.json \
      --micro-batch 8 --grad-accum 4 --seq 1024 --steps 30 [--compile] [--out result.json]
"""
import argparse
import json
import math
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, h, heads):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(h, eps=1e-5)
        self.qkv = nn.Linear(h, 3 * h)
        self.proj = nn.Linear(h, h)
        self.ln2 = nn.LayerNorm(h, eps=1e-5)
        self.fc = nn.Linear(h, 4 * h)
        self.fc_proj = nn.Linear(4 * h, h)

    def forward(self, x):
        b, s, h = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(h, dim=-1)
        q, k, v = (t.view(b, s, self.heads, h // self.heads).transpose(1, 2) for t in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(b, s, h))
        return x + self.fc_proj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, vocab, positions, h, heads, layers):
        super().__init__()
        self.wte = nn.Embedding(vocab, h)
        self.wpe = nn.Embedding(positions, h)
        self.blocks = nn.ModuleList(Block(h, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(h, eps=1e-5)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.normal_(p, std=0.02)

    def forward(self, tokens, targets):
        x = self.wte(tokens) + self.wpe(torch.arange(tokens.shape[1], device=tokens.device))
        for block in self.blocks:
            x = block(x)
        logits = self.ln_f(x) @ self.wte.weight.t()
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.reshape(-1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--micro-batch", type=int, required=True)
    ap.add_argument("--grad-accum", type=int, default=1)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--out", help="also write the JSON line here")
    a = ap.parse_args()
    c = json.load(open(a.config))
    torch.manual_seed(0)
    model = GPT(c["vocab_size"], c["n_positions"], c["n_embd"], c["n_head"], c["n_layer"]).cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    step_fn = torch.compile(model) if a.compile else model
    g = torch.Generator(device="cuda").manual_seed(1)
    times = []
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    warmup_s = 0.0
    for step in range(a.warmup + a.steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(a.grad_accum):
            tokens = torch.randint(0, c["vocab_size"], (a.micro_batch, a.seq + 1), device="cuda", generator=g)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = step_fn(tokens[:, :-1], tokens[:, 1:]) / a.grad_accum
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if step >= a.warmup:
            times.append(time.perf_counter() - t0)
        elif step == a.warmup - 1:
            warmup_s = time.perf_counter() - started
        print(f"step {step}: {time.perf_counter() - t0:.4f} s", file=sys.stderr, flush=True)
    step_s = statistics.median(times)
    tokens = a.micro_batch * a.grad_accum * a.seq
    line = json.dumps({"mode": "compile" if a.compile else "eager", "device": torch.cuda.get_device_name(),
                       "torch": torch.__version__, "step_time_s": step_s, "tokens_per_s": tokens / step_s,
                       "peak_bytes": torch.cuda.max_memory_allocated(), "final_loss": float(loss) * a.grad_accum,
                       "warmup_s": warmup_s, "steps": a.steps, "date": time.strftime("%Y-%m-%d")})
    print(line)
    if a.out:
        with open(a.out, "w") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
