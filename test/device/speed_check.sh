#!/usr/bin/env bash
# On the GPU machine, the throughput lines of issues 8-11 in one call: unpack a device-bundle
# (kuiper_cuda_tests, kuiper_tests, llama_bench) and the test data (llama2-kjv, the TinyLlama and
# Llama-3.1-8B configs), then
#   tests:  every CUDA kernel test and llama2's CUDA goldens through the model (16-bit exports'
#           top tokens included);
#   tiny:   TinyLlama-shaped random fp16 / int8 g64 / q4 g32 decode (the GEMV grid both ways:
#           KUIPER_CUDA_GEMV_GRID), fp16 --parallel 1/8/32/64 (and 64 with the 16-bit GEMMs'
#           input split in two, KUIPER_CUDA_GEMM16=split), with a kernel trace of the
#           64-sequence run where the bundle has libkernel_trace.so (bench/kernel_trace.cpp);
#   big:    Llama-3.1-8B-shaped fp16 512-token prefill and --parallel 1/64, int8 g64 and q4 g32
#           decode (exported in the background while the rest runs).
#   speed_check.sh BUNDLE DATA OUT [tests,tiny,big]
# The logs stay in /tmp/speed-check; OUT gets them as one logs.tgz (the device tool returns few
# files) and summary.txt, the figures, written as they come (a run cut short still has them).
set -uo pipefail
parts=${4:-tests,tiny,big}
source "$(dirname "$0")/common.sh"
results=$3
unpack_bundle "$1" "$2" /tmp/speed-check
big=$shared/models/llama3.1-8b/config.json
tiny=$shared/models/tinyllama-chat/resaved-transformers-4.56.0/config.json
has() { [[ ",$parts," == *",$1,"* ]]; }
bench() {  # bench NAME FILE ARGS...: llama_bench on CUDA, its figures in $out/bench-NAME.log
  local name=$1 file=$2
  shift 2
  STEP_TAIL=${BENCH_TAIL:-4} step bench-$name "$b/run" llama_bench "$file" --device cuda "$@"
  grep -E "^(decode|prefill)" "$out/bench-$name.log" | sed "s/^/$name: /" >> "$results/summary.txt"
}
export_big() {  # export_big NAME ARGS...: one after another in the background, once per machine
  echo "python3 $root/tools/export.py /tmp/big-$1.tmp --random $big ${*:2} -q && mv /tmp/big-$1.tmp /tmp/big-$1.bin"
}
wait_for() { for _ in $(seq 1 120); do [ -f "$1" ] && return 0; sleep 2; done; echo "missing $1"; return 1; }
if has big && [ ! -f /tmp/big.started ]; then
  touch /tmp/big.started
  setsid nohup sh -c "$(export_big fp16 --dtype fp16) ; $(export_big int8 --dtype int8 --group-size 64) ;
    $(export_big q4 --dtype q4 --group-size 32)" > "$out/export-big.log" 2>&1 < /dev/null &
fi
if has tests; then
  step cuda-tests "$b/run" kuiper_cuda_tests --gtest_brief=1
  step golden-llama2 "$b/run" kuiper_tests --gtest_brief=1 \
    --gtest_filter='*cuda_llama2*:*LlamaModelOnDevice*/cuda'
fi
if has tiny; then
  [ -f /tmp/tiny-q4-g32.bin ] || step export-tiny sh -c "
    python3 $root/tools/export.py /tmp/tiny-fp16.bin --random $tiny --dtype fp16 -q &&
    python3 $root/tools/export.py /tmp/tiny-int8-g64.bin --random $tiny --dtype int8 --group-size 64 -q &&
    python3 $root/tools/export.py /tmp/tiny-q4-g32.bin --random $tiny --dtype q4 --group-size 32 -q"
  for m in tiny-fp16 tiny-int8-g64 tiny-q4-g32; do
    bench $m /tmp/$m.bin --prompt 16 --decode 256 --repeat 3
  done
  for m in tiny-int8-g64 tiny-q4-g32; do
    KUIPER_CUDA_GEMV_GRID=chunks bench $m-chunks /tmp/$m.bin --prompt 16 --decode 256 --repeat 3
    KUIPER_CUDA_PDL=2 bench $m-early /tmp/$m.bin --prompt 16 --decode 256 --repeat 3
  done
  KUIPER_CUDA_GEMV_GRID=gpu bench tiny-fp16-gpu /tmp/tiny-fp16.bin --prompt 16 --decode 256 --repeat 3
  for n in 1 8 32 64; do
    bench tiny-par$n /tmp/tiny-fp16.bin --prompt 128 --decode 128 --parallel $n --kv-type fp16 --repeat 2
  done
  KUIPER_CUDA_GEMM16=split bench tiny-par64-split /tmp/tiny-fp16.bin --prompt 128 --decode 128 \
    --parallel 64 --kv-type fp16 --repeat 2
  # The kernels of the 64-sequence run by time, where the bundle has bench/kernel_trace.cpp's
  # library (the GPU machine has no nsys).
  [ ! -f "$b/bin/libkernel_trace.so" ] || STEP_TAIL=30 step trace-tiny-par64 \
    env CUDA_INJECTION64_PATH="$b/bin/libkernel_trace.so" "$b/run" llama_bench /tmp/tiny-fp16.bin \
    --device cuda --prompt 16 --decode 256 --parallel 64 --kv-type fp16 --repeat 1
fi
if has big; then
  wait_for /tmp/big-fp16.bin && {
    bench big-fp16-512 /tmp/big-fp16.bin --prompt 512 --decode 16 --repeat 2 --kv-type fp16
    bench big-fp16-par1 /tmp/big-fp16.bin --prompt 128 --decode 128 --parallel 1 --kv-type fp16 --repeat 1
    bench big-fp16-par64 /tmp/big-fp16.bin --prompt 128 --decode 128 --parallel 64 --kv-type fp16 --repeat 1
    [ ! -f "$b/bin/libkernel_trace.so" ] || STEP_TAIL=30 step trace-big-par64 \
      env CUDA_INJECTION64_PATH="$b/bin/libkernel_trace.so" "$b/run" llama_bench /tmp/big-fp16.bin \
      --device cuda --prompt 16 --decode 128 --parallel 64 --kv-type fp16 --repeat 1
  }
  for name in int8 q4; do
    wait_for /tmp/big-$name.bin && bench big-$name /tmp/big-$name.bin --prompt 16 --decode 128 --repeat 2
  done
  cat "$out/export-big.log"
fi
tar czf "$results/logs.tgz" -C "$out" .
exit $status
