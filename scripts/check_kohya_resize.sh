#!/usr/bin/env bash
# Developer check (not part of the test command; needs the sd-scripts mirror): resizes kohya-format
# Stable Diffusion LoRA files with kohya's own networks/resize_lora.py and with `lora resize`, and
# compares the two outputs module by module (scripts/kohya_check/compare.py).
#
#   bash scripts/check_kohya_resize.sh [LORA_BINARY]      (default build/bin/lora)
#
# resize_lora.py is copied unmodified from the sd-scripts git mirror ($SD_SCRIPTS_GIT, default
# /work/.mirror/kohya-ss+sd-scripts/repo) and runs under Debian's python3 (python3-torch,
# python3-numpy) with the stand-ins in scripts/kohya_check/stubs for what that python lacks:
# safetensors (written as the Rust crate writes), tqdm, and the three `library` modules it imports
# (train_util runs the real hash functions, taken from the mirror's library/train_util.py).
# Inputs (scripts/kohya_check/make_lora.py): small F32, F16 and BF16 files with linear, 1x1 and
# 3x3 conv modules, and a big F32 one whose outputs pass 1 MiB (so the legacy hash sees data).
# "identical" means every check of compare.py passed: same keys, dtypes, shapes (ranks), alphas and
# metadata, deltas equal within float rounding, each file's sshs_* hashes right for its own bytes.
# The files are not byte-identical (kohya's float32 dense SVD vs our float64 one from the factors).
set -euo pipefail
lora=$(realpath "${1:-build/bin/lora}")
here=$(cd "$(dirname "$0")" && pwd)
mirror=${SD_SCRIPTS_GIT:-/work/.mirror/kohya-ss+sd-scripts/repo}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/networks"
git -C "$mirror" show HEAD:networks/resize_lora.py >"$work/networks/resize_lora.py"
git -C "$mirror" show HEAD:library/train_util.py >"$work/train_util.py"
export KOHYA_TRAIN_UTIL="$work/train_util.py" PYTHONPATH="$here/kohya_check/stubs"
# Debian's python3, without OpenBLAS overrides that may be set for the C++ build.
py() { env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /usr/bin/python3 "$@"; }

# Each setting: our options | kohya's options for the same resize.
settings=(
  "--rank 4|--new_rank 4"
  "--rank 12|--new_rank 12"
  "--rank 8 --conv-rank 4|--new_rank 8 --new_conv_rank 4"
  "--sv-ratio 4|--dynamic_method sv_ratio --dynamic_param 4"
  "--sv-ratio 20 --max-rank 16|--dynamic_method sv_ratio --dynamic_param 20 --new_rank 16"
  "--sv-cumulative 0.8 --max-rank 16|--dynamic_method sv_cumulative --dynamic_param 0.8 --new_rank 16"
  "--sv-cumulative 0.8 --max-rank 16 --conv-rank 2|--dynamic_method sv_cumulative --dynamic_param 0.8 --new_rank 16 --new_conv_rank 2"
  "--sv-fro 0.9 --max-rank 16|--dynamic_method sv_fro --dynamic_param 0.9 --new_rank 16"
  "--sv-fro 0.99|--dynamic_method sv_fro --dynamic_param 0.99"
  "--rank 4 --dtype f16|--new_rank 4 --save_precision fp16"
  "--rank 12 --dtype bf16|--new_rank 12 --save_precision bf16"
  "--sv-fro 0.9 --max-rank 16 --dtype bf16|--dynamic_method sv_fro --dynamic_param 0.9 --new_rank 16 --save_precision bf16"
  "--sv-ratio 20 --max-rank 16 --dtype f16|--dynamic_method sv_ratio --dynamic_param 20 --new_rank 16 --save_precision fp16"
)
inputs=("small-f32 F32 1" "small-f16 F16 2" "small-bf16 BF16 3" "big-f32 F32 4 big")
total=0 same=0
for input in "${inputs[@]}"; do
  # shellcheck disable=SC2086  # split into: name, dtype, seed [big]
  set -- $input
  name=$1 src="$work/$1.safetensors"
  shift
  py "$here/kohya_check/make_lora.py" "$src" "$@"
  for setting in "${settings[@]}"; do
    ours_opts=${setting%%|*} kohya_opts=${setting#*|}
    rm -f "$work/kohya.safetensors" "$work/ours.safetensors"
    # shellcheck disable=SC2086  # the options are meant to split into words
    py "$work/networks/resize_lora.py" --model "$src" --save_to "$work/kohya.safetensors" \
      $kohya_opts >"$work/log.txt" 2>&1 || { cat "$work/log.txt"; exit 1; }
    # shellcheck disable=SC2086
    "$lora" resize "$src" "$work/ours.safetensors" $ours_opts --quiet >"$work/log.txt" 2>&1 ||
      { cat "$work/log.txt"; exit 1; }
    total=$((total + 1))
    if py "$here/kohya_check/compare.py" "$src" "$work/kohya.safetensors" "$work/ours.safetensors" \
      "$name $ours_opts"; then
      same=$((same + 1))
    fi
  done
done
echo "$same of $total identical"
[ "$same" -eq "$total" ]
