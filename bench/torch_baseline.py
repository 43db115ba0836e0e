#!/usr/bin/python3
"""PyTorch CPU baseline for bench/lora_bench.cpp: the same computations, shapes and thread count.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /usr/bin/python3 bench/torch_baseline.py THREADS

(Debian's python3 with python3-torch and libopenblas0-pthread.) THREADS (default 1) is given to
torch.set_num_threads and, before torch is imported, to OPENBLAS_NUM_THREADS: Debian's torch 1.13
calls OpenBLAS, which set_num_threads does not reach.

Prints JSON: the median wall time in milliseconds of each benchmark, named as lora_bench names
its own (the last number is the thread count):

    BM_BaseGemm/512/4096/16/T                   x W^T (F.linear without bias), N = 512, 4096 -> 4096
    BM_LayerForward/512/4096/16/T               base(x) + (x A^T B^T) s, PEFT's LoRA forward, r = 16
    BM_LayerForwardBackward/512/4096/16/T       forward, then backward for A and B
    BM_LayerForwardBackwardInput/512/4096/16/T  forward, then backward for A, B and x
    BM_FactoredSVD/4096/64/T                    the factored SVD of s B A, B 4096 x 64, A 64 x 4096:
                                                QR of B and A^T, SVD of the 64 x 64 core, and the
                                                two products U = Q_B U_c, V = Q_A V_c

and base_gemm_gflops (useful GFLOP/s of the base GEMM).
"""
import json
import os
import statistics
import sys
import time

THREADS = int(sys.argv[1]) if len(sys.argv) > 1 else 1
os.environ["OPENBLAS_NUM_THREADS"] = str(THREADS)
os.environ["OMP_NUM_THREADS"] = str(THREADS)

import torch  # noqa: E402  (after the environment is set)


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
    torch.set_num_threads(THREADS)
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

    fr, fd = 64, 4096
    fb = torch.randn(fd, fr)
    fa = torch.randn(fr, fd)

    def factored_svd():
        with torch.no_grad():
            qb, rb = torch.linalg.qr(fb)
            qa, ra = torch.linalg.qr(fa.T)
            uc, sc, vch = torch.linalg.svd(s * (rb @ ra.T))
            return qb @ uc, sc, qa @ vch.T

    t = THREADS
    shape = f"512/4096/16/{t}"
    results = {}
    results[f"BM_BaseGemm/{shape}"] = median_ms(gemm)
    results[f"BM_LayerForward/{shape}"] = median_ms(forward)
    results[f"BM_LayerForwardBackward/{shape}"] = median_ms(fwd_bwd)
    results[f"BM_LayerForwardBackwardInput/{shape}"] = median_ms(fwd_bwd_dx)
    results[f"BM_FactoredSVD/4096/64/{t}"] = median_ms(factored_svd, reps=51)
    flops = 2.0 * n * d * d
    print(json.dumps({
        "torch_version": torch.__version__,
        "threads": THREADS,
        "unit": "ms",
        "benchmarks": results,
        "base_gemm_gflops": flops / results[f"BM_BaseGemm/{shape}"] / 1e6,
    }, indent=2))


if __name__ == "__main__":
    main()
