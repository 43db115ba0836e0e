#!/usr/bin/env bash
# Measures the candidate backends for LoRA++'s products and dense decompositions on this machine
# (bench/backends.cpp, compiled three ways) and prints Google Benchmark's tables one after the
# other: none (Eigen's own kernels, OpenMP), openblas and blis (Eigen through EIGEN_USE_BLAS).
# OPENBLAS_CORETYPE, when set, is passed on: see docs/performance.md for why it matters.
# Usage: bash scripts/backend_choice.sh [OUT_DIR] [extra benchmark flags]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-build/backend_choice}
shift || true
mkdir -p "$out"
flags=(-O3 -march=native -DNDEBUG -std=c++20 -isystem /usr/include/eigen3 -fopenmp)
libs=(-lbenchmark -lpthread)
g++ "${flags[@]}" -DBACKEND_NONE bench/backends.cpp -o "$out/backends_none" "${libs[@]}"
g++ "${flags[@]}" -DBACKEND_OPENBLAS -DEIGEN_USE_BLAS -DWITH_LAPACK bench/backends.cpp \
  -o "$out/backends_openblas" -lopenblas "${libs[@]}"
g++ "${flags[@]}" -DBACKEND_BLIS -DEIGEN_USE_BLAS bench/backends.cpp \
  -o "$out/backends_blis" -lblis "${libs[@]}"
for b in none openblas blis; do
  echo "== $b"
  OMP_NUM_THREADS=2 "$out/backends_$b" --benchmark_min_time=0.3 "$@"
done
