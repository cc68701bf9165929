#!/usr/bin/env bash
# CPU decode speed of kuiper next to llama.cpp's llama-bench on the same weights and threads:
# TinyLlama-1.1B-shaped random models as fp32, fp16, int8 (groups of 64) and q4 (groups of 32)
# against llama.cpp's F32, F16, Q8_0 and Q4_0 (llama-quantize's default mix, Q6_K classifier).
#   LLAMA_BENCH=/path/to/llama-bench GGUF_DIR=/dir/with/tiny-{f32,f16,q8_0,q4_0}.gguf \
#     bench/cpu_vs_llamacpp.sh
# The GGUF files are converted from build/bench_models/tinyllama-random-fp32.bin (export.py
# --random, seed 0; e.g. with the gguf package's GGUFWriter) and quantized by llama-quantize.
# Each pair runs CPU_BENCH_REPEAT times (default 3), alternating, medians reported; both decode
# 32 tokens (kuiper after a 16-token prompt, llama-bench's tg32 after none). CPU_BENCH_THREADS
# (default "1 2") lists the thread counts, CPU_BENCH_FORMATS (default "fp32 fp16 int8 q4"); a
# format gguf:TYPE runs both programs on the one file GGUF_DIR/tiny-TYPE.gguf (e.g. gguf:q8_0,
# gguf:q4_k_m), our GGUF reader against llama.cpp on the same weights.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${LLAMA_BENCH:?set LLAMA_BENCH to the llama-bench of llama.cpp}" "${GGUF_DIR:?set GGUF_DIR}"
shared=${KUIPER_SHARED_DIR:-../shared}
tiny=$shared/models/tinyllama-chat/resaved-transformers-4.56.0/config.json
out=build/bench_models
repeat=${CPU_BENCH_REPEAT:-3}
mkdir -p "$out"
declare -A args=([fp32]="" [fp16]="--dtype fp16" [int8]="--dtype int8 --group-size 64"
                 [q4]="--dtype q4 --group-size 32")
declare -A gguf=([fp32]=f32 [fp16]=f16 [int8]=q8_0 [q4]=q4_0)
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{v[NR]=$1} END {print NR ? v[int((NR+1)/2)] : "?"}'; }
lscpu | grep -E '^Model name' | sed 's/  */ /g'
printf '%-6s %-7s %12s %12s %7s\n' format threads kuiper llama.cpp ratio
for format in ${CPU_BENCH_FORMATS:-fp32 fp16 int8 q4}; do
  if [[ $format == gguf:* ]]; then  # one GGUF file for both
    file=$GGUF_DIR/tiny-${format#gguf:}.gguf
    theirs_file=$file
  else
    file=$out/tinyllama-random-$format.bin
    # shellcheck disable=SC2086
    [ -f "$file" ] || python3 tools/export.py "$file" --random "$tiny" ${args[$format]} -q
    theirs_file=$GGUF_DIR/tiny-${gguf[$format]}.gguf
  fi
  for t in ${CPU_BENCH_THREADS:-1 2}; do
    ours="" theirs=""
    for _ in $(seq "$repeat"); do
      ours+=" $(build/bin/llama_bench "$file" -t "$t" --prompt 16 --decode 32 --no-mmap 2>&1 |
        awk '/^decode/ {for (i = 1; i <= NF; ++i) if ($i ~ /tokens\/s/) print $(i - 1)}' | tr -d ':')"
      theirs+=" $("$LLAMA_BENCH" -m "$theirs_file" -p 0 -n 32 -t "$t" -r 1 -o csv 2>/dev/null |
        python3 -c "import csv, sys; r = list(csv.DictReader(sys.stdin)); print(r[-1]['avg_ts'])")"
    done
    a=$(echo "$ours" | median) b=$(echo "$theirs" | median)
    printf '%-6s %-7s %12s %12s %7s\n' "$format" "$t" "$a" "$b" "$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.2f", a / b}')"
  done
done
