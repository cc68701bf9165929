#!/usr/bin/env bash
# CPU speed of kuiper (build/bin/llama_bench) next to karpathy's llama2.c `run` (runomp build).
#   LLAMA2C_RUN=/path/to/run LLAMA2C_TOKENIZER=/path/to/tokenizer.bin bench/cpu_bench.sh
# Models, exported once into build/bench_models/ (about 11 GB in all): llama2-kjv (fp32) and a
# random-weight TinyLlama-1.1B-shaped model (fp32 and fp16), each also in llama2.c's v0 format
# (--legacy, fp32 only) for llama2.c. llama2.c prints one "achieved tok/s" over every position
# after the first, prompt included, so it gets an empty prompt (BOS only) and greedy sampling:
# its number is a decode rate over positions 1..steps-1. kuiper's decode rate is taken over the
# same positions (--prompt 1 --decode steps-1), its prefill rate from a separate 128-token prompt.
# Each engine runs CPU_BENCH_REPEAT times (default 3), alternating, and the median is reported,
# because a shared machine's timings wander. kuiper reads its weights into memory (--no-mmap):
# where the page cache is reclaimed quickly, mapped weights are re-read from disk mid-run.
# llama2.c can only map its file, so the file is read once right before each of its runs.
# Without LLAMA2C_RUN and LLAMA2C_TOKENIZER the llama2.c column is skipped.
# CPU_BENCH_THREADS (default "1 2") lists the thread counts; KUIPER_SHARED_DIR the shared folder.
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${KUIPER_SHARED_DIR:-../shared}
threads=${CPU_BENCH_THREADS:-1 2}
bench=build/bin/llama_bench
out=build/bench_models

if [ ! -x "$bench" ]; then
  echo "cpu_bench: $bench is missing; build first (tools/build.sh)" >&2
  exit 1
fi
llama2c=1
if [ -z "${LLAMA2C_RUN:-}" ] || [ -z "${LLAMA2C_TOKENIZER:-}" ]; then
  echo "cpu_bench: LLAMA2C_RUN or LLAMA2C_TOKENIZER unset, skipping llama2.c" >&2
  llama2c=0
fi

# export_once FILE ARGS...: tools/export.py into build/bench_models/FILE unless already there.
export_once() {
  local file=$out/$1
  shift
  if [ ! -f "$file" ]; then
    echo "exporting $file" >&2
    python3 tools/export.py "$file" "$@" -q
  fi
}
mkdir -p "$out"
kjv=$shared/models/llama2-kjv
tiny=$shared/models/tinyllama-chat/resaved-transformers-4.56.0/config.json
export_once kjv-fp32.bin --hf "$kjv"
export_once kjv-fp16.bin --hf "$kjv" --dtype fp16
export_once kjv-legacy.bin --hf "$kjv" --legacy
export_once tinyllama-random-fp32.bin --random "$tiny"
export_once tinyllama-random-legacy.bin --random "$tiny" --legacy
export_once tinyllama-random-fp16.bin --random "$tiny" --dtype fp16

# name | kuiper model file | llama2.c model file (- for none) | llama2.c steps
cases="llama2-kjv-fp32 kjv-fp32.bin kjv-legacy.bin 256
llama2-kjv-fp16 kjv-fp16.bin - 256
tinyllama-random-fp32 tinyllama-random-fp32.bin tinyllama-random-legacy.bin 32
tinyllama-random-fp16 tinyllama-random-fp16.bin - 32"
repeat=${CPU_BENCH_REPEAT:-3}

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{v[NR]=$1} END {print NR ? v[int((NR+1)/2)] : "?"}'; }

# The number before "tokens/s" on the llama_bench line that starts with $1.
tokens_per_s() { sed -n "s/^$1 .*: \([0-9.]*\) tokens\/s.*/\1/p"; }

rows=()
while read -r name model legacy steps; do
  for t in $threads; do
    echo "== $name, $t thread(s)"
    decodes="" refs=""
    for _ in $(seq "$repeat"); do
      result=$("$bench" "$out/$model" -t "$t" --prompt 1 --decode $((steps - 1)) --repeat 1 \
                 --no-mmap </dev/null)
      decodes="$decodes $(tokens_per_s decode <<<"$result")"
      if [ "$llama2c" = 1 ] && [ "$legacy" != - ]; then
        cat "$out/$legacy" >/dev/null
        refs="$refs $(OMP_NUM_THREADS=$t "$LLAMA2C_RUN" "$out/$legacy" -z "$LLAMA2C_TOKENIZER" \
                        -t 0 -n "$steps" -i "" 2>&1 >/dev/null </dev/null |
                      sed -n 's/^achieved tok\/s: \([0-9]*\.[0-9]\).*/\1/p')"
      fi
    done
    result=$("$bench" "$out/$model" -t "$t" --prompt 128 --decode 1 --no-mmap </dev/null)
    echo "$result" | grep -E '^(model|device|prefill)'
    decode=$(median <<<"$decodes")
    prefill=$(tokens_per_s prefill <<<"$result")
    ref=$( [ -n "$refs" ] && median <<<"$refs" || echo -)
    echo "kuiper decode tok/s:$decodes -> $decode; llama2.c tok/s:${refs:- -} -> $ref"
    rows+=("$name $t ${decode:-?} ${prefill:-?} ${ref:-?}")
  done
done <<<"$cases"

echo
fmt='%-24s %7s %20s %21s %15s\n'
# shellcheck disable=SC2059
printf "$fmt" model threads "kuiper decode tok/s" "kuiper prefill tok/s" "llama2.c tok/s"
for row in "${rows[@]}"; do
  read -r name t decode prefill ref <<<"$row"
  # shellcheck disable=SC2059
  printf "$fmt" "$name" "$t" "$decode" "$prefill" "$ref"
done
