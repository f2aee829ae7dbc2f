#!/usr/bin/env python3
"""Reference fixtures for crates/clip-preprocess: Pillow + torchvision, exactly `clip.load`'s transform.

Writes under crates/clip-preprocess/tests/fixtures/:
  inputs/*            small generated edge-case images (portrait, landscape, 1x1, exact size, huge
                      aspect ratio, L, LA, RGBA, P with/without transparency, bilevel, CMYK JPEG,
                      16-bit PNGs, JPEG subsamplings, progressive, EXIF orientations 1-8)
  goldens/*.u8        expected 8-bit RGB pixels after Resize -> CenterCrop -> convert("RGB")
                      (raw bytes, size*size*3, row-major RGB)
  goldens/*.f32.npy   expected normalised CHW float32 tensors (ToTensor + Normalize) for a few cases
  manifest.json       one entry per case: input, size, exif flag, golden file(s)
  imagenet_decode.tsv per ImageNet sample photo: Pillow mode, size and sha256 of the decoded bytes

The copied demo photos live in tests/fixtures/photos/ (see PROVENANCE there). ImageNet photos are
read from $CLIP_SHARED_DATA (default ../shared/data); only their goldens are written.

Run from the repository root: $PY tools/reference/preprocess.py
"""
import hashlib
import io
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torchvision.transforms import CenterCrop, Compose, InterpolationMode, Normalize, Resize, ToTensor

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "crates/clip-preprocess/tests/fixtures"
SHARED = Path(os.environ.get("CLIP_SHARED_DATA", ROOT / "../shared/data"))
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


def clip_pixels(size):
    """clip.load's transform up to (and including) convert("RGB")."""
    return Compose([
        Resize(size, interpolation=InterpolationMode.BICUBIC),
        CenterCrop(size),
        lambda im: im.convert("RGB"),
    ])


def clip_tensor(size):
    return Compose([clip_pixels(size), ToTensor(), Normalize(MEAN, STD)])


def write_npy_f32(path, arr):
    np.save(path, np.ascontiguousarray(arr, dtype="<f4"))


def png_chunk(tag, data):
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def raw_png(path, arr, color_type, bit_depth):
    """Minimal PNG writer for layouts Pillow cannot save (16-bit RGB, 16-bit grey+alpha)."""
    h, w = arr.shape[:2]
    be = arr.astype(">u2") if bit_depth == 16 else arr.astype("u1")
    rows = b"".join(b"\x00" + be[y].tobytes() for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(rows, 9)) + png_chunk(b"IEND", b"")
    path.write_bytes(data)


