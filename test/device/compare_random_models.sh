#!/usr/bin/env bash
# Issue check on the GPU machine: random-weight models of Qwen2.5-0.5B's and Llama-3.2-1B's
# shapes, made with transformers, exported with tools/export.py, must give transformers' greedy
# tokens through llama_infer on the CPU and on CUDA.
#   compare_random_models.sh BUNDLE_DIR MODELS_DIR OUT_DIR qwen2|llama3
# MODELS_DIR is shared/models (for the real configs and tokenizers); BUNDLE_DIR is a
# device-bundle with llama_infer.
set -euo pipefail
bundle=$1 models=$2 out=$3 family=$4
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
status=0
case $family in
  qwen2) name=qwen2.5 config=$models/qwen2.5/resaved-transformers-4.49.0/config.json ;;
  llama3) name=llama3.2 config=$models/llama3/config.json ;;
esac
tokenizer=$models/$family-kjv/tokenizer.json
mkdir -p "$out"
{
  dir=/tmp/random-$name
  python3 "$here/hf_random_greedy.py" "$config" "$tokenizer" "$dir"
  python3 "$root/tools/export.py" "$dir.bin" --hf "$dir" --dtype bf16 -q
  python3 - "$dir/greedy.json" > "$dir/cases.tsv" <<'PY'
import json, sys
for c in json.load(open(sys.argv[1]))["cases"]:
    print("smallest top-2 logit gap of the reference:", min(c["top2_gaps"]), file=sys.stderr)
    print(json.dumps(c["prompt"]) + "\t" + " ".join(map(str, c["prompt_ids"])) + "\t" + " ".join(map(str, c["greedy_ids"])))
PY
  while IFS=$'\t' read -r prompt_json prompt_ids expected; do
    prompt=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1]), end="")' "$prompt_json")
    got_prompt=$("$bundle/run" llama_infer "$dir.bin" "$tokenizer" -p "$prompt" --tokenize 2>/dev/null)
    for device in cpu cuda; do
      got=$("$bundle/run" llama_infer "$dir.bin" "$tokenizer" -p "$prompt" --temp 0 \
            -n "$(echo "$expected" | wc -w)" --ids --device "$device" 2>>"$out/$name-$device.err")
      if [ "$got" = "$expected" ] && [ "$got_prompt" = "$prompt_ids" ]; then verdict=same; else verdict=DIFFERENT; status=1; fi
      printf '%-9s %-5s %-9s %s\n' "$name" "$device" "$verdict" "$prompt_json" | tee -a "$out/summary.txt"
      [ "$verdict" = same ] || printf '  expected %s\n  got      %s\n' "$expected" "$got" | tee -a "$out/summary.txt"
    done
  done < "$dir/cases.tsv"
}
exit $status
