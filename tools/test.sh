#!/usr/bin/env bash
# The whole test suite: installs missing dependencies, builds, then runs every test through
# ctest (GoogleTest binaries, the export.py pytest suite, the terminal chat script).
# Tests that need ../shared (or $KUIPER_SHARED_DIR) skip with a message when it is absent;
# CUDA tests skip when no GPU is present.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install_deps.sh
tools/build.sh "$@"
ctest --test-dir build --output-on-failure -j"$(nproc)"
