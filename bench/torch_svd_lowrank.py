#!/usr/bin/python3
"""PyTorch baseline for BM_RandomizedSVD of bench/init_bench.cpp: torch.svd_lowrank(W, q=16,
niter=4), what PEFT's init_lora_weights="pissa_niter_4" runs, on the same 4096 x 4096 float32
weights. Run with Debian's python3 (python3-torch, numpy), after init_bench has written them:

    ./build/bin/init_bench --dump_w=/tmp/initw --benchmark_filter=NONE
    taskset -c 0,1 /usr/bin/python3 bench/torch_svd_lowrank.py /tmp/initw 2

Prints, for the planted and the gaussian weight, the median time of 15 runs (after 3 warm-ups) and
the accuracy counters init_bench prints: sigmaErr = max_i |σ_i − σ_i*| / σ_i* against the exact
σ* that init_bench wrote, and resid = max_i max(‖W v_i − σ_i u_i‖, ‖W^T u_i − σ_i v_i‖) / σ_1.
"""
import statistics
import sys
import time

import numpy as np
import torch


def median_s(fn, warmup=3, reps=15):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    prefix = sys.argv[1]
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    n, q, niter = 4096, 16, 4
    for name in ("planted", "gaussian"):
        w = torch.from_numpy(np.fromfile(f"{prefix}_{name}.f32", dtype=np.float32).reshape(n, n))
        exact = np.loadtxt(f"{prefix}_{name}.sigma.txt")[:q]
        t = median_s(lambda: torch.svd_lowrank(w, q=q, niter=niter))
        u, s, v = torch.svd_lowrank(w, q=q, niter=niter)
        sigma_err = np.max(np.abs(s.double().numpy() - exact) / exact)
        r1 = (w @ v - u * s).norm(dim=0).max()
        r2 = (w.T @ u - v * s).norm(dim=0).max()
        resid = float(torch.maximum(r1, r2) / s[0])
        print(f"{name}: torch.svd_lowrank(W, q={q}, niter={niter}) {t * 1e3:.1f} ms "
              f"({threads} threads, torch {torch.__version__}), sigmaErr={sigma_err:.4g} "
              f"resid={resid:.4g}")


if __name__ == "__main__":
    main()
