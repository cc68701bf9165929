#!/usr/bin/env bash
# On the GPU machine: builds llama.cpp's llama-bench and llama-quantize with CUDA (sm_90) from a
# source tarball whose top folder is llama.cpp/ (the llama-cpp-python sdist's vendor/llama.cpp,
# packed outside this repository) into DEST, and writes DEST/run (runs a program of DEST/bin) like
# a device-bundle's, so that gguf_bench.sh takes DEST as its LLAMA_CPP. About 5 minutes with 12
# jobs: start it in the background early. DEST/done appears when the build succeeded.
#   build_llama_cpp.sh SRC_TAR DEST [JOBS]
set -euo pipefail
dest=$2
mkdir -p "$dest"
trap 'touch "$dest/failed"' ERR
src=$(mktemp -d)
tar xf "$1" -C "$src"
cmake -S "$src/llama.cpp" -B "$dest" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES=90 -DGGML_CUDA_NCCL=OFF -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
  -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
  -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_LLGUIDANCE=OFF \
  > "$dest.cmake.log" 2>&1
cmake --build "$dest" -j "${3:-12}" --target llama-bench llama-quantize > "$dest.build.log" 2>&1
printf '#!/usr/bin/env bash\nexec "%s/bin/$1" "${@:2}"\n' "$dest" > "$dest/run"
chmod +x "$dest/run"
touch "$dest/done"
