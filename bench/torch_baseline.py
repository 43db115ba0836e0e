#!/usr/bin/python3
"""PyTorch CPU baseline for the forward/backward benchmarks of bench/lora_bench.cpp.

Same shapes (N = 512, 4096 -> 4096, r = 16, float32), same thread count (1 by default; pass a
number to change it). Run with Debian's python3 (apt install python3-torch):

    /usr/bin/python3 bench/torch_baseline.py [threads]

Prints the median time of: the base GEMM x W^T (F.linear without bias), a PEFT-style LoRA forward
(base(x) + (x @ A^T @ B^T) * s), forward+backward for A and B, and forward+backward with dX,
each as milliseconds and as a ratio to the GEMM.
"""
import statistics
import sys
import time

import torch


def median_ms(fn, warmup=3, reps=15):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main():
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    n, d, r, s = 512, 4096, 16, 2.0
    x = torch.randn(n, d)
    w = torch.randn(d, d) * 0.02
    b = torch.randn(d)
    a = (torch.randn(r, d) * 0.02).requires_grad_()
    bb = (torch.randn(d, r) * 0.02).requires_grad_()
    dy = torch.randn(n, d)
    xg = x.clone().requires_grad_()

    def gemm():
        with torch.no_grad():
            return torch.nn.functional.linear(x, w)

    def forward():
        with torch.no_grad():
            return torch.nn.functional.linear(x, w, b) + (x @ a.T @ bb.T) * s

    def fwd_bwd():
        y = torch.nn.functional.linear(x, w, b) + (x @ a.T @ bb.T) * s
        a.grad = bb.grad = None
        y.backward(dy)

    def fwd_bwd_dx():
        y = torch.nn.functional.linear(xg, w, b) + (xg @ a.T @ bb.T) * s
        a.grad = bb.grad = xg.grad = None
        y.backward(dy)

    base = median_ms(gemm)
    flops = 2.0 * n * d * d
    print(f"torch {torch.__version__}, {threads} thread(s)")
    print(f"BaseGemm                    {base:8.2f} ms  1.00x  ({flops / base / 1e6:.1f} GFLOP/s)")
    for name, fn in [("LayerForward", forward), ("LayerForwardBackward", fwd_bwd),
                     ("LayerForwardBackwardInput", fwd_bwd_dx)]:
        t = median_ms(fn)
        print(f"{name:27s} {t:8.2f} ms  {t / base:.2f}x")


if __name__ == "__main__":
    main()
