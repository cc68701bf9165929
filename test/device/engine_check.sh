#!/usr/bin/env bash
# On the GPU machine, for the batched engine (issue 10): unpack a device-bundle (kuiper_tests,
# kuiper_cuda_tests, llama_bench, paged_attention_bench) and the llama2 share of the test data,
#   then the paged-attention CUDA tests with memcheck/racecheck (paged_check.sh tests), every CUDA
#   kernel test, llama2's CUDA golden tests through the model and through the engine, and the
#   benchmarks: random TinyLlama-shaped fp16 one sequence and --parallel 1/8/32/64 (128 + 128
#   tokens each), the Llama-3.1-8B shape (fp16, exported meanwhile) at 1 and 64 and a 512-token
#   prefill, and paged_attention_bench.
#   engine_check.sh BUNDLE DATA OUT
set -uo pipefail
here=$(dirname "$0")
source "$here/common.sh"
unpack_bundle "$1" "$2" "$3"
big=$shared/models/llama3.1-8b/config.json
tiny=$shared/models/tinyllama-chat/resaved-transformers-4.56.0/config.json
[ -f /tmp/big-fp16.bin ] || setsid nohup sh -c "python3 $root/tools/export.py /tmp/big-fp16.tmp \
  --random $big --dtype fp16 -q && mv /tmp/big-fp16.tmp /tmp/big-fp16.bin" \
  > "$out/export-big-fp16.log" 2>&1 < /dev/null &
bash "$here/paged_check.sh" "$1" "$2" "$out/paged" tests
step cuda-tests "$b/run" kuiper_cuda_tests --gtest_brief=1
step golden-llama2 "$b/run" kuiper_tests --gtest_brief=1 \
  --gtest_filter='*cuda_llama2*:*LlamaModelOnDevice*/cuda'
[ -f /tmp/tiny-fp16.bin ] || step export-tiny python3 $root/tools/export.py /tmp/tiny-fp16.bin \
  --random $tiny --dtype fp16 -q
STEP_TAIL=12
step bench-tiny-one "$b/run" llama_bench /tmp/tiny-fp16.bin --device cuda --prompt 16 --decode 256
for n in 1 8 32 64; do
  step bench-tiny-par$n "$b/run" llama_bench /tmp/tiny-fp16.bin --device cuda --prompt 128 \
    --decode 128 --parallel $n --kv-type fp16 --repeat 2
done
step bench-tiny-par64-fp32kv "$b/run" llama_bench /tmp/tiny-fp16.bin --device cuda --prompt 128 \
  --decode 128 --parallel 64 --repeat 2
for i in $(seq 1 90); do [ -f /tmp/big-fp16.bin ] && break; sleep 2; done
cat "$out/export-big-fp16.log"
step bench-big-512 "$b/run" llama_bench /tmp/big-fp16.bin --device cuda --prompt 512 --decode 32 \
  --repeat 2
for n in 1 64; do
  step bench-big-par$n "$b/run" llama_bench /tmp/big-fp16.bin --device cuda --prompt 128 \
    --decode 128 --parallel $n --kv-type fp16 --repeat 1
done
STEP_TAIL=40 step paged-bench "$b/run" paged_attention_bench --dtype fp16 --quick
exit $status
