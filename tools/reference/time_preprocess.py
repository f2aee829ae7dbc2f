#!/usr/bin/env python3
"""Times OpenAI CLIP preprocessing per core: Pillow + torchvision vs clip-preprocess, in one run.

Both sides preprocess the same JPEG files held in memory (decode -> Resize(224, BICUBIC) ->
CenterCrop(224) -> convert("RGB") -> ToTensor -> Normalize), one image at a time on one thread
(torch.set_num_threads(1)). The rounds are interleaved (ours, Pillow, ours, Pillow, ...) and the
best seconds per image of each side is kept, then the ratio is printed.

Usage (repository root): $PY tools/reference/time_preprocess.py [--images 64] [--rounds 3]
Photos: the first N ImageNet sample photos from $CLIP_SHARED_DATA (default ../shared/data).
"""
import argparse
import io
import json
import os
import subprocess
import time
from pathlib import Path

import torch
from PIL import Image
from torchvision.transforms import CenterCrop, Compose, InterpolationMode, Normalize, Resize, ToTensor

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("CLIP_SHARED_DATA", ROOT / "../shared/data"))
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


def pillow_seconds_per_image(blobs, rounds):
    tf = Compose([Resize(224, interpolation=InterpolationMode.BICUBIC), CenterCrop(224),
                  lambda im: im.convert("RGB"), ToTensor(), Normalize(MEAN, STD)])
    for b in blobs:  # warm-up
        tf(Image.open(io.BytesIO(b)))
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        for b in blobs:
            tf(Image.open(io.BytesIO(b)))
        best = min(best, (time.perf_counter() - t) / len(blobs))
    return best


def ours_seconds_per_image(files, rounds):
    out = subprocess.run(
        ["cargo", "run", "--quiet", "--release", "-p", "clip-preprocess", "--example", "time_preprocess",
         "--", "--rounds", str(rounds), *map(str, files)],
        cwd=ROOT, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["seconds_per_image"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2, help="interleaved repetitions of both sides")
    a = ap.parse_args()
    torch.set_num_threads(1)
    files = sorted((SHARED / "imagenet-sample").glob("*.JPEG"))[: a.images]
    if not files:
        raise SystemExit(f"no photos under {SHARED / 'imagenet-sample'} (set CLIP_SHARED_DATA)")
    blobs = [f.read_bytes() for f in files]
    subprocess.run(["cargo", "build", "--quiet", "--release", "-p", "clip-preprocess", "--example",
                    "time_preprocess"], cwd=ROOT, check=True)
    ours, theirs = [], []
    for _ in range(a.repeats):
        ours.append(ours_seconds_per_image(files, a.rounds))
        theirs.append(pillow_seconds_per_image(blobs, a.rounds))
    o, p = min(ours), min(theirs)
    print(f"{len(files)} ImageNet photos, 224 px, one thread, best of {a.rounds} rounds x {a.repeats} interleaved repeats")
    print(f"Pillow {Image.__version__} + torchvision: {p * 1e3:7.3f} ms/image  ({1 / p:7.1f} images/s)  runs: "
          + ", ".join(f"{x * 1e3:.3f}" for x in theirs))
    print(f"clip-preprocess (Rust):        {o * 1e3:7.3f} ms/image  ({1 / o:7.1f} images/s)  runs: "
          + ", ".join(f"{x * 1e3:.3f}" for x in ours))
    print(f"ratio (Pillow time / ours): {p / o:.2f}x")


if __name__ == "__main__":
    main()
