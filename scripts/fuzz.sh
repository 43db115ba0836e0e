#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/) with clang-14 under AddressSanitizer + UndefinedBehavior-
# Sanitizer and runs both side by side for LORA_FUZZ_SECONDS seconds (default 30) from seeds taken from
# the PEFT fixtures ($LORA_PEFT_FIXTURES, default ../shared/peft-fixtures/set_a). Any crash, leak,
# sanitizer report or exception other than lora::Error fails the run; the input that did it is
# left in build-fuzz/findings/. Called by scripts/test.sh; needs the packages of scripts/deps.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
fixtures="${LORA_PEFT_FIXTURES:-../shared/peft-fixtures/set_a}"
seconds="${LORA_FUZZ_SECONDS:-30}"
if [ ! -d "$fixtures" ]; then
  echo "fuzz.sh: expected the PEFT fixtures folder at '$fixtures' (set LORA_PEFT_FIXTURES)" >&2
  exit 1
fi

cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-g1 -O1" \
  -DCMAKE_CXX_COMPILER=clang++-14 -DLORA_SANITIZE=address,undefined -DLORA_BUILD_FUZZERS=ON \
  -DLORA_BUILD_TESTS=OFF -DLORA_BUILD_EXAMPLES=OFF -DLORA_BUILD_BENCHMARKS=OFF \
  -DLORA_BUILD_TOOLS=OFF -DLORA_INSTALL=OFF -DLORA_OPENMP=OFF -DLORA_LAPACK=OFF >/dev/null
cmake --build build-fuzz -j "$(nproc)" --target fuzz_safetensors fuzz_adapter_config fuzz_gguf

# Seeds: copies of the fixtures' files (libFuzzer adds new inputs to the first corpus folder, and
# the fixtures are never written); fuzz/seeds/ adds a GGUF adapter, data/kohya/ a kohya LoRA.
seeds=build-fuzz/seeds
rm -rf "$seeds" build-fuzz/corpus build-fuzz/findings
mkdir -p "$seeds/safetensors" "$seeds/adapter_config" "$seeds/gguf" build-fuzz/findings
cp fuzz/seeds/gguf/* "$seeds/gguf/"
cp data/kohya/tiny_lora.safetensors "$seeds/safetensors/"  # a kohya LoRA
find "$fixtures" -name '*.safetensors' -size -1024k | while read -r f; do
  cp "$f" "$seeds/safetensors/$(echo "$f" | md5sum | cut -c1-16)"
done
find "$fixtures" -name 'adapter_config.json' | while read -r f; do
  cp "$f" "$seeds/adapter_config/$(echo "$f" | md5sum | cut -c1-16)"
done

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:halt_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
# The two fuzzers run side by side, one per core.
run_fuzzer() {
  local target=$1
  mkdir -p "build-fuzz/corpus/$target"
  ./build-fuzz/bin/fuzz_$target -max_total_time="$seconds" -max_len=262144 -rss_limit_mb=4096 \
    -print_final_stats=1 -artifact_prefix=build-fuzz/findings/$target- \
    "build-fuzz/corpus/$target" "$seeds/$target" >"build-fuzz/fuzz_$target.log" 2>&1
}
declare -A pids
for target in safetensors adapter_config gguf; do
  echo "== fuzz_$target: ${seconds}s from $(ls "$seeds/$target" | wc -l) seeds"
  run_fuzzer "$target" &
  pids[$target]=$!
done
failed=0
for target in safetensors adapter_config gguf; do
  status=0
  wait "${pids[$target]}" || status=$?
  echo "== fuzz_$target"
  tail -n 25 "build-fuzz/fuzz_$target.log"
  if [ "$status" -ne 0 ]; then
    echo "fuzz_$target failed (exit $status); the input is in build-fuzz/findings/" >&2
    failed=1
  fi
done
exit "$failed"
