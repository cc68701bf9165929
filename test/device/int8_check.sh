#!/usr/bin/env bash
# On the GPU machine, for int8 weights (issue 8): unpack a device-bundle and the llama2 share of
# the test data, then run the CUDA kernel tests (the int8 ones again under compute-sanitizer),
# llama2's CUDA golden and perplexity tests, the int8 quality on CUDA (bench/quant_quality.sh)
# and the decode benchmark of random TinyLlama-1.1B-shaped fp16 and int8 models and a
# Llama-3.1-8B-shaped int8 model (exported in the background while the tests run).
#   int8_check.sh BUNDLE_TGZ DATA_TGZ OUT_DIR [PART]   PART: tests (default) or bench8b
set -uo pipefail
part=${4:-tests}
source "$(dirname "$0")/common.sh"
unpack_bundle "$1" "$2" "$3"
big=$shared/models/llama3.1-8b/config.json
tiny=$shared/models/tinyllama-chat/resaved-transformers-4.56.0/config.json
bench() {  # bench NAME FILE ARGS...
  local name=$1 file=$2
  shift 2
  step bench-$name "$b/run" llama_bench "$file" --device cuda "$@"
}
case $part in
  tests)
    [ -f /tmp/big-int8.bin ] || setsid nohup python3 "$root/tools/export.py" /tmp/big-int8.bin \
      --random "$big" --dtype int8 --group-size 64 -q > "$out/export-8b.log" 2>&1 < /dev/null &
    step cuda-tests "$b/run" kuiper_cuda_tests --gtest_brief=1
    step memcheck-int8 "$b/run" compute-sanitizer --tool memcheck --leak-check full \
      kuiper_cuda_tests --gtest_brief=1 --gtest_filter='CudaQuantized*'
    step golden-llama2 "$b/run" kuiper_tests --gtest_brief=1 \
      --gtest_filter='*cuda_llama2*:*LlamaModelOnDevice*/cuda:Int8*'
    step perplexity "$b/run" kuiper_perplexity_tests --gtest_brief=1 --gtest_filter='*cuda*'
    step quality env KUIPER_RUN="$b/run" KUIPER_BIN_DIR="$b/bin" QUALITY_DIR=/tmp/quality \
      "$root/bench/quant_quality.sh" cuda --dtype:int8:--group-size:32 --dtype:int8:--group-size:32:--scale-dtype:fp32
    step export-tiny sh -c "python3 $root/tools/export.py /tmp/tiny-fp16.bin --random $tiny --dtype fp16 -q &&
      python3 $root/tools/export.py /tmp/tiny-int8-g64.bin --random $tiny --dtype int8 --group-size 64 -q &&
      python3 $root/tools/export.py /tmp/tiny-int8-g32.bin --random $tiny --dtype int8 --group-size 32 -q"
    for m in tiny-fp16 tiny-int8-g64 tiny-int8-g32; do
      bench $m-short /tmp/$m.bin --prompt 16 --decode 256 --repeat 3
      bench $m-512 /tmp/$m.bin --prompt 512 --decode 256 --repeat 3
    done
    ;;
  bench8b)
    wait_s=0
    while [ ! -f /tmp/big-int8.bin ] && [ $wait_s -lt 240 ]; do sleep 5; wait_s=$((wait_s + 5)); done
    cat "$out/export-8b.log" 2>/dev/null
    bench big-int8-short /tmp/big-int8.bin --prompt 16 --decode 128 --repeat 3
    bench big-int8-512 /tmp/big-int8.bin --prompt 512 --decode 64 --repeat 2
    ;;
esac
exit $status
