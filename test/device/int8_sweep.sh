#!/usr/bin/env bash
# On the GPU machine, after quant_check.sh: TinyLlama-shaped int8 decode with every GEMV variant
# (KUIPER_CUDA_GEMV / KUIPER_CUDA_GEMV_GATED), then the Llama-3.1-8B-shaped int8 benchmark.
#   int8_sweep.sh BUNDLE DATA OUT
set -uo pipefail
source "$(dirname "$0")/common.sh"
unpack_bundle "$1" "$2" "$3"
tiny=$shared/models/tinyllama-chat/resaved-transformers-4.56.0/config.json
big=$shared/models/llama3.1-8b/config.json
if [ ! -f /tmp/big-int8.bin ] && ! pgrep -f big-int8 >/dev/null; then
  setsid nohup python3 "$root/tools/export.py" /tmp/big-int8.bin --random "$big" --dtype int8 \
    --group-size 64 > "$out/export-8b.log" 2>&1 < /dev/null &
fi
[ -f /tmp/tiny-int8-g64.bin ] || python3 "$root/tools/export.py" /tmp/tiny-int8-g64.bin --random "$tiny" --dtype int8 --group-size 64 -q
for v in 0 1 2 3 4 5; do
  for g in 0 1 2 3 4 5; do
    r=$(KUIPER_CUDA_GEMV=$v KUIPER_CUDA_GEMV_GATED=$g "$b/run" llama_bench /tmp/tiny-int8-g64.bin \
      --device cuda --prompt 16 --decode 128 --repeat 1 2>&1 | grep '^decode')
    echo "variant $v gated $g: $r"
  done
done
for i in $(seq 1 60); do [ -f /tmp/big-int8.bin ] && break; sleep 5; done
cat "$out/export-8b.log"
"$b/run" llama_bench /tmp/big-int8.bin --device cuda --prompt 16 --decode 128 --repeat 3
"$b/run" llama_bench /tmp/big-int8.bin --device cuda --prompt 512 --decode 32 --repeat 2
