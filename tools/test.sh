#!/usr/bin/env bash
# The whole test suite: installs missing dependencies, builds, then runs every test through
# ctest (GoogleTest binaries, the export.py pytest suite, the terminal chat script, the fuzz
# targets' corpus replays); then the CPU tests again under ASan + UBSan (tools/sanitize.sh) and
# each fuzz target for 60 s (tools/fuzz.sh). KUIPER_TEST_SANITIZE=0 stops after the plain run.
# Tests that need ../shared (or $KUIPER_SHARED_DIR) skip with a message when it is absent;
# CUDA tests skip when no GPU is present.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install_deps.sh
tools/build.sh "$@"
ctest --test-dir build --output-on-failure -j"$(nproc)"
if [ "${KUIPER_TEST_SANITIZE:-1}" != 0 ]; then
  tools/sanitize.sh
  tools/fuzz.sh "${KUIPER_FUZZ_SECONDS:-60}"
fi
