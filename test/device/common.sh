# Sourced by the GPU-machine scripts (gpu_check.sh, quant_check.sh, int8_sweep.sh):
#   unpack_bundle BUNDLE_ARCHIVE DATA_ARCHIVE OUT_DIR
# unpacks a device-bundle into $b and a share of the test data into $shared (over what a warm
# machine kept from an earlier call), points the tests at them, and prints the GPU. Then
#   step NAME COMMAND...
# runs a command with its log in $out/NAME.log, shows the last lines, and sets status=1 when it
# fails. A script that sets $parts (a comma list) and $results asks has PART, writes a line to
# $results/summary.txt (and stdout) with note, and waits for a file with wait_for FILE [TRIES]
# (2 s a try, 150 by default).
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
b=/tmp/kuiper-bundle shared=/tmp/kuiper-shared
status=0

unpack_bundle() {
  out=$3
  mkdir -p "$b" "$shared" "$out"
  # A script called by another that unpacked them already (KUIPER_UNPACKED) does not again.
  [ -n "${KUIPER_UNPACKED:-}" ] || { tar xf "$1" -C "$b" && tar xf "$2" -C "$shared"; } || exit 1
  export KUIPER_UNPACKED=1
  export KUIPER_SHARED_DIR=$shared KUIPER_SOURCE_DIR=$root KUIPER_BIN_DIR=$b/bin PYTHONUNBUFFERED=1
  # Python packages the tests need and that machine lacks (gguf, the GGUF tests' writer; its
  # numpy, pyyaml, requests and tqdm are there), carried as wheels in the data archive's
  # wheels/ folder (pip download gguf --no-deps -d wheels), installed without the network.
  if compgen -G "$shared/wheels/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps "$shared"/wheels/*.whl ||
      echo "wheels in $shared/wheels: not installed"
  fi
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
}

step() {
  echo "== $1"
  local name=$1
  shift
  "$@" >"$out/$name.log" 2>&1 || { echo "FAILED ($?): $name"; status=1; }
  tail -n "${STEP_TAIL:-8}" "$out/$name.log"
}

has() { [[ ",$parts," == *",$1,"* ]]; }
note() { echo "$*" | tee -a "$results/summary.txt"; }
wait_for() {
  for _ in $(seq 1 "${2:-150}"); do [ -f "$1" ] && return 0; sleep 2; done
  note "missing $1"
  return 1
}
