#!/usr/bin/env bash
# On the GPU machine, for the paged-KV attention kernels (issue 10): unpack a device-bundle holding
# kuiper_cuda_tests and paged_attention_bench (and any share of the test data: these tests read
# none), then
#   tests: the paged CUDA tests, with the contiguous attention, rope_store and decode-graph tests
#          (their kernels became templates over where the keys are), then the paged tests again
#          under compute-sanitizer memcheck, and the tensor-core prefill under racecheck;
#   bench: bench/paged_attention_bench (paged decode batches 1/8/64 at contexts 256/2048 and a
#          512-row prefill, beside the contiguous kernels) for fp16, bf16 and fp32 caches;
#   all: both (the default).
#   paged_check.sh BUNDLE DATA OUT [tests|bench|all]
set -uo pipefail
part=${4:-all}
source "$(dirname "$0")/common.sh"
unpack_bundle "$1" "$2" "$3"
case $part in
  tests|all)
    step cuda-tests "$b/run" kuiper_cuda_tests --gtest_brief=1 \
      --gtest_filter='*Paged*:CudaAttention*:CudaRopeStore*:CudaDecodeGraph*'
    step memcheck "$b/run" compute-sanitizer --tool memcheck --leak-check full \
      kuiper_cuda_tests --gtest_brief=1 --gtest_filter='*Paged*'
    step racecheck "$b/run" compute-sanitizer --tool racecheck \
      kuiper_cuda_tests --gtest_brief=1 --gtest_filter='CudaPagedAttention.LongPrefill*:CudaPagedGraph*'
    ;;&
  bench|all)
    STEP_TAIL=40
    step bench-fp16 "$b/run" paged_attention_bench --dtype fp16
    step bench-bf16 "$b/run" paged_attention_bench --dtype bf16 --quick
    step bench-fp32 "$b/run" paged_attention_bench --dtype fp32 --quick
    step bench-fp16-block32 "$b/run" paged_attention_bench --dtype fp16 --block 32 --quick
    ;;
esac
exit $status