def make_inputs(d: Path):
    rng = np.random.default_rng(20261127)
    d.mkdir(parents=True, exist_ok=True)

    def textured(w, h, c=3):
        # smooth gradients + noise + hard edges: stresses rounding, clipping and ringing
        y, x = np.mgrid[0:h, 0:w]
        base = np.stack([(x * 255 / max(w - 1, 1)), (y * 255 / max(h - 1, 1)), ((x + y) % 32) * 8], -1)[..., :c]
        noise = rng.integers(-60, 60, size=(h, w, c))
        img = base + noise
        img[(x // 9 + y // 7) % 2 == 0] = 255 - img[(x // 9 + y // 7) % 2 == 0]
        return np.clip(img, 0, 255).astype(np.uint8)

    out = {}
    Image.fromarray(textured(130, 90)).save(d / "landscape_rgb.png"); out["landscape_rgb"] = "landscape_rgb.png"
    Image.fromarray(textured(90, 130)).save(d / "portrait_rgb.jpg", quality=90); out["portrait_rgb_jpeg"] = "portrait_rgb.jpg"
    Image.fromarray(textured(97, 64)).save(d / "odd_crop_97x64.png"); out["odd_crop_97x64"] = "odd_crop_97x64.png"
    Image.fromarray(textured(1, 1)).save(d / "tiny_1x1.png"); out["tiny_1x1"] = "tiny_1x1.png"
    Image.fromarray(textured(64, 64)).save(d / "exact_64.png"); out["exact_64"] = "exact_64.png"
    Image.fromarray(textured(40, 30)).save(d / "upscale_40x30.png"); out["upscale_40x30"] = "upscale_40x30.png"
    Image.fromarray(textured(2000, 20)).save(d / "aspect_2000x20.png"); out["aspect_2000x20"] = "aspect_2000x20.png"
    Image.fromarray(textured(13, 999)).save(d / "aspect_13x999.png"); out["aspect_13x999"] = "aspect_13x999.png"
    Image.fromarray(textured(100, 70, 1)[..., 0], "L").save(d / "grey_l.png"); out["grey_l"] = "grey_l.png"
    Image.fromarray(textured(100, 70, 1)[..., 0], "L").save(d / "grey_l.jpg", quality=92); out["grey_l_jpeg"] = "grey_l.jpg"
    la = textured(100, 70, 2)
    la[:, :20, 1] = 0
    la[:, 20:40, 1] = 255
    Image.fromarray(la, "LA").save(d / "grey_la.png"); out["grey_la"] = "grey_la.png"
    rgba = textured(100, 70, 3)
    alpha = textured(100, 70, 1)
    alpha[:, :15] = 0
    alpha[:, 15:30] = 255
    alpha[:, 30:40] = 1
    Image.fromarray(np.concatenate([rgba, alpha], -1), "RGBA").save(d / "rgba.png"); out["rgba"] = "rgba.png"
    p = Image.fromarray(textured(100, 70)).quantize(colors=200, dither=Image.Dither.NONE)
    p.save(d / "palette.png"); out["palette"] = "palette.png"
    pt = Image.fromarray(textured(100, 70)).quantize(colors=16, dither=Image.Dither.NONE)
    pt.save(d / "palette_trns_4bit.png", transparency=bytes([0, 128] + [255] * 14), bits=4)
    out["palette_trns_4bit"] = "palette_trns_4bit.png"
    Image.fromarray(textured(100, 70, 1)[..., 0] > 127).save(d / "bilevel.png"); out["bilevel"] = "bilevel.png"
    Image.fromarray(textured(100, 70, 3)).convert("CMYK").save(d / "cmyk.jpg", quality=92); out["cmyk_jpeg"] = "cmyk.jpg"
    g16 = textured(100, 70, 1)[..., 0].astype(np.uint16) * 257
    g16[:, :50] //= 200  # a band of values 0..327 so both the <=255 and the saturated branch occur
    raw_png(d / "grey16.png", g16, 0, 16); out["grey16"] = "grey16.png"
    raw_png(d / "rgb16.png", textured(100, 70, 3).astype(np.uint16) * 257 + 3, 2, 16); out["rgb16"] = "rgb16.png"
    la16 = textured(100, 70, 2).astype(np.uint16) * 257
    raw_png(d / "grey_alpha16.png", la16, 4, 16); out["grey_alpha16"] = "grey_alpha16.png"
    rgb = Image.fromarray(textured(120, 80))
    rgb.save(d / "sub444.jpg", quality=95, subsampling=0); out["jpeg_444"] = "sub444.jpg"
    rgb.save(d / "sub422.jpg", quality=95, subsampling=1); out["jpeg_422"] = "sub422.jpg"
    rgb.save(d / "progressive.jpg", quality=85, progressive=True); out["jpeg_progressive"] = "progressive.jpg"
    base = Image.fromarray(textured(60, 40))
    for o in range(1, 9):
        ex = Image.Exif()
        ex[0x0112] = o
        base.save(d / f"exif_{o}.jpg", quality=92, exif=ex.tobytes())
        out[f"exif_{o}"] = f"exif_{o}.jpg"
    ex = Image.Exif()
    ex[0x0112] = 6
    base.save(d / "exif_6.png", exif=ex.tobytes()); out["exif_6_png"] = "exif_6.png"
    return out


def golden(name, im, size, exif, tensor=False):
    if exif:
        im = ImageOps.exif_transpose(im)
    px = np.asarray(clip_pixels(size)(im))
    assert px.shape == (size, size, 3) and px.dtype == np.uint8, px.shape
    (FIX / "goldens" / f"{name}.u8").write_bytes(px.tobytes())
    entry = {"name": name, "size": size, "exif": exif, "pixels": f"goldens/{name}.u8"}
    if tensor:
        t = clip_tensor(size)(im).numpy()[None]
        write_npy_f32(FIX / "goldens" / f"{name}.f32.npy", t)
        entry["tensor"] = f"goldens/{name}.f32.npy"
    return entry


def main():
    (FIX / "goldens").mkdir(parents=True, exist_ok=True)
    for f in (FIX / "goldens").glob("*"):
        f.unlink()
    inputs = make_inputs(FIX / "inputs")
    cases = []
    s = 64
    tensor_cases = {"landscape_rgb", "portrait_rgb_jpeg", "rgba", "cmyk_jpeg", "grey16"}
    for name, file in inputs.items():
        with Image.open(FIX / "inputs" / file) as im:
            im.load()
            e = golden(name, im, s, False, tensor=name in tensor_cases)
            e["input"] = f"inputs/{file}"
            e["mode"] = im.mode
            cases.append(e)
            if name.startswith("exif_"):
                e = golden(name + "_transposed", im, s, True)
                e["input"] = f"inputs/{file}"
                e["mode"] = im.mode
                cases.append(e)
    # Larger output size on one input (upscaling 1x1 and 40x30 to 224).
    for name in ("upscale_40x30",):
        with Image.open(FIX / "inputs" / inputs[name]) as im:
            e = golden(name + "_224", im, 224, False)
            e["input"] = f"inputs/{inputs[name]}"
            e["mode"] = im.mode
            cases.append(e)
    for photo in sorted((FIX / "photos").glob("*")):
        if photo.name == "PROVENANCE":
            continue
        with Image.open(photo) as im:
            e = golden("photo_" + photo.stem, im, 224, False, tensor=False)
            e["input"] = f"photos/{photo.name}"
            e["mode"] = im.mode
            cases.append(e)
    # ImageNet sample photos (goldens only; the photos stay in the shared folder).
    sample = sorted((SHARED / "imagenet-sample").glob("*.JPEG"))
    lines = []
    for p in sample:
        with Image.open(p) as im:
            im.load()
            lines.append(f"{p.name}\t{im.mode}\t{im.width}\t{im.height}\t{hashlib.sha256(im.tobytes()).hexdigest()}")
    (FIX / "imagenet_decode.tsv").write_text(
        "# file\tPillow mode\twidth\theight\tsha256 of Image.tobytes() (Pillow %s)\n" % Image.__version__ + "\n".join(lines) + "\n")
    greys = [p for p, l in zip(sample, lines) if l.split("\t")[1] == "L"]
    picks = sample[:3] + greys[:1] + sample[-1:]
    for p in picks:
        with Image.open(p) as im:
            e = golden("imagenet_" + p.stem.split("_")[0], im, 224, False)
            e["input"] = f"imagenet-sample/{p.name}"
            e["shared"] = True
            e["mode"] = im.mode
            cases.append(e)
    # CenterCrop padding (image smaller than the crop), without a resize: torchvision pads with 0.
    with Image.open(FIX / "inputs" / inputs["upscale_40x30"]) as im:
        px = np.asarray(CenterCrop(48)(im.convert("RGB")))
        (FIX / "goldens" / "center_crop_pad_40x30_to_48.u8").write_bytes(px.tobytes())
    manifest = {
        "generator": "tools/reference/preprocess.py",
        "pillow": Image.__version__,
        "torch": torch.__version__,
        "mean": MEAN,
        "std": STD,
        "cases": cases,
    }
    (FIX / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"{len(cases)} cases, {len(lines)} ImageNet decode hashes")


if __name__ == "__main__":
    main()
