#!/usr/bin/env bash
# The GPU check, in one call on a GPU machine (sized for an H200 machine: 16 cores, driver 580,
# nvcc 13.0, PyTorch 2.11+cu130, no network, no Rust toolchain; about 6-8 minutes):
#   1. clip-model's parity on CUDA in f32 and bf16 against the committed open_clip fixtures
#      (`clip-cuda-check parity`: the tests' bars; bf16 its own),
#   2. clip-model's parity test binaries with CLIP_TEST_DEVICE=cuda, if carried (prepared --with-tests),
#   3. timings of ViT-B/32 (image batch 1, 32, 256; text batch 1, 256) and RN50x64 (batch 1, 16) in
#      f32 and bf16 against PyTorch + open_clip on the same GPU, weights and inputs
#      (tools/cuda/gpu_bench.py), with the ratios and the ImageNet model-time estimate.
#
# It runs what tools/cuda/prepare-device-run.sh made on the build machine: the binaries in
# .cuda-bin/ (built with --features cuda against tools/cuda/setup-toolkit.sh's CUDA 13.0) and the
# open_clip wheels in .whl/. Both folders are git-ignored; the call must carry them. Results go to
# $OUT (the device tool's folder) or /tmp/clip-cuda-out. Exit status: non-zero when a step failed.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
out="${OUT:-/tmp/clip-cuda-out}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
budget="${CLIP_DEVICE_CHECK_SECONDS:-470}" # the whole script, under the device tool's 600 s
status=0
step() { echo; echo "=== $* (${SECONDS}s)"; }
fail() { echo "FAILED: $*"; status=1; }

step "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv || fail "nvidia-smi"
(nvcc --version || /usr/local/cuda/bin/nvcc --version) 2>/dev/null | tail -2
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())" \
  || fail "PyTorch does not see the GPU"
echo "cores: $(nproc)"

step "Python packages: open_clip and its pure-Python needs travel as wheels"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
python3 -c "import open_clip; print('open_clip', open_clip.__version__)" || fail "open_clip cannot be imported (carry .whl)"

step "CUDA libraries for the Rust binaries"
bin=/tmp/clip-cuda-bin
mkdir -p "$bin"
if ! tar -C "$bin" -xJf .cuda-bin/bin.tar.xz || [ ! -x "$bin/clip-cuda-check" ]; then
  echo "no .cuda-bin/bin.tar.xz: run tools/cuda/prepare-device-run.sh on the build machine and carry .cuda-bin"
  exit 1
fi
cat .cuda-bin/BUILD_INFO
# The binaries link the driver's libcuda.so.1 and the CUDA 13 runtime, cuBLAS, cuRAND and NVRTC
# (sonames libcudart.so.13, libcublas.so.13, libcublasLt.so.13, libcurand.so.10, libnvrtc.so.13):
# take them from the toolkit or from PyTorch's CUDA wheels, wherever they are.
dirs="$(python3 - <<'EOF'
import glob, os, site
roots = site.getsitepackages() + [site.getusersitepackages()]
found = []
for r in roots:
    found += glob.glob(os.path.join(r, "nvidia", "*", "lib")) + glob.glob(os.path.join(r, "nvidia", "*", "*", "lib"))
print(":".join(d for d in found if os.path.isdir(d)))
EOF
)"
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do
  [ -d "$d" ] && dirs="$dirs:$d"
done
export LD_LIBRARY_PATH="${dirs#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
ldd "$bin/clip-cuda-check" | grep -E "libcu|libnvrtc|not found"
if ldd "$bin/clip-cuda-check" | grep -q "not found"; then
  fail "a CUDA library is missing (see 'not found' above)"
fi

step "parity on CUDA against the open_clip fixtures (f32: the CPU tests' bars; bf16: cosine >= 0.99)"
for dt in f32 bf16; do
  timeout 120 "$bin/clip-cuda-check" parity --device cuda --dtype "$dt" 2>&1 | tee "$out/parity_$dt.txt" \
    || fail "parity $dt"
done

step "clip-model's parity test binaries with CLIP_TEST_DEVICE=cuda"
# The tests read their fixtures from the build machine's checkout path (CARGO_MANIFEST_DIR): point it here.
root="$(sed -n 's/^build_root=//p' .cuda-bin/BUILD_INFO)"
if [ -n "$root" ] && [ ! -e "$root/crates/clip-model" ]; then
  mkdir -p "$root/crates" && ln -s "$PWD/crates/clip-model" "$root/crates/clip-model"
fi
for t in vit_parity resnet_parity; do
  if [ -x "$bin/$t" ]; then
    CLIP_TEST_DEVICE=cuda timeout 120 "$bin/$t" --test-threads 4 >"$out/test_$t.txt" 2>&1 || fail "test $t"
    grep -E "^test result|panicked|FAILED|device" "$out/test_$t.txt" | head -20
  fi
done

step "timings against PyTorch + open_clip on the same GPU"
left=$((budget - SECONDS))
if [ "$left" -lt 60 ]; then
  fail "only ${left}s left for the timings"
else
  timeout "$left" python3 tools/cuda/gpu_bench.py --bin "$bin/clip-cuda-check" --work /tmp/clip-bench --out "$out" \
    2>&1 | tee "$out/bench.txt" || fail "gpu_bench.py"
fi

step "done, status $status"
exit "$status"
