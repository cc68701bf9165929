#!/usr/bin/env bash
# On the GPU machine: llama_server --device cuda under bench/serve_bench.py (issue 11's numbers):
# random-weight TinyLlama-1.1B-shaped fp16 and Llama-3.1-8B-shaped bf16, concurrency 1, 8, 32 and
# 64, 128-token prompts and 128 new tokens; then SIGTERM, which must exit 0.
#   serve_bench.sh BUNDLE_TGZ DATA_TGZ OUT_DIR
# The bundle needs llama_server built with CUDA (cmake -DKUIPER_CUDA=ON, libcpp-httplib-dev
# installed): tools/device-bundle DEST build/bin/llama_server. The results are $out/bench-*.log
# (a table each); the servers' own logs are $out/server-*.log.
set -uo pipefail
STEP_TAIL=8
source "$(dirname "$0")/common.sh"
unpack_bundle "$1" "$2" "$3"
tiny=$shared/models/tinyllama-chat/resaved-transformers-4.56.0/config.json
big=$shared/models/llama3.1-8b/config.json
# SERVE_8B=0 leaves the 8B shape out (a shorter run), SERVE_TINY=0 TinyLlama's; SERVE_ARGS adds
# server options (e.g. "--kv-type fp16"); SERVE_REQUESTS requests a client (4), SERVE_CONCURRENCY
# the clients (1,8,32,64).
# (Files a warm machine kept from an earlier call are used as they are.)
step export sh -c "{ [ -f /tmp/serve-tiny-fp16.bin ] || python3 $root/tools/export.py \
                     /tmp/serve-tiny-fp16.bin --random $tiny --dtype fp16 \
                     --tokenizer $shared/models/llama2/tokenizer.model -q; } &&
                   { [ \"${SERVE_8B:-1}\" = 0 ] || [ -f /tmp/8b-bf16.bin ] || python3 $root/tools/export.py \
                     /tmp/8b-bf16.bin --random $big --dtype bf16 --tokenizer $shared/models/llama3-kjv/tokenizer.json -q; }"
serve() {  # NAME MODEL TOKENIZER
  local log=$out/server-$1.log
  "$b/run" llama_server "$2" "$3" --device cuda --port 0 -c 512 --parallel 64 --queue 64 --quiet \
    ${SERVE_ARGS:-} 2>"$log" &
  local pid=$!
  for _ in $(seq 600); do grep -q "listening on" "$log" && break; sleep 1; done
  local port
  port=$(grep -o 'listening on http://[^ ]*' "$log" | sed 's/.*://')
  step bench-$1 python3 "$root/bench/serve_bench.py" --url "http://127.0.0.1:$port" \
    --concurrency ${SERVE_CONCURRENCY:-1,8,32,64} --requests ${SERVE_REQUESTS:-4} --prompt-tokens 128 \
    --max-tokens 128
  kill -TERM $pid
  wait $pid || { echo "FAILED: llama_server $1 exited $? after SIGTERM"; status=1; }
  tail -n 3 "$log"
}
[ "${SERVE_TINY:-1}" = 0 ] || serve tiny-fp16 /tmp/serve-tiny-fp16.bin "$shared/models/llama2/tokenizer.model"
[ "${SERVE_8B:-1}" = 0 ] || serve 8b-bf16 /tmp/8b-bf16.bin "$shared/models/llama3-kjv/tokenizer.json"
exit $status
