#!/usr/bin/env bash
# On the GPU machine, for issue 13 (hardening): unpack a device-bundle and the qwen2 + llama2
# share of the test data (models/qwen2-kjv, models/llama2-kjv, corpus/kjv.tsv), then run
#   - the 10,000-token chat on CUDA (Devices/LongChat.*/cuda; prints the resident and GPU memory),
#   - a model larger than a capped GPU allocator (BadInput.ModelLargerThanTheGpuMemory),
#   - the CUDA allocator tests (kuiper_cuda_tests, CudaAllocator*).
#   harden_check.sh BUNDLE DATA OUT
set -uo pipefail
source "$(dirname "$0")/common.sh"
unpack_bundle "$1" "$2" "$3"
STEP_TAIL=12 step long-chat-cuda "$b/run" kuiper_tests \
  --gtest_filter='Devices/LongChat.*/cuda:BadInput.ModelLargerThanTheGpuMemory'
step allocator "$b/run" kuiper_cuda_tests --gtest_brief=1 --gtest_filter='*Allocator*'
exit $status
