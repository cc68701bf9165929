#!/usr/bin/env bash
# On the GPU machine, this wave's CUDA checks in one call: every CUDA kernel test (paged
# attention, ggml block types, int8/q4), memcheck on the paged and quantized ones, llama2's CUDA
# goldens through the model, the engine and 16-bit KV caches, the GPU-memory refusal, the GGUF
# goldens on CUDA (gguf_check.sh), the block types' GEMV speed (when the bundle has gemv_bench), and llama_server under
# serve_bench.py with a TinyLlama-shaped fp16 model (serve_bench.sh, SERVE_8B=0).
#   wave_check.sh BUNDLE DATA EXTRA_DATA PYLIB OUT
# EXTRA_DATA: models/llama2/tokenizer.model and models/llama3-kjv/tokenizer.json (serve_bench);
# PYLIB: the gguf package and its imports (gguf_check.sh).
set -uo pipefail
here=$(dirname "$0")
mkdir -p /tmp/kuiper-shared && tar xf "$3" -C /tmp/kuiper-shared
source "$here/common.sh"
unpack_bundle "$1" "$2" "$5"
step cuda-tests "$b/run" kuiper_cuda_tests --gtest_brief=1
step memcheck "$b/run" compute-sanitizer --tool memcheck --leak-check full kuiper_cuda_tests \
  --gtest_brief=1 --gtest_filter='CudaQuantized*:*Paged*'
step golden-llama2 "$b/run" kuiper_tests --gtest_brief=1 \
  --gtest_filter='*cuda_llama2*:*LlamaModelOnDevice*/cuda:BadInput.ModelLargerThanTheGpuMemory'
bash "$here/gguf_check.sh" "$1" "$2" "$4" "$out/gguf" llama2
[ ! -x "$b/bin/gemv_bench" ] || for t in q8_0 q4_0 q4_k q6_k int8 q4; do
  STEP_TAIL=6 step gemv-bench-$t "$b/run" gemv_bench --quick --dtype $t
done
SERVE_8B=0 bash "$here/serve_bench.sh" "$1" "$2" "$out/serve"
exit $status
