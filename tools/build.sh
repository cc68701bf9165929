#!/usr/bin/env bash
# Configures and builds kuiper into build/ (CUDA backend when nvcc is found). Extra arguments go
# to cmake, e.g. tools/build.sh -DKUIPER_CUDA=OFF.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build build -j"$(nproc)"
