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
#   serve:  serve_bench.sh on the TinyLlama fp16 and 8B bf16 models with fp16 KV caches;
#   attn:   paged_attention_bench --many-rows (the decode kernel's configurations at 64 rows of
#           the 8B shape; the bundle needs bench/paged_attention_bench).
# PAR64_ENVS lists extra settings ("NAME=VALUE,NAME=VALUE ...", space separated) to repeat the 8B
# --parallel 64 bench under, beside the default, for A/B measurements of switches;
# TINY_PAR64_ENVS the same for TinyLlama's; TINY_PARALLEL the sequence counts (1 8 32 64),
# TINY_MODELS the one-sequence benches (tiny-fp16 tiny-int8-g64 tiny-q4-g32); MEMCHECK_FILTER
# the tests compute-sanitizer runs, CUDA_TESTS_FILTER those of the plain run (all).
#   speed_check.sh BUNDLE DATA OUT [tests,tiny,big,serve,attn,quant]
# (quant: the 8B int8 and q4 decode benches, which need their own exports.)
# The logs stay in /tmp/speed-check; OUT gets them as one logs.tgz (the device tool returns few
# files) and summary.txt, the figures, written as they come (a run cut short still has them).
set -uo pipefail
parts=${4:-tests,tiny,big,serve,attn,quant}
source "$(dirname "$0")/common.sh"
results=$3
unpack_bundle "$1" "$2" /tmp/speed-check
big=$shared/models/llama3.1-8b/config.json
tiny=$shared/models/tinyllama-chat/resaved-transformers-4.56.0/config.json
trace=$b/bin/libkernel_trace.so
bench() {  # bench NAME FILE ARGS...: llama_bench on CUDA, its figures into summary.txt
  local name=$1 file=$2
  shift 2
  STEP_TAIL=${BENCH_TAIL:-3} step bench-$name env ${BENCH_ENV:-} "$b/run" llama_bench "$file" \
    --device cuda "$@"
  grep -E "^(decode|prefill)" "$out/bench-$name.log" | sed "s/^/$name: /" >> "$results/summary.txt"
}
bench_under() {  # NAME FILE "ENVS" ARGS...: bench NAME-<setting> FILE ARGS under each of ENVS
  local name=$1 file=$2 envs=$3 e
  shift 3
  for e in $envs; do BENCH_ENV=${e//,/ } bench "$name-${e//[=,]/_}" "$file" "$@"; done
}
export_big() {  # NAME ARGS...: the command exporting /tmp/NAME.bin unless a warm machine has it
  echo "[ -f /tmp/$1.bin ] || { python3 $root/tools/export.py /tmp/$1.tmp --random $big ${*:2} -q &&
    mv /tmp/$1.tmp /tmp/$1.bin; }"
}
if { has big || has serve; } && [ ! -f /tmp/big.started ]; then
  touch /tmp/big.started
  exports=$(export_big 8b-bf16 --dtype bf16 --tokenizer $shared/models/llama3-kjv/tokenizer.json)
  # (an empty part between two ';' is a syntax error that ran none of them)
  has quant && exports+=" ; $(export_big big-int8 --dtype int8 --group-size 64) ;
    $(export_big big-q4 --dtype q4 --group-size 32)"
  setsid nohup sh -c "$exports" > "$out/export-big.log" 2>&1 < /dev/null &
fi
if has tests; then
  step cuda-tests "$b/run" kuiper_cuda_tests --gtest_brief=1 --gtest_filter="${CUDA_TESTS_FILTER:-*}"
  step memcheck "$b/run" compute-sanitizer --tool memcheck --leak-check full kuiper_cuda_tests \
    --gtest_brief=1 --gtest_filter="${MEMCHECK_FILTER:-CudaPagedAttention.*:CudaQuantized.*:CudaMatmul.EveryGemv*}"
  step golden-llama2 "$b/run" kuiper_tests --gtest_brief=1 \
    --gtest_filter='*cuda_llama2*:*LlamaModelOnDevice*/cuda'
  grep -h "PASSED\|FAILED\|ERROR SUMMARY" "$out"/cuda-tests.log "$out"/memcheck.log \
    "$out"/golden-llama2.log >> "$results/summary.txt"
fi
if has tiny; then
  models=${TINY_MODELS:-tiny-fp16 tiny-int8-g64 tiny-q4-g32}
  declare -A tiny_args=([tiny-fp16]="--dtype fp16" [tiny-int8-g64]="--dtype int8 --group-size 64"
                        [tiny-q4-g32]="--dtype q4 --group-size 32")
  for m in tiny-fp16 $models; do
    [ -f /tmp/$m.bin ] || step export-$m python3 $root/tools/export.py /tmp/$m.bin --random $tiny \
      ${tiny_args[$m]} -q
  done
  for m in $models; do
    bench $m /tmp/$m.bin --prompt 16 --decode 256 --repeat 3
  done
  for n in ${TINY_PARALLEL:-1 8 32 64}; do
    bench tiny-par$n /tmp/tiny-fp16.bin --prompt 128 --decode 128 --parallel $n --kv-type fp16 --repeat 2
  done
  bench_under tiny-par64 /tmp/tiny-fp16.bin "${TINY_PAR64_ENVS:-}" --prompt 128 --decode 128 \
    --parallel 64 --kv-type fp16 --repeat 2
fi
if has attn && [ -x "$b/bin/paged_attention_bench" ]; then
  STEP_TAIL=4 step attn-sweep "$b/run" paged_attention_bench --dtype fp16 --many-rows
  grep "^many-rows" "$out/attn-sweep.log" >> "$results/summary.txt"
fi
if has big; then
  wait_for /tmp/8b-bf16.bin && {
    bench big-one /tmp/8b-bf16.bin --prompt 16 --decode 128 --repeat 2
    bench big-512 /tmp/8b-bf16.bin --prompt 512 --decode 8 --repeat 2 --kv-type fp16
    for n in 1 64; do
      bench big-par$n /tmp/8b-bf16.bin --prompt 128 --decode 128 --parallel $n --kv-type fp16 --repeat 1
    done
    # e.g. PAR64_ENVS="KUIPER_CUDA_GEMM_PAIRS=0 KUIPER_CUDA_ATTN_TC=0,KUIPER_CUDA_PDL=0"
    bench_under big-par64 /tmp/8b-bf16.bin "${PAR64_ENVS:-}" --prompt 128 --decode 128 \
      --parallel 64 --kv-type fp16 --repeat 1
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
if has quant; then
  for m in big-int8 big-q4; do
    wait_for /tmp/$m.bin && bench $m /tmp/$m.bin --prompt 16 --decode 128 --repeat 2
  done
  cat "$out/export-big.log"
fi
tar czf "$results/logs.tgz" -C "$out" .
exit $status
