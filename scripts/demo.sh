#!/usr/bin/env bash
# Installs what is missing, builds LoRA++ and runs the demo (the README's first command).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build --target lora_demo
./build/bin/lora_demo
