#!/usr/bin/env bash
# The CPU test suite under AddressSanitizer and UndefinedBehaviorSanitizer, in build-fuzz/: the
# clang build of tools/fuzz.sh (-DKUIPER_FUZZ=ON sanitizes every target with address,undefined),
# so that CI compiles the sanitized libraries once for both. A sanitizer report fails its test.
# Left out (the plain run covers them): export.py's pytest suite (Python: nothing to sanitize)
# and the four slowest golden sweeps, 1270 of the suite's 3420 test-seconds under ASan on the
# 2-core development VM: GoldenPerplexity (the held-out book's perplexity, 3 models),
# Int8Files.GreedyMatchesFp32OnGolden and Q4Files.GreedyStaysWithFp32OnGolden (every golden
# prompt, teacher-forced). LongChat skips itself under ASan (its quarantine holds freed memory).
# Extra arguments go to ctest, e.g. -R Chat. Environment: SANITIZE_JOBS (default nproc).
# (-DKUIPER_SANITIZE=address,undefined gives the same with gcc, without the fuzz targets.)
set -euo pipefail
cd "$(dirname "$0")/.."
tools/fuzz.sh --configure-only
cmake --build build-fuzz -j"${SANITIZE_JOBS:-$(nproc)}"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
ctest --test-dir build-fuzz --output-on-failure -j"$(nproc)" \
  -E '^export_py$|GoldenPerplexity|Int8Files.GreedyMatchesFp32OnGolden|Q4Files.GreedyStaysWithFp32OnGolden' "$@"
