#!/usr/bin/env bash
# Checks that the `cuda` feature builds on a machine without a GPU: installs the pinned CUDA 13.0
# toolkit (tools/cuda/setup-toolkit.sh), builds clip-model with CUDA and clip-cuda-check (the GPU
# check program; linking it needs the driver stub), then runs that binary against the stub: asking
# for `cuda` must give the typed "not available" error, and `--device cpu` parity must pass.
# Prints the time of each step. (clip-model's test binaries with --features cuda are left out: their
# dev-dependencies change the build scripts' dependency features, which rebuilds candle's kernels.) Run from anywhere in the repository:
#   tools/cuda/check-build.sh            # dev profile, the repository's target/
# Extra arguments go to every cargo command (e.g. --locked, --release).
set -euo pipefail
cd "$(dirname "$0")/../.."
t0=$SECONDS
step() { echo; echo "=== $* ($(date -u +%H:%M:%S), $((SECONDS - t0)) s so far)"; }

step "CUDA 13.0 toolkit from PyPI"
env_file="$(tools/cuda/setup-toolkit.sh | tail -1)"
# shellcheck disable=SC1090
source "$env_file"
nvcc --version | tail -2
echo "CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP CUDARC_CUDA_VERSION=$CUDARC_CUDA_VERSION"

step "cargo build -p clip-model --features cuda"
s=$SECONDS
cargo build -p clip-model --features cuda "$@"
lib_s=$((SECONDS - s))

step "clip-cuda-check with --features cuda (the GPU check program: the same compiled dependencies)"
s=$SECONDS
cargo build -p clip-cuda-check --features cuda "$@"
rest_s=$((SECONDS - s))

step "a cuda build without a GPU: device selection gives a typed error (driver stub as libcuda.so.1)"
# No driver here, so a cuda build would not start; the stub stands in for it and answers every call
# with CUDA_ERROR_STUB_LIBRARY, as a driver that finds no GPU answers with an error. The CPU run of
# the same binary checks the parity code against the fixtures.
stub_rt="$(mktemp -d)"
trap 'rm -rf "$stub_rt"' EXIT
ln -s "$CUDA_ROOT/lib/stubs/libcuda.so" "$stub_rt/libcuda.so.1"
check="target/debug/clip-cuda-check"
[[ " $* " == *" --release "* ]] && check="target/release/clip-cuda-check"
if msg="$(LD_LIBRARY_PATH="$stub_rt:$LD_LIBRARY_PATH" RUST_BACKTRACE=0 "$check" parity --device cuda 2>&1)"; then
  echo "expected an error without a GPU, got: $msg" >&2
  exit 1
fi
echo "$msg"
grep -q "device \`cuda\` is not available" <<<"$msg"
LD_LIBRARY_PATH="$stub_rt:$LD_LIBRARY_PATH" "$check" parity --device cpu

step "done"
echo "cuda build: clip-model ${lib_s} s, clip-cuda-check ${rest_s} s, total $((SECONDS - t0)) s"
