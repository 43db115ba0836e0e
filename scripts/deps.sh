#!/usr/bin/env bash
# Installs the Debian packages LoRA++ needs to build, test and benchmark; does nothing when they are
# all present (idempotent). Run as root, or as a user with sudo.
set -euo pipefail
packages=(g++ cmake ninja-build libeigen3-dev libfmt-dev nlohmann-json3-dev libgtest-dev libbenchmark-dev libspectra-dev libcli11-dev libopenblas-pthread-dev libblis-dev clang-14 libclang-rt-14-dev libomp-14-dev gnuplot-nox wamerican wfrench)
missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing: ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
