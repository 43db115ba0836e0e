#!/usr/bin/env bash
# Measures the cost of a full Release build of everything (library, tests, examples, benchmarks,
# tool) from scratch, as docs/development.md reports it: wall time with -j2, the sum of the
# compile and link steps' durations from the ninja log (about the CPU-seconds on an idle machine:
# each step is one single-threaded process), and the ten most expensive steps.
#   bash scripts/build_cost.sh [BUILD_DIR]      (default: build-cost; removed first)
# Run it with nothing else busy: two concurrent jobs on two cores are what the numbers assume.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-build-cost}"
rm -rf "$dir"
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLORA_BUILD_TESTS=ON \
  -DLORA_BUILD_EXAMPLES=ON -DLORA_BUILD_BENCHMARKS=ON >/dev/null
start=$(date +%s%N)
cmake --build "$dir" -j 2 >/dev/null
end=$(date +%s%N)
awk -v wall="$(( (end - start) / 1000000000 ))" '
  NR > 1 { d = ($2 - $1) / 1000; total += d; steps++; cost[$4] = d }
  END {
    printf "steps: %d\nsum of step durations: %.0f s\nwall time (-j2): %.0f s\n", steps, total, wall
    n = 0; for (k in cost) keys[n++] = k
    for (i = 0; i < n; i++) for (j = i + 1; j < n; j++)
      if (cost[keys[j]] > cost[keys[i]]) { t = keys[i]; keys[i] = keys[j]; keys[j] = t }
    print "the ten most expensive steps (s):"
    for (i = 0; i < 10 && i < n; i++) printf "%7.1f  %s\n", cost[keys[i]], keys[i]
  }' "$dir/.ninja_log"
