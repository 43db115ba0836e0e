#!/usr/bin/env bash
# Installs what is missing, builds LoRA++ and runs every test (the README's second command):
# the Release build, then the same tests under AddressSanitizer + UndefinedBehaviorSanitizer, then
# the libFuzzer targets for about a minute (scripts/fuzz.sh).
# PEFT fixtures come from $LORA_PEFT_FIXTURES (default ../shared/peft-fixtures/set_a).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
jobs=$(nproc)

echo "== Release build and tests"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DLORA_BUILD_TESTS=ON -DLORA_BUILD_EXAMPLES=ON -DLORA_BUILD_BENCHMARKS=ON >/dev/null
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure -j "$jobs"

echo "== AddressSanitizer + UndefinedBehaviorSanitizer build and tests"
# -g1 (line tables, enough for the sanitizers' stack traces) compiles about a quarter faster than
# -g. Examples and benchmarks are not built here: their smoke tests run in the Release build.
# The Release build uses LAPACK for the symmetric eigensolver, this one Eigen's own (LORA_LAPACK=OFF):
# the whole suite runs against both.
# UBSan's alignment check is left out: it instruments every typed load and store of the inlined
# Eigen code (a quarter of this build's compile time: src/layer.cpp 120 s with it, 87 s without),
# and the misaligned typed access it finds cannot happen here (the readers copy bytes with memcpy;
# nothing casts a byte pointer to a wider type). Every other UBSan check stays, and ASan sees
# every access.
# Compiled with Clang (the Release build uses GCC): LLVM's sanitizers are the reference ones, a
# second compiler's diagnostics come with them, and Clang compiles this build in about 60% of
# GCC's time (docs/development.md: 1 164 against 1 994 step-seconds, tests 83 s against 135 s).
cmake -S . -B build-asan -G Ninja -DCMAKE_CXX_COMPILER=clang++-14 -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-g1 -O1" \
  -DLORA_SANITIZE=address,undefined -DLORA_NO_SANITIZE=alignment -DLORA_LAPACK=OFF -DLORA_BUILD_BENCHMARKS=OFF -DLORA_BUILD_EXAMPLES=OFF >/dev/null
cmake --build build-asan -j "$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:halt_on_error=1 \
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j "$jobs"

echo "== libFuzzer: the safetensors, adapter_config and GGUF readers (scripts/fuzz.sh)"
bash scripts/fuzz.sh
