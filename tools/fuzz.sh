#!/usr/bin/env bash
# Builds the libFuzzer targets of test/fuzz into build-fuzz/ (clang-14, ASan + UBSan, CPU only)
# and runs each for SECONDS (default 60), one after another, from its committed seeds and the
# corpus grown by earlier runs (build-fuzz/fuzz-corpus/TARGET). Prints each target's executions
# and coverage; a crash, leak, timeout or sanitizer report leaves its input in
# build-fuzz/fuzz-artifacts/TARGET/ and makes the script fail.
#   tools/fuzz.sh [SECONDS] [TARGET...]     (default: every target)
#   tools/fuzz.sh --configure-only          (for tools/sanitize.sh, which shares build-fuzz/)
# Environment: FUZZ_JOBS (parallel build jobs, default nproc), FUZZ_NICE (nice level, default 0).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=($(sed -n 's/^kuiper_add_fuzzer(\([a-z0-9_]*\) .*/\1/p' test/fuzz/CMakeLists.txt))
fi
cxx=$(command -v clang++-14 || command -v clang++)
cc=$(command -v clang-14 || command -v clang)
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
CC=$cc CXX=$cxx cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKUIPER_CUDA=OFF \
  -DKUIPER_FUZZ=ON -DKUIPER_BUILD_BENCH=OFF "${launcher[@]}" >/dev/null
[ "$seconds" = --configure-only ] && exit 0
nice -n "${FUZZ_NICE:-0}" cmake --build build-fuzz -j"${FUZZ_JOBS:-$(nproc)}" --target "${targets[@]}"

# Leaks and UBSan findings are failures too; a slow input (10 s) is a hang.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0
for t in "${targets[@]}"; do
  corpus=build-fuzz/fuzz-corpus/$t
  artifacts=build-fuzz/fuzz-artifacts/$t/
  mkdir -p "$corpus" "$artifacts"
  log=build-fuzz/fuzz-$t.log
  echo "== $t: $seconds s"
  if nice -n "${FUZZ_NICE:-0}" build-fuzz/bin/"$t" -max_total_time="$seconds" -timeout=10 \
       -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$artifacts" \
       "$corpus" test/fuzz/corpus/"$t" >"$log" 2>&1; then
    # The last status line (#runs, cov, ft, corp) and the executions per second.
    grep -E '^#[0-9]+' "$log" | tail -1
    grep -E 'stat::number_of_executed_units|stat::average_exec_per_sec' "$log" | tr '\n' ' '
    echo
  else
    status=1
    echo "FAILED: see $log and $artifacts"
    grep -E 'ERROR|SUMMARY|runtime error|deadly|Test unit written' "$log" | head -8
  fi
done
exit $status
