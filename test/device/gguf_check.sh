#!/usr/bin/env bash
# On the GPU machine, for GGUF files (issue 12): unpack a device-bundle, a share of the test data
# and PYLIB, a tar of the pure-Python packages the GGUF writer needs (the machine has no network):
#   tar czf pylib.tar.gz -C "$(python3 -c 'import gguf, os; print(os.path.dirname(os.path.dirname(gguf.__file__)))')" gguf yaml tqdm
# then run the CUDA variants of the GGUF golden tests (test/model/gguf_model_test.cpp) and of the
# command-line goldens without a TOKENIZER argument (GGUF files and exported files with their
# embedded tokenizers, test/demo/llama_infer_test.cpp), for MODELS (default: llama2 qwen2 llama3,
# whichever the data share holds).
#   gguf_check.sh BUNDLE DATA PYLIB OUT [MODELS...]
set -uo pipefail
source "$(dirname "$0")/common.sh"
unpack_bundle "$1" "$2" "$4"
pylib=/tmp/kuiper-pylib
mkdir -p "$pylib" && tar xf "$3" -C "$pylib" || exit 1
export PYTHONPATH=$pylib${PYTHONPATH:+:$PYTHONPATH}
python3 -c 'import gguf' || { echo "FAILED: the gguf package does not import from $3"; exit 1; }
shift 4
for m in "${@:-llama2 qwen2 llama3}"; do
  for model in $m; do
    [ -d "$shared/models/$model-kjv" ] || { echo "skipped $model (not in the data share)"; continue; }
    step gguf-golden-$model "$b/run" kuiper_tests --gtest_brief=1 \
      --gtest_filter="*GgufGolden*cuda_$model:*GoldenCli*cuda_$model"
  done
done
exit $status
