#!/usr/bin/env bash
# On the GPU machine, the throughput lines of issues 8-11 in one call: unpack a device-bundle
# (kuiper_cuda_tests, kuiper_tests, llama_infer, llama_bench, llama_server and, where CUPTI was
# found, libkernel_trace.so) and the test data (llama2-kjv, the llama2 and llama3-kjv tokenizers,
# the TinyLlama and Llama-3.1-8B configs), then
#   tests:  every CUDA kernel test, compute-sanitizer on the paged-attention and GEMV kernels,
#           llama2's CUDA goldens through the model and the engine;
#   tiny:   TinyLlama-shaped random fp16 / int8 g64 / q4 g32 decode, fp16 --parallel 1/8/32/64;
#   big:    Llama-3.1-8B-shaped bf16 one sequence, 512-token prefill, --parallel 64 (and a kernel
#           trace of it, bench/kernel_trace.cpp), int8 g64 and q4 g32 decode (all exported in the
#           background while the rest runs);
#   serve:  serve_bench.sh on the TinyLlama fp16 and 8B bf16 models with fp16 KV caches.
#   speed_check.sh BUNDLE DATA OUT [tests,tiny,big,serve]
# The logs stay in /tmp/speed-check; OUT gets them as one logs.tgz (the device tool returns few
# files) and summary.txt, the figures, written as they come (a run cut short still has them).
set -uo pipefail
parts=${4:-tests,tiny,big,serve}
source "$(dirname "$0")/common.sh"
results=$3
unpack_bundle "$1" "$2" /tmp/speed-check
big=$shared/models/llama3.1-8b/config.json
tiny=$shared/models/tinyllama-chat/resaved-transformers-4.56.0/config.json
trace=$b/bin/libkernel_trace.so
has() { [[ ",$parts," == *",$1,"* ]]; }
note() { echo "$*" | tee -a "$results/summary.txt"; }
bench() {  # bench NAME FILE ARGS...: llama_bench on CUDA, its figures into summary.txt
  local name=$1 file=$2
  shift 2
  STEP_TAIL=${BENCH_TAIL:-3} step bench-$name "$b/run" llama_bench "$file" --device cuda "$@"
  grep -E "^(decode|prefill)" "$out/bench-$name.log" | sed "s/^/$name: /" >> "$results/summary.txt"
}
wait_for() { for _ in $(seq 1 150); do [ -f "$1" ] && return 0; sleep 2; done; note "missing $1"; return 1; }
export_big() {  # NAME ARGS...: the command exporting /tmp/NAME.bin unless a warm machine has it
  echo "[ -f /tmp/$1.bin ] || { python3 $root/tools/export.py /tmp/$1.tmp --random $big ${*:2} -q &&
    mv /tmp/$1.tmp /tmp/$1.bin; }"
}
if { has big || has serve; } && [ ! -f /tmp/big.started ]; then
  touch /tmp/big.started
  setsid nohup sh -c "$(export_big 8b-bf16 --dtype bf16 --tokenizer $shared/models/llama3-kjv/tokenizer.json) ;
    $(export_big big-int8 --dtype int8 --group-size 64) ; $(export_big big-q4 --dtype q4 --group-size 32)" \
    > "$out/export-big.log" 2>&1 < /dev/null &
fi
if has tests; then
  step cuda-tests "$b/run" kuiper_cuda_tests --gtest_brief=1
  step memcheck "$b/run" compute-sanitizer --tool memcheck --leak-check full kuiper_cuda_tests \
    --gtest_brief=1 --gtest_filter='CudaPagedAttention.*:CudaQuantized.*:CudaMatmul.EveryGemv*'
  step golden-llama2 "$b/run" kuiper_tests --gtest_brief=1 \
    --gtest_filter='*cuda_llama2*:*LlamaModelOnDevice*/cuda'
  grep -h "PASSED\|FAILED\|ERROR SUMMARY" "$out"/cuda-tests.log "$out"/memcheck.log \
    "$out"/golden-llama2.log >> "$results/summary.txt"
fi
if has tiny; then
  [ -f /tmp/tiny-q4-g32.bin ] || step export-tiny sh -c "
    python3 $root/tools/export.py /tmp/tiny-fp16.bin --random $tiny --dtype fp16 -q &&
    python3 $root/tools/export.py /tmp/tiny-int8-g64.bin --random $tiny --dtype int8 --group-size 64 -q &&
    python3 $root/tools/export.py /tmp/tiny-q4-g32.bin --random $tiny --dtype q4 --group-size 32 -q"
  for m in tiny-fp16 tiny-int8-g64 tiny-q4-g32; do
    bench $m /tmp/$m.bin --prompt 16 --decode 256 --repeat 3
  done
  for n in 1 8 32 64; do
    bench tiny-par$n /tmp/tiny-fp16.bin --prompt 128 --decode 128 --parallel $n --kv-type fp16 --repeat 2
  done
fi
if has big; then
  wait_for /tmp/8b-bf16.bin && {
    bench big-one /tmp/8b-bf16.bin --prompt 16 --decode 128 --repeat 2
    bench big-512 /tmp/8b-bf16.bin --prompt 512 --decode 8 --repeat 2 --kv-type fp16
    for n in 1 64; do
      bench big-par$n /tmp/8b-bf16.bin --prompt 128 --decode 128 --parallel $n --kv-type fp16 --repeat 1
    done
    [ ! -f "$trace" ] || STEP_TAIL=30 step trace-big-par64 env CUDA_INJECTION64_PATH="$trace" \
      "$b/run" llama_bench /tmp/8b-bf16.bin --device cuda --prompt 128 --decode 128 --parallel 64 \
      --kv-type fp16 --repeat 1
  }
fi
if has serve; then
  wait_for /tmp/8b-bf16.bin
  SERVE_ARGS="--kv-type fp16" bash "$(dirname "$0")/serve_bench.sh" "$1" "$2" "$out/serve" \
    > "$out/serve.log" 2>&1 || status=1
  tail -n 30 "$out/serve.log"
  cat "$out"/serve/bench-*.log >> "$results/summary.txt" 2>/dev/null
fi
if has big; then
  for m in big-int8 big-q4; do
    wait_for /tmp/$m.bin && bench $m /tmp/$m.bin --prompt 16 --decode 128 --repeat 2
  done
  cat "$out/export-big.log"
fi
tar czf "$results/logs.tgz" -C "$out" .
exit $status
