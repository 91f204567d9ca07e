"""Sustained against short-burst GEMM rate on one GPU: the clock a long training run holds
under its power limit, against the boost clock at which short microbenchmarks (and the
kernel-rate tables) run. Prints the bf16 TFLOP/s of the first 0.2 s and of each 2 s after,
for 30 s of back-to-back 8192^3 GEMMs, with the SM clock and power read from nvidia-smi.
  python3 bench/gpu/sustained_gemm.py [--seconds 30] [--size 8192]
"""
import argparse
import subprocess
import time

import torch

p = argparse.ArgumentParser()
p.add_argument("--seconds", type=float, default=30)
p.add_argument("--size", type=int, default=8192)
a = p.parse_args()
n = a.size
x = [torch.randn(n, n, device="cuda", dtype=torch.bfloat16) for _ in range(4)]
flops = 2.0 * n ** 3


def smi():
    q = "clocks.sm,power.draw,temperature.gpu"
    return subprocess.run(["nvidia-smi", f"--query-gpu={q}", "--format=csv,noheader"], capture_output=True,
                          text=True).stdout.strip()


def burst(seconds):
    start, count = time.perf_counter(), 0
    while True:
        for _ in range(8):
            torch.mm(x[count % 4], x[(count + 1) % 4])
            count += 1
        torch.cuda.synchronize()
        t = time.perf_counter() - start
        if t >= seconds:
            return flops * count / t / 1e12


for _ in range(3):
    torch.mm(x[0], x[1])
torch.cuda.synchronize()
time.sleep(5)  # let the clock recover
print(f"first 0.2 s: {burst(0.2):.1f} TFLOP/s  ({smi()})", flush=True)
t0 = time.perf_counter()
rates = []
while time.perf_counter() - t0 < a.seconds:
    r = burst(2.0)
    rates.append(r)
    print(f"t={time.perf_counter() - t0:5.1f} s: {r:.1f} TFLOP/s  ({smi()})", flush=True)
tail = sorted(rates[len(rates) // 2:])
print(f"sustained (median of the second half): {tail[len(tail) // 2]:.1f} TFLOP/s")
