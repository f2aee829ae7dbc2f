#!/usr/bin/env bash
# Prepares, on the build machine, what tools/cuda/device-check.sh runs on a GPU machine (which has
# no Rust toolchain and no network):
#   .cuda-bin/  clip-cuda-check (and with --with-tests clip-model's parity test binaries), built with --features cuda
#               (dev profile: dependencies and clip-model are optimised there), stripped, in
#               bin.tar.xz, and BUILD_INFO (the checkout path, commit, nvcc, compute capability);
#   .whl/       open_clip_torch and the two pure-Python packages it needs that the GPU image lacks.
# Both are git-ignored (added to .git/info/exclude) and must be named in the device call's `carry`:
#   run(command="bash tools/cuda/device-check.sh", carry=[".cuda-bin", ".whl"], timeout_s=600)
# The device call sends the checkout the session started in: run this script in that checkout.
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$PWD"
# shellcheck disable=SC1090
source "$(tools/cuda/setup-toolkit.sh | tail -1)"

exclude="$(git rev-parse --git-path info/exclude)"
for d in /.cuda-bin/ /.whl/; do
  grep -qxF "$d" "$exclude" 2>/dev/null || echo "$d" >>"$exclude"
done

nice -n 19 cargo build -p clip-cuda-check --features cuda
# clip-model's parity test binaries too with --with-tests: a second build of candle's CUDA kernels
# (the tests' dev-dependencies change the build scripts' dependency features), worth it once the
# tests honour CLIP_TEST_DEVICE.
tests_json=""
if [ "${1:-}" = --with-tests ]; then
  tests_json="$(nice -n 19 cargo test -p clip-model --features cuda --test vit_parity --test resnet_parity \
    --no-run --message-format=json)"
fi

# The kernels travel inside the binaries (PTX text and cubins): compressed, three binaries fit the
# device call's 64 MiB.
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
cp target/debug/clip-cuda-check "$stage/"
for t in vit_parity resnet_parity; do
  [ -n "$tests_json" ] || break
  exe="$(printf '%s\n' "$tests_json" | grep "\"name\":\"$t\"" | grep -o '"executable":"[^"]*"' | cut -d'"' -f4 | tail -1)"
  [ -n "$exe" ] || { echo "no test binary for $t" >&2; exit 1; }
  cp "$exe" "$stage/$t"
done
strip "$stage"/*
ls -la "$stage"
rm -rf .cuda-bin
mkdir -p .cuda-bin
tar -C "$stage" -cf - . | nice -n 19 xz -6 -T1 >.cuda-bin/bin.tar.xz
{
  echo "build_root=$root"
  echo "commit=$(git rev-parse HEAD)$(git diff --quiet HEAD || echo ' (with local changes)')"
  echo "built=$(date -u +%Y-%m-%dT%H:%MZ) nvcc=$(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p') CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP"
} >.cuda-bin/BUILD_INFO

rm -rf .whl
python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .whl open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4

du -sh .cuda-bin .whl
ls -la .cuda-bin
echo "carry: .cuda-bin .whl (together under the device tool's 64 MiB with the working tree)"
