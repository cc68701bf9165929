#!/usr/bin/env bash
# Installs the dependencies, builds, converts a model and generates text.
#   tools/quickstart.sh [HF_MODEL_DIR] [PROMPT]
# Without a model directory it uses ../shared/models/llama2-kjv when present, otherwise it
# downloads karpathy's stories15M.bin (llama2.c format, runs as it is) and the Llama 2 tokenizer.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install_deps.sh
tools/build.sh
mkdir -p models
hf_dir=${1:-}
shared=${KUIPER_SHARED_DIR:-../shared}
if [ -z "$hf_dir" ] && [ -d "$shared/models/llama2-kjv" ]; then hf_dir=$shared/models/llama2-kjv; fi
if [ -n "$hf_dir" ]; then
  model=models/$(basename "$hf_dir").bin
  [ -f "$model" ] || python3 tools/export.py "$model" --hf "$hf_dir" --dtype fp16
  tokenizer=
  for candidate in "$hf_dir"/tokenizer.json "$hf_dir"/tokenizer.model; do
    if [ -z "$tokenizer" ] && [ -f "$candidate" ]; then tokenizer=$candidate; fi
  done
  [ -n "$tokenizer" ] || { echo "quickstart: no tokenizer.json or tokenizer.model in $hf_dir" >&2; exit 1; }
  prompt=${2:-In the beginning}
else
  model=models/stories15M.bin
  tokenizer=models/tokenizer.model
  base=https://huggingface.co/karpathy/tinyllamas/resolve/main
  [ -f "$model" ] || curl -fL -o "$model" "$base/stories15M.bin"
  [ -f "$tokenizer" ] || curl -fL -o "$tokenizer" https://raw.githubusercontent.com/karpathy/llama2.c/master/tokenizer.model
  prompt=${2:-Once upon a time}
fi
build/bin/llama_infer "$model" "$tokenizer" -p "$prompt" -n 128 --temp 0
