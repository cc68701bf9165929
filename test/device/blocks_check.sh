#!/usr/bin/env bash
# On the GPU machine, for ggml's block types (q8_0, q4_0, q4_k, q6_k; issue 12): unpack a
# device-bundle (kuiper_cuda_tests and gemv_bench) and the test data, then
#   the CudaQuantized tests (int8, q4 and the block types against float64 references), the same
#   under compute-sanitizer (memcheck with leak check, then racecheck on the GEMV tests), and
#   gemv_bench's GEMV sweep and TinyLlama-shaped decode step for each block type beside int8
#   and q4 (every variant's GB/s; * marks the default).
#   blocks_check.sh BUNDLE DATA OUT
set -uo pipefail
source "$(dirname "$0")/common.sh"
unpack_bundle "$1" "$2" "$3"
step cuda-quantized "$b/run" kuiper_cuda_tests --gtest_brief=1 --gtest_filter='CudaQuantized*'
step memcheck-quantized "$b/run" compute-sanitizer --tool memcheck --leak-check full \
  kuiper_cuda_tests --gtest_brief=1 --gtest_filter='CudaQuantized*'
step racecheck-gemv "$b/run" compute-sanitizer --tool racecheck \
  kuiper_cuda_tests --gtest_brief=1 --gtest_filter='CudaQuantized.EveryGemvVariant*'
for t in q8_0 q4_0 q4_k q6_k int8 q4; do
  STEP_TAIL=14 step gemv-bench-$t "$b/run" gemv_bench --quick --dtype $t
done
exit $status
