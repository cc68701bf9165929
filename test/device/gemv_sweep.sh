#!/usr/bin/env bash
# On the GPU machine: decode speed of random-weight models (TinyLlama and Llama-3.1-8B shapes;
# int8 g64, q4 g32, fp16) under GEMV variant pairs, then optional profiles (nsys, ncu).
#   gemv_sweep.sh BUNDLE DATA OUT [tiny,big,nsys,ncu]
# PAIRS: "gemv:gated" pairs of KUIPER_CUDA_GEMV / KUIPER_CUDA_GEMV_GATED (-1: the default
# variant; default "-1:-1"). MODELS: tiny-int8 tiny-q4 big-int8 big-q4 by default, tiny-fp16
# too. BENCH_ENV: extra settings for every bench; NCU_ARGS: ncu's sections or metrics.
# Figures go to OUT/summary.txt as they come. (KUIPER_CUDA_GEMV_TRACE=1 in BENCH_ENV makes
# llama_bench print the GEMV launches of one step: gemv_trace.cuh.)
set -uo pipefail
parts=${4:-tiny,big}
source "$(dirname "$0")/common.sh"
results=$3
unpack_bundle "$1" "$2" /tmp/gemv-sweep
tiny=$shared/models/tinyllama-chat/resaved-transformers-4.56.0/config.json
big=$shared/models/llama3.1-8b/config.json
declare -A config=([tiny-fp16]=$tiny [tiny-int8]=$tiny [tiny-q4]=$tiny [big-int8]=$big [big-q4]=$big)
declare -A args=([tiny-fp16]="--dtype fp16" [tiny-int8]="--dtype int8 --group-size 64" [tiny-q4]="--dtype q4 --group-size 32"
                 [big-int8]="--dtype int8 --group-size 64" [big-q4]="--dtype q4 --group-size 32")
models=${MODELS:-tiny-int8 tiny-q4 big-int8 big-q4}
exports=""
for m in $models; do
  [[ $m == big-* ]] && ! has big && continue
  [ -f /tmp/$m.bin ] || exports+="python3 $root/tools/export.py /tmp/$m.tmp --random ${config[$m]} ${args[$m]} -q && mv /tmp/$m.tmp /tmp/$m.bin; "
done
[ -z "$exports" ] || setsid nohup sh -c "$exports" > "$out/export.log" 2>&1 < /dev/null &
decode() {  # MODEL ENV...: the decode line of llama_bench under the settings
  local m=$1
  shift
  env ${BENCH_ENV:-} "$@" "$b/run" llama_bench /tmp/$m.bin --device cuda --prompt 16 \
    --decode "${DECODE:-128}" --repeat 2 2>&1 | grep '^decode' | tail -n 1
}
for m in $models; do
  [[ $m == big-* ]] && ! has big && continue
  [[ $m == tiny-* ]] && ! has tiny && continue
  wait_for /tmp/$m.bin 200 || continue
  for pair in ${PAIRS:--1:-1}; do
    note "$m ${BENCH_ENV:-} gemv ${pair%:*} gated ${pair#*:}: $(decode $m KUIPER_CUDA_GEMV=${pair%:*} KUIPER_CUDA_GEMV_GATED=${pair#*:})"
  done
done
if has nsys; then
  nsys=$(command -v nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys 2>/dev/null | head -n 1)
  note "nsys: ${nsys:-none}"
  if [ -n "$nsys" ]; then
    for m in ${NSYS_MODELS:-tiny-q4}; do
      step nsys-$m env ${BENCH_ENV:-} "$nsys" profile --cuda-graph-trace=node -o /tmp/nsys-$m -f true \
        "$b/run" llama_bench /tmp/$m.bin --device cuda --prompt 16 --decode 32 --repeat 1
      "$nsys" stats --report cuda_gpu_trace --format csv -o /tmp/nsys-$m /tmp/nsys-$m.nsys-rep \
        > /dev/null 2>&1
      cp /tmp/nsys-$m*.csv "$results/" 2>/dev/null
    done
  fi
fi
if has ncu; then
  for m in ${NCU_MODELS:-big-q4}; do
    wait_for /tmp/$m.bin 200 || continue
    STEP_TAIL=400 step ncu-$m env ${BENCH_ENV:-} ncu --clock-control none -k regex:gemv_kernel \
      --launch-skip "${NCU_SKIP:-2000}" --launch-count "${NCU_COUNT:-5}" \
      ${NCU_ARGS:---section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section MemoryWorkloadAnalysis} \
      "$b/run" llama_bench /tmp/$m.bin --device cuda --prompt 16 \
      --decode 32 --repeat 1
  done
fi
cat "$out/export.log" 2>/dev/null
tar czf "$results/logs.tgz" -C "$out" .
exit $status
