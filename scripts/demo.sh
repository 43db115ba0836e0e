#!/usr/bin/env bash
# Installs what is missing, builds LoRA++ and runs the demo (the README's first command).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DLORA_BUILD_TESTS=ON -DLORA_BUILD_EXAMPLES=ON -DLORA_BUILD_BENCHMARKS=ON >/dev/null
cmake --build build --target lora_demo lora_cli digits_experiment
./build/bin/lora_demo build/demo-adapter
echo
echo "== the adapter the demo saved, seen by the lora tool"
./build/bin/lora inspect build/demo-adapter
./build/bin/lora resize build/demo-adapter build/demo-adapter-e99 --energy 0.99 --force  # replaces an earlier run's
echo
echo "== a real experiment: the article's strategy comparison on rotated handwritten digits"
echo "   (3 seeds; the full run with all three studies: docs/experiments.md)"
./build/bin/digits_experiment --only comparison --seeds 3 --out build/experiments/digits --quiet
