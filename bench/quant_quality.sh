#!/usr/bin/env bash
# Quantization quality, as llama.cpp's llama-perplexity reports it: for each kjv model, the fp32
# export scores Genesis 1-4 and Revelation (the held-out book; one verse a line, llama_perplexity's
# default windows of -c 256) and saves its log-probabilities (--kl-base); every quantized export
# is then scored against them: mean KL divergence, its 99th percentile, top-1 agreement and PPL.
#   bench/quant_quality.sh [DEVICE] [FORMATS...]   (default: cpu, int8 groups of 32 and 64)
# A format is export.py arguments with ':' for spaces, e.g. --dtype:int8:--group-size:32, or
# gguf:TYPE for a GGUF file of TYPE (f16, q8_0) written by test/tools/write_gguf.py as llama.cpp's
# converter writes it (needs the gguf package).
# Needs build/bin (KUIPER_BIN_DIR), ../shared (KUIPER_SHARED_DIR); files go to
# build/quality (QUALITY_DIR). Prints one line per (model, format, text).
set -euo pipefail
cd "$(dirname "$0")/.."
device=${1:-cpu}
shift || true
formats=("$@")
[ ${#formats[@]} -gt 0 ] || formats=(--dtype:int8:--group-size:32 --dtype:int8:--group-size:64)
shared=${KUIPER_SHARED_DIR:-../shared}
bin=${KUIPER_BIN_DIR:-build/bin}
run=${KUIPER_RUN:-}  # e.g. a device bundle's run script
out=${QUALITY_DIR:-build/quality}
mkdir -p "$out"
python3 bench/kjv_text.py Ge 1 4 > "$out/genesis1-4.txt"
python3 bench/kjv_text.py Rev > "$out/rev.txt"
# bits/w: of the layers' matrices / of every matrix (embedding table and classifier included).
printf '%-8s %-34s %-11s %11s %10s %10s %9s %9s\n' model format text bits/w "mean KL" "KL p99" "same top" PPL
for model in llama2 qwen2 llama3; do
  dir=$shared/models/$model-kjv
  [ -d "$dir" ] || { echo "$model: $dir missing, skipped" >&2; continue; }
  tok=$dir/tokenizer.model
  [ -f "$tok" ] || tok=$dir/tokenizer.json
  [ -f "$out/$model-fp32.bin" ] || python3 tools/export.py "$out/$model-fp32.bin" --hf "$dir" -q
  for text in genesis1-4 rev; do
    $run "$bin/llama_perplexity" "$out/$model-fp32.bin" "$tok" -f "$out/$text.txt" --device "$device" \
      --kl-base "$out/$model-$text.kl" > /dev/null 2>&1
  done
  for format in "${formats[@]}"; do
    args=${format//:/ }
    name=$(echo "$args" | tr -d '-' | tr ' ' '_')
    if [[ $format == gguf:* ]]; then
      file=$out/$model-${format#gguf:}.gguf
      write=(python3 test/tools/write_gguf.py "$file" "$dir" --type "${format#gguf:}")
    else
      file=$out/$model-$name.bin
      write=(python3 tools/export.py "$file" --hf "$dir" $args -q)
    fi
    if ! "${write[@]}" > /dev/null 2> "$out/$model-$name.err"; then
      printf '%-8s %-34s %s\n' "$model" "$args" "not exported: $(tail -n 1 "$out/$model-$name.err")"
      continue
    fi
    bits=$(python3 bench/bits_per_weight.py "$file")
    for text in genesis1-4 rev; do
      result=$($run "$bin/llama_perplexity" "$file" "$tok" -f "$out/$text.txt" --device "$device" \
        --kl-base "$out/$model-$text.kl" --kl-divergence 2>/dev/null)
      value() { echo "$result" | grep -E "$1" | head -n 1 | sed 's/^[^:]*: *//' | awk '{print $1}'; }
      kl=$(value '^Mean +KLD')
      p99=$(value '^99.0% +KLD')
      top=$(value '^Same top p')
      ppl=$(value '^Mean PPL\(Q\)')
      printf '%-8s %-34s %-11s %11s %10s %10s %9s %9s\n' "$model" "$args" "$text" "$bits" "$kl" "$p99" "$top" "$ppl"
    done
  done
done
