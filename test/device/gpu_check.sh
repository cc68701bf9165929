#!/usr/bin/env bash
# On the GPU machine: unpack a device-bundle and one model's share of the test data, then run that
# model's CUDA tests, plus per model:
#   llama2: the CUDA kernel tests, them again under compute-sanitizer, and the decode/prefill
#           benchmark (llama2-kjv, random TinyLlama-1.1B-shaped fp32 and fp16);
#   qwen2, llama3: --chat on CUDA, and the random-weight Qwen2.5-0.5B / Llama-3.2-1B models
#           made with transformers against llama_infer (compare_random_models.sh).
#   gpu_check.sh BUNDLE_TGZ DATA_TGZ MODEL OUT_DIR
set -uo pipefail
model=$3
STEP_TAIL=6
source "$(dirname "$0")/common.sh"
unpack_bundle "$1" "$2" "$4"
step tests-$model "$b/run" kuiper_tests --gtest_brief=1 \
  --gtest_filter="*cuda_${model}*:*LlamaModelOnDevice*/cuda"
case $model in
  llama2)
    step cuda-tests "$b/run" kuiper_cuda_tests --gtest_brief=1
    step memcheck "$b/run" compute-sanitizer --tool memcheck --leak-check full \
      kuiper_cuda_tests --gtest_brief=1 --gtest_filter=-*MoreThanTheCardHas*
    tiny=$shared/models/tinyllama-chat/resaved-transformers-4.56.0/config.json
    step export-tiny sh -c "python3 $root/tools/export.py /tmp/tiny-fp32.bin --random $tiny -q &&
                            python3 $root/tools/export.py /tmp/tiny-fp16.bin --random $tiny --dtype fp16 -q &&
                            python3 $root/tools/export.py /tmp/kjv-fp32.bin --hf $shared/models/llama2-kjv -q"
    # Decoding right after a short prompt, and after a 512-token prompt (longer attention).
    for m in kjv-fp32 tiny-fp32 tiny-fp16; do
      step bench-$m-short "$b/run" llama_bench /tmp/$m.bin --device cuda --prompt 16 --decode 256 --repeat 5
      step bench-$m-512 "$b/run" llama_bench /tmp/$m.bin --device cuda --prompt 512 --decode 256 --repeat 5
    done
    step gemv-bench "$b/run" gemv_bench --model-only
    ;;
  qwen2 | llama3)
    tokenizer=$shared/models/$model-kjv/tokenizer.json
    python3 "$root/tools/export.py" /tmp/$model.bin --hf "$shared/models/$model-kjv" -q
    step chat-$model sh -c "printf 'Continue the verse: In the beginning God\n/reset\nContinue the verse: The LORD is my shepherd;\n' |
      '$b/run' llama_infer /tmp/$model.bin '$tokenizer' --chat --device cuda --temp 0 --verbose"
    step random-$model "$root/test/device/compare_random_models.sh" "$b" "$shared/models" "$out" "$model"
    ;;
esac
exit $status
