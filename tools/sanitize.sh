#!/usr/bin/env bash
# The CPU test suite under AddressSanitizer and UndefinedBehaviorSanitizer, in build-fuzz/: the
# clang build of tools/fuzz.sh (-DKUIPER_FUZZ=ON sanitizes every target with address,undefined),
# so that CI compiles the sanitized libraries once for both. A sanitizer report fails its test.
# export.py's pytest suite is left out (Python: nothing to sanitize; the plain run covers it).
# Extra arguments go to ctest, e.g. -R Chat. Environment: SANITIZE_JOBS (default nproc).
# (-DKUIPER_SANITIZE=address,undefined gives the same with gcc, without the fuzz targets.)
set -euo pipefail
cd "$(dirname "$0")/.."
tools/fuzz.sh --configure-only
cmake --build build-fuzz -j"${SANITIZE_JOBS:-$(nproc)}"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
ctest --test-dir build-fuzz --output-on-failure -j"$(nproc)" -E '^export_py$' "$@"
