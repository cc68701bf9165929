#!/usr/bin/env bash
# On the GPU machine, in one call: every CUDA kernel test, llama2's CUDA goldens (model, engine,
# GGUF, 16-bit KV caches), the mixed-storage layer test and the GPU-memory refusal; meanwhile the
# CPU makes gguf_bench.sh's files, which it then benchmarks beside llama.cpp (issue 12).
#   release_check.sh BUNDLE DATA PYLIB LLAMA_CPP_BUNDLE OUT
set -uo pipefail
here=$(dirname "$0")
source "$here/common.sh"
unpack_bundle "$1" "$2" "$5"
pylib=/tmp/kuiper-pylib  # the GGUF golden tests write their files with the gguf package
mkdir -p $pylib && tar xf "$3" -C $pylib || exit 1
export PYTHONPATH=$pylib${PYTHONPATH:+:$PYTHONPATH}
GGUF_BENCH=files bash "$here/gguf_bench.sh" "$@" > "$out/gguf-files.log" 2>&1 &
files=$!
step cuda-tests "$b/run" kuiper_cuda_tests --gtest_brief=1
step golden-llama2 "$b/run" kuiper_tests --gtest_brief=1 --gtest_filter='*cuda_llama2*:*OnDevice*/cuda:BadInput.ModelLargerThanTheGpuMemory'
wait $files || status=1
tail -n 4 "$out/gguf-files.log"
GGUF_BENCH=bench bash "$here/gguf_bench.sh" "$@" || status=1
exit $status
