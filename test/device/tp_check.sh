#!/usr/bin/env bash
# On a machine of several GPUs (nvidia-h200-x2, -x4 or -x8), for tensor parallelism (issue 14):
# unpack a device-bundle (kuiper_tests, llama_bench) and the test data (models/golden_public.json,
# models/llama3.1-8b/config.json and the kjv models that fit the call: llama2-kjv is 29 MB,
# qwen2-kjv 46, llama3-kjv 42; a model not sent has its golden tests skipped, so a call per
# model covers all three; the 70B config too for TP_70B=1),
#   then the CUDA tensor-parallel tests (the golden greedy ids of all three models on 2 GPUs, the
#   random model's logits split over 2, 4 and 8 GPUs as the machine has them, the batched
#   forward through recorded graphs with their NCCL calls, and the engine's golden test on 2
#   GPUs), and llama_bench of a random Llama-3.1-8B-shaped bf16 model (exported meanwhile) at
#   -tp 1, 2, 4 and 8 as far as the GPUs go: one sequence (the 1.5x of -tp 2 over -tp 1)
#   and 32 at once, each with the all-reduce time per step beside the step.
# TP_70B=1 also exports a random Llama-3.1-70B-shaped bf16 model (141 GB: only the -x4 and -x8
# disks hold it, and the export is long) and decodes it at -tp 2 and 4 (and 8 where lent).
#   tp_check.sh BUNDLE DATA OUT
set -uo pipefail
here=$(dirname "$0")
source "$here/common.sh"
unpack_bundle "$1" "$2" "$3"
gpus=$(nvidia-smi --list-gpus | wc -l)
echo "$gpus GPUs"
nvidia-smi topo -m > "$out/topology.txt" 2>&1
export NCCL_DEBUG=${NCCL_DEBUG:-WARN}
big=$shared/models/llama3.1-8b/config.json
[ -f /tmp/big-bf16.bin ] || setsid nohup sh -c "python3 $root/tools/export.py /tmp/big-bf16.tmp \
  --random $big --dtype bf16 -q && mv /tmp/big-bf16.tmp /tmp/big-bf16.bin" \
  > "$out/export-big-bf16.log" 2>&1 < /dev/null &
STEP_TAIL=20 step tp-tests "$b/run" kuiper_tests --gtest_brief=1 \
  --gtest_filter='*TensorParallel*/cuda*:ThreadCommunicator.*:RankShare.*'
for i in $(seq 1 150); do [ -f /tmp/big-bf16.bin ] && break; sleep 2; done
cat "$out/export-big-bf16.log"
STEP_TAIL=8
for tp in 1 2 4 8; do
  [ "$tp" -le "$gpus" ] || continue
  step bench-8b-tp$tp "$b/run" llama_bench /tmp/big-bf16.bin --device cuda --prompt 128 \
    --decode 128 --repeat 2 -tp $tp
  step bench-8b-tp$tp-par32 "$b/run" llama_bench /tmp/big-bf16.bin --device cuda --prompt 128 \
    --decode 64 --parallel 32 --kv-type bf16 --repeat 1 -tp $tp
done
if [ "${TP_70B:-0}" = 1 ] && [ "$gpus" -ge 4 ]; then
  step export-70b python3 "$root/tools/export.py" /tmp/huge-bf16.bin \
    --random "$shared/models/llama3.1-70b/config.json" --dtype bf16 -q
  for tp in 2 4 8; do
    [ "$tp" -le "$gpus" ] || continue
    step bench-70b-tp$tp "$b/run" llama_bench /tmp/huge-bf16.bin --device cuda --prompt 128 \
      --decode 64 --repeat 1 -tp $tp
  done
fi
exit $status
