#!/usr/bin/env bash
# On the GPU machine, issue 12's benchmark: TinyLlama-1.1B-shaped GGUF files (random weights made
# here: test/device/random_hf.py, then test/tools/write_gguf.py --type f16) quantized by llama.cpp's
# llama-quantize to Q8_0 and Q4_K_M (GGUF_BENCH_TYPES), decoded by our llama_bench and by
# llama.cpp's llama-bench, one after the other on the same files: decode after a 16-token prompt
# (llama-bench: tg256 from an empty cache), and a 512-token prefill.
#   gguf_bench.sh BUNDLE DATA PYLIB LLAMA_CPP OUT
# GGUF_BENCH=files makes the files only, GGUF_BENCH=bench benchmarks files made before (so that a
# caller makes them on the CPU while the GPU runs something else); default both.
# BUNDLE: device-bundle of llama_bench; DATA: the shared data (tinyllama config, llama2 tokenizer);
# PYLIB: the gguf package (see gguf_check.sh); LLAMA_CPP: a device-bundle archive of llama.cpp's
# llama-bench and llama-quantize built with -DGGML_CUDA=ON, or the folder build_llama_cpp.sh built
# them in (it waits for DEST/done).
set -uo pipefail
STEP_TAIL=${STEP_TAIL:-12}
source "$(dirname "$0")/common.sh"
unpack_bundle "$1" "$2" "$5"
pylib=/tmp/kuiper-pylib
mkdir -p "$pylib"
[ -f "$pylib/gguf/__init__.py" ] || tar xf "$3" -C "$pylib" || exit 1
if [ -d "$4" ]; then
  lc=$4  # build_llama_cpp.sh's folder
else
  lc=/tmp/llama-cpp-bundle
  mkdir -p "$lc"
  [ -x "$lc/run" ] || tar xf "$4" -C "$lc" || exit 1
fi
export PYTHONPATH=$pylib${PYTHONPATH:+:$PYTHONPATH}
tiny=${GGUF_BENCH_CONFIG:-$shared/models/tinyllama-chat/resaved-transformers-4.56.0/config.json}
m=/tmp/gguf-bench
mkdir -p $m
phase=${GGUF_BENCH:-all}
[ "$phase" = bench ] || {
step make-f16 sh -c "python3 $root/test/device/random_hf.py $tiny $shared/models/llama2/tokenizer.model $m/hf &&
                     python3 $root/test/tools/write_gguf.py $m/tiny-f16.gguf $m/hf --type f16 && rm -r $m/hf"
if [ -d "$4" ]; then  # the build's end
  for _ in $(seq 900); do [ -f "$lc/done" ] || [ -f "$lc/failed" ] && break; sleep 1; done
  [ -f "$lc/done" ] || { echo "FAILED: llama.cpp build"; tail -n 20 "$lc.build.log"; exit 1; }
fi
for q in Q8_0 Q4_K_M; do
  step quantize-$q "$lc/run" llama-quantize $m/tiny-f16.gguf $m/tiny-$q.gguf $q "$(nproc)"
done
ls -l $m | tee "$out/files.txt"
}
[ "$phase" = files ] && exit $status
for q in ${GGUF_BENCH_TYPES:-Q8_0 Q4_K_M}; do
  f=$m/tiny-$q.gguf
  step kuiper-$q-decode "$b/run" llama_bench "$f" --device cuda --prompt 16 --decode 256 --repeat 3
  step kuiper-$q-prefill "$b/run" llama_bench "$f" --device cuda --prompt 512 --decode 16 --repeat 3
  step llamacpp-$q "$lc/run" llama-bench -m "$f" -ngl 99 -p 512 -n 256 -r 3
done
exit $status
