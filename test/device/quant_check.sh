#!/usr/bin/env bash
# On the GPU machine, for int8 and q4 weights (issues 8 and 9): unpack a device-bundle and the
# llama2 share of the test data, then
#   tests: the CUDA kernel tests (the quantized ones again under compute-sanitizer), llama2's
#          CUDA golden and perplexity tests, llama2's int8 and q4 quality on CUDA (bench/quant_quality.sh), and the decode benchmark of
#          random TinyLlama-1.1B-shaped fp16, int8 and q4 models, with a GEMV-variant sweep for
#          the quantized ones; Llama-3.1-8B-shaped q4 and int8 models are exported meanwhile
#   bench8b: the Llama-3.1-8B-shaped benchmarks (after tests, on the same warm machine)
#   all: tests (without the quality runs; the GEMV variants swept plain and gated apart) and
#        bench8b, in one call
#   quant_check.sh BUNDLE DATA OUT [tests|bench8b|all]
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
export_big() {  # export_big NAME ARGS...: in the background, once per machine
  local name=$1
  shift
  [ -f /tmp/big-$name.bin ] || [ -f /tmp/big-$name.started ] || {
    touch /tmp/big-$name.started
    setsid nohup sh -c "python3 $root/tools/export.py /tmp/big-$name.tmp --random $big $* -q &&
      mv /tmp/big-$name.tmp /tmp/big-$name.bin" > "$out/export-big-$name.log" 2>&1 < /dev/null &
  }
}
sweep() {  # sweep MODEL: the plain GEMV variants with the gated default, then the gated ones
  local m=$1 v
  for v in 0 1 2 3 4 5; do
    r=$(KUIPER_CUDA_GEMV=$v "$b/run" llama_bench /tmp/$m.bin --device cuda --prompt 16 --decode 128 \
      --repeat 2 2>&1 | grep '^decode')
    echo "$m plain variant $v: $r" | tee -a "$out/sweep.txt"
  done
  for v in 0 1 2 3 4 5; do
    r=$(KUIPER_CUDA_GEMV_GATED=$v "$b/run" llama_bench /tmp/$m.bin --device cuda --prompt 16 \
      --decode 128 --repeat 2 2>&1 | grep '^decode')
    echo "$m gated variant $v: $r" | tee -a "$out/sweep.txt"
  done
}
[ "$part" = all ] && SKIP_QUALITY=1 SWEEP=split
case $part in
  tests|all)
    export_big q4 --dtype q4 --group-size 32
    export_big int8 --dtype int8 --group-size 64
    step cuda-tests "$b/run" kuiper_cuda_tests --gtest_brief=1 ${CUDA_TESTS:+--gtest_filter=$CUDA_TESTS}
    step memcheck-quantized "$b/run" compute-sanitizer --tool memcheck --leak-check full \
      kuiper_cuda_tests --gtest_brief=1 --gtest_filter='CudaQuantized*'
    step golden-llama2 "$b/run" kuiper_tests --gtest_brief=1 \
      --gtest_filter='*cuda_llama2*:*LlamaModelOnDevice*/cuda'
    step perplexity "$b/run" kuiper_perplexity_tests --gtest_brief=1 --gtest_filter='*cuda*'
    [ -f /tmp/tiny-q4-g32.bin ] || step export-tiny sh -c "
      python3 $root/tools/export.py /tmp/tiny-fp16.bin --random $tiny --dtype fp16 -q &&
      python3 $root/tools/export.py /tmp/tiny-int8-g64.bin --random $tiny --dtype int8 --group-size 64 -q &&
      python3 $root/tools/export.py /tmp/tiny-q4-g32.bin --random $tiny --dtype q4 --group-size 32 -q"
    for m in tiny-fp16 tiny-int8-g64 tiny-q4-g32; do
      bench $m-short /tmp/$m.bin --prompt 16 --decode 256 --repeat 3
      bench $m-512 /tmp/$m.bin --prompt 512 --decode 256 --repeat 3
    done
    if [ "${SWEEP:-}" = split ]; then
      sweep tiny-q4-g32
      sweep tiny-int8-g64
    fi
    for m in tiny-int8-g64 tiny-q4-g32; do
      [ -z "${SWEEP:-}" ] || break
      for v in 0 1 2 3 4 5; do
        r=$(KUIPER_CUDA_GEMV=$v KUIPER_CUDA_GEMV_GATED=$v "$b/run" llama_bench /tmp/$m.bin \
          --device cuda --prompt 16 --decode 128 --repeat 2 2>&1 | grep '^decode')
        echo "$m variant $v (gated $v): $r" | tee -a "$out/sweep.txt"
      done
    done
    [ -n "${SKIP_QUALITY:-}" ] || step quality env KUIPER_RUN="$b/run" KUIPER_BIN_DIR="$b/bin" QUALITY_DIR=/tmp/quality \
      STEP_TAIL=12 "$root/bench/quant_quality.sh" cuda --dtype:q4:--group-size:32 --dtype:int8:--group-size:32
    ;;&
  bench8b|all)
    for name in q4 int8; do
      for i in $(seq 1 60); do [ -f /tmp/big-$name.bin ] && break; sleep 5; done
      cat "$out/export-big-$name.log" 2>/dev/null
      bench big-$name-short /tmp/big-$name.bin --prompt 16 --decode 128 --repeat 3
      bench big-$name-512 /tmp/big-$name.bin --prompt 512 --decode 64 --repeat 2
    done
    ;;
esac
exit $status
