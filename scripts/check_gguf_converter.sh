#!/usr/bin/env bash
# Developer check (not part of the test command; needs llama.cpp's Python sources): converts
# Llama-shaped PEFT adapters with llama.cpp's own convert_lora_to_gguf.py and with
# `lora convert`, for every --outtype, and compares the files byte for byte.
#
#   bash scripts/check_gguf_converter.sh LLAMA_CPP_SOURCE_DIR [build/bin/lora]
#
# It runs the converter under Debian's python3 (python3-numpy, python3-torch, python3-yaml), with
# the small stand-ins in scripts/gguf_check/stubs for what that python lacks: transformers
# (AutoConfig fails, so the converter reads config.json itself, as it does for remote-code
# models), safetensors.torch.load_file (tensors in sorted-name order, which is the data order of
# files torch writes), tqdm, and torch 1.13's missing float8 dtypes (named in a table only). The
# adapters: 12 layers (layers.10 sorts before layers.2), q/k/v/o/gate/up/down, 4 heads and 2
# key-value heads (q and k permuted), ranks 16 (lora_b in F16 under q8_0: 16 % 32 != 0), 32 and
# 64, F32 and BF16 tensors.
set -euo pipefail
llama=${1:?usage: check_gguf_converter.sh LLAMA_CPP_SOURCE_DIR [LORA_BINARY]}
lora=$(realpath "${2:-build/bin/lora}")
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export PYTHONPATH="$here/gguf_check/stubs:$llama/gguf-py"
py=/usr/bin/python3
failures=0
for case in "16 F32" "32 BF16" "64 F32"; do
  set -- $case
  adapter="$work/tiny-llama-r$1-$2"
  "$py" "$here/gguf_check/make_adapter.py" "$adapter" "$work/base" "$1" "$2"
  for t in f32 f16 bf16 q8_0; do
    "$py" "$llama/convert_lora_to_gguf.py" --base "$work/base" --outtype "$t" \
      --outfile "$work/ref.gguf" "$adapter" >"$work/log.txt" 2>&1 ||
      { cat "$work/log.txt"; exit 1; }
    "$lora" convert "$adapter" "$work/ours.gguf" --base-config "$work/base" --dtype "$t" \
      --force --quiet >/dev/null
    if cmp -s "$work/ref.gguf" "$work/ours.gguf"; then
      echo "r=$1 $2 -> $t: identical ($(stat -c %s "$work/ours.gguf") bytes)"
    else
      echo "r=$1 $2 -> $t: DIFFERENT ($(cmp "$work/ref.gguf" "$work/ours.gguf" | head -1))"
      failures=$((failures + 1))
    fi
  done
done
[ "$failures" -eq 0 ] || { echo "$failures conversions differ"; exit 1; }
echo "every conversion is byte-identical to llama.cpp's convert_lora_to_gguf.py"
