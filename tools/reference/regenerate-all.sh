#!/usr/bin/env bash
# Regenerates every committed reference fixture with the pinned reference stack.
# Run from anywhere; needs ../shared/data beside the repository (or CLIP_SHARED_DATA).
# Random models are seeded inside each script, so a rerun rewrites identical fixtures
# (up to the reference libraries' own determinism on this CPU).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
export CLIP_SHARED_DATA="${CLIP_SHARED_DATA:-$(cd .. && pwd)/shared/data}"
PY="$(tools/reference/setup-venv.sh | tail -n1)"
run() { echo "== $*"; "$PY" "$@"; }
run tools/reference/preprocess.py
run tools/reference/tokenizer.py
run tools/reference/model_parity.py tiny
run tools/reference/model_parity.py heads
run tools/reference/siglip_parity.py tiny
run tools/reference/sentencepiece_tokenizer.py
run tools/reference/siglip_preprocess.py
run tools/reference/resnet_parity.py fixtures
run tools/reference/imagenet_meta.py
run tools/reference/clip_eval.py
run tools/reference/cn_clip_parity.py tokenizer
run tools/reference/cn_clip_parity.py models
run tools/reference/cn_clip_parity.py eval-data
run tools/reference/eval_parity.py
run tools/reference/facade_parity.py
echo "fixtures regenerated; review with: git status --short"
