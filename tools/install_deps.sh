#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build and test kuiper: the Debian packages of
# the C++ dependencies (libcpp-httplib-dev only for llama_server; clang for the fuzz targets and
# the sanitizer build) and the Python packages of tools/ (numpy, pytest, and the openai client the
# server tests drive it with).
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
packages=(build-essential cmake pkg-config python3 python3-pip tmux
          libgoogle-glog-dev libgtest-dev libsentencepiece-dev libarmadillo-dev libopenblas-dev
          libpcre2-dev libicu-dev nlohmann-json3-dev libcpp-httplib-dev
          clang-14 libclang-rt-14-dev libomp-14-dev)  # the fuzz targets (tools/fuzz.sh)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# Debian's own python3 refuses pip installs into the system (PEP 668); elsewhere plain pip works.
pip_install() {
  python3 -m pip install -q "$@" 2>/dev/null || python3 -m pip install -q --break-system-packages "$@"
}
python3 -c "import numpy, pytest, openai" 2>/dev/null || pip_install -r tools/requirements.txt -r tools/requirements-test.txt
