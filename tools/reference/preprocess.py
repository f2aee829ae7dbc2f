#!/usr/bin/env python3
"""Reference fixtures for crates/clip-preprocess: Pillow + torchvision, exactly `clip.load`'s transform.

Writes under crates/clip-preprocess/tests/fixtures/:
  inputs/*            small generated edge-case images (portrait, landscape, 1x1, exact size, huge
                      aspect ratio, L, LA, RGBA, P with/without transparency, bilevel, CMYK JPEG,
                      16-bit PNGs, JPEG subsamplings, progressive, EXIF orientations 1-8), and
                      BMP (24-bit, 8-bit palette, 1-bit), TIFF (raw, LZW, deflate, grey),
                      GIF (palette, transparent index, grey) and WebP (lossless RGB/RGBA, lossy);
                      smaller: BMP grey, 4-bit top-down, RLE8; TIFF 16-bit grey and RGB; GIF
                      first frames smaller than the screen
  goldens/*.u8        expected 8-bit RGB pixels after Resize -> CenterCrop -> convert("RGB")
                      (raw bytes, size*size*3, row-major RGB)
  goldens/*.f32.npy   expected normalised CHW float32 tensors (ToTensor + Normalize) for a few cases
  manifest.json       one entry per case: input, size, exif flag, golden file(s); for BMP, TIFF,
                      GIF and WebP also Pillow's mode, size and the sha256 of the decoded pixels
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


def squash_pixels(size):
    """Chinese-CLIP's transform (cn_clip.clip.utils.image_transform) up to convert("RGB"): both sides to
    `size`, no crop."""
    return Compose([
        Resize((size, size), interpolation=InterpolationMode.BICUBIC),
        lambda im: im.convert("RGB"),
    ])


def squash_tensor(size):
    return Compose([squash_pixels(size), ToTensor(), Normalize(MEAN, STD)])


def check_cn_clip_transform():
    """squash_tensor is cn_clip's own image_transform, when cn_clip is installed."""
    try:
        from cn_clip.clip.utils import image_transform
    except ImportError:
        return
    im = Image.fromarray(np.random.default_rng(1).integers(0, 256, (37, 53, 3), dtype=np.uint8))
    assert torch.equal(image_transform(24)(im), squash_tensor(24)(im))


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


def raw_bmp(path, idx, palette, bits, top_down=False, rle8=False, masks=None):
    """Minimal BMP writer for layouts Pillow cannot save (4-bit, top-down rows, RLE8, 16-bit).

    `idx`: palette indices, or for 16 bits per pixel the pixel words (555, or `masks`)."""
    h, w = idx.shape
    rows = idx if top_down else idx[::-1]
    if bits == 16:
        stride = (w * 16 + 31) // 32 * 4
        data = b"".join(row.astype("<u2").tobytes().ljust(stride, b"\x00") for row in rows)
    elif rle8:
        data = b""
        for row in rows:
            x = 0
            while x < w:
                n = 1
                while x + n < w and n < 255 and row[x + n] == row[x]:
                    n += 1
                data += bytes([n, row[x]])
                x += n
            data += b"\x00\x00"  # end of line
        data += b"\x00\x01"  # end of bitmap
    else:
        stride = (w * bits + 31) // 32 * 4
        data = b""
        for row in rows:
            packed = np.packbits(np.unpackbits(row.astype(np.uint8)[:, None], axis=1)[:, 8 - bits:].ravel())
            data += packed.tobytes().ljust(stride, b"\x00")
    pal = b"".join(bytes([b, g, r, 0]) for r, g, b in palette)
    if masks:
        pal = struct.pack("<III", *masks)  # BI_BITFIELDS: the three masks follow the header
    offset = 14 + 40 + len(pal)
    compression = 3 if masks else 1 if rle8 else 0
    info = struct.pack("<IiiHHIIiiII", 40, w, -h if top_down else h, 1, bits, compression, len(data),
                       2835, 2835, len(palette), 0)
    path.write_bytes(b"BM" + struct.pack("<IHHI", offset + len(data), 0, 0, offset) + info + pal + data)


def raw_tiff_rgb16(path, arr):
    """Minimal little-endian TIFF writer for 16-bit RGB (Pillow cannot save it), one strip."""
    h, w, c = arr.shape
    data = arr.astype("<u2").tobytes()
    bps_at = 8
    data_at = bps_at + 2 * c
    ifd_at = data_at + len(data)
    tags = [(256, 3, 1, w), (257, 3, 1, h), (258, 3, c, bps_at), (259, 3, 1, 1), (262, 3, 1, 2),
            (273, 4, 1, data_at), (277, 3, 1, c), (278, 3, 1, h), (279, 4, 1, len(data)), (284, 3, 1, 1)]
    ifd = struct.pack("<H", len(tags))
    for tag, typ, count, value in tags:
        ifd += struct.pack("<HHI", tag, typ, count) + (struct.pack("<HH", value, 0) if typ == 3 and count == 1
                                                       else struct.pack("<I", value))
    ifd += struct.pack("<I", 0)
    path.write_bytes(b"II*\x00" + struct.pack("<I", ifd_at) + struct.pack("<" + "H" * c, *[16] * c) + data + ifd)


def gif_move_frame(path, screen, left_top):
    """Enlarges a single-frame GIF's logical screen and moves its frame to `left_top`."""
    b = bytearray(path.read_bytes())
    b[6:10] = struct.pack("<HH", *screen)
    pos = 13 + (3 << ((b[10] & 7) + 1) if b[10] & 0x80 else 0)
    while b[pos] == 0x21:  # skip extensions
        pos += 2
        while b[pos]:
            pos += 1 + b[pos]
        pos += 1
    assert b[pos] == 0x2C
    b[pos + 1:pos + 5] = struct.pack("<HH", *left_top)
    path.write_bytes(bytes(b))


def make_inputs(d: Path):
    rng = np.random.default_rng(20261127)
    d.mkdir(parents=True, exist_ok=True)

    def textured(w, h, c=3, gen=None):
        # smooth gradients + noise + hard edges: stresses rounding, clipping and ringing
        y, x = np.mgrid[0:h, 0:w]
        base = np.stack([(x * 255 / max(w - 1, 1)), (y * 255 / max(h - 1, 1)), ((x + y) % 32) * 8], -1)[..., :c]
        noise = (gen or rng).integers(-60, 60, size=(h, w, c))
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

    # BMP, TIFF, GIF and WebP written by Pillow. Their own generator, so that the inputs above
    # stay byte-identical whatever is added here.
    g = np.random.default_rng(20261128)
    rgb = Image.fromarray(textured(100, 70, gen=g))
    rgb.save(d / "bmp_rgb24.bmp"); out["bmp_rgb24"] = "bmp_rgb24.bmp"
    rgb.quantize(colors=200, dither=Image.Dither.NONE).save(d / "bmp_palette8.bmp")
    out["bmp_palette8"] = "bmp_palette8.bmp"
    Image.fromarray(textured(100, 70, 1, gen=g)[..., 0] > 127).save(d / "bmp_bilevel.bmp")
    out["bmp_bilevel"] = "bmp_bilevel.bmp"
    rgb = Image.fromarray(textured(100, 70, gen=g))
    rgb.save(d / "tiff_rgb.tif", compression=None); out["tiff_rgb"] = "tiff_rgb.tif"
    rgb.save(d / "tiff_rgb_lzw.tif", compression="tiff_lzw"); out["tiff_rgb_lzw"] = "tiff_rgb_lzw.tif"
    rgb = Image.fromarray(textured(60, 40, gen=g))
    rgb.save(d / "tiff_rgb_deflate.tif", compression="tiff_adobe_deflate")
    out["tiff_rgb_deflate"] = "tiff_rgb_deflate.tif"
    Image.fromarray(textured(100, 70, 1, gen=g)[..., 0], "L").save(d / "tiff_grey.tif", compression=None)
    out["tiff_grey"] = "tiff_grey.tif"
    Image.fromarray(textured(100, 70, gen=g)).quantize(colors=200, dither=Image.Dither.NONE).save(d / "gif_palette.gif")
    out["gif_palette"] = "gif_palette.gif"
    pt = Image.fromarray(textured(100, 70, gen=g)).quantize(colors=16, dither=Image.Dither.NONE)
    pt.save(d / "gif_transparent.gif", transparency=3); out["gif_transparent"] = "gif_transparent.gif"
    # An L image is written with the palette (i, i, i), which Pillow opens as L again.
    Image.fromarray(textured(60, 40, 1, gen=g)[..., 0], "L").save(d / "gif_grey.gif")
    out["gif_grey"] = "gif_grey.gif"
    rgb = Image.fromarray(textured(100, 70, gen=g))
    rgb.save(d / "webp_lossless_rgb.webp", lossless=True); out["webp_lossless_rgb"] = "webp_lossless_rgb.webp"
    alpha = textured(100, 70, 1, gen=g)
    alpha[:, :15] = 0
    alpha[:, 15:30] = 255
    alpha[:, 30:40] = 1
    rgba = Image.fromarray(np.concatenate([textured(100, 70, gen=g), alpha], -1), "RGBA")
    rgba.save(d / "webp_lossless_rgba.webp", lossless=True, exact=True)
    out["webp_lossless_rgba"] = "webp_lossless_rgba.webp"
    Image.fromarray(textured(100, 70, gen=g)).save(d / "webp_lossy.webp", quality=90)
    out["webp_lossy"] = "webp_lossy.webp"
    # Smaller inputs for further layouts. BMP: L (grey ramp palette), 4-bit with a 12-entry palette and
    # top-down rows, RLE8 (runs of 3).
    Image.fromarray(textured(40, 28, 1, gen=g)[..., 0], "L").save(d / "bmp_grey.bmp"); out["bmp_grey"] = "bmp_grey.bmp"
    q = Image.fromarray(textured(40, 28, gen=g)).quantize(colors=12, dither=Image.Dither.NONE)
    pal = np.array(q.getpalette()[:36]).reshape(12, 3)
    raw_bmp(d / "bmp_palette4_topdown.bmp", np.asarray(q), pal, 4, top_down=True)
    out["bmp_palette4_topdown"] = "bmp_palette4_topdown.bmp"
    q = Image.fromarray(textured(40, 28, gen=g)).quantize(colors=100, dither=Image.Dither.NONE)
    idx = np.asarray(q)[:, (np.arange(40) // 3) * 3]
    raw_bmp(d / "bmp_rle8.bmp", idx, np.array(q.getpalette()[:300]).reshape(100, 3), 8, rle8=True)
    out["bmp_rle8"] = "bmp_rle8.bmp"
    # BMP 32-bit (Pillow writes RGBA as BGRA without bitfields and opens it as RGB, ignoring
    # the fourth byte), 16-bit 555 and 565 (bitfields).
    a = textured(40, 28, 1, gen=g)
    a[:, :10] = 0
    Image.fromarray(np.concatenate([textured(40, 28, gen=g), a], -1), "RGBA").save(d / "bmp_bgrx32.bmp")
    out["bmp_bgrx32"] = "bmp_bgrx32.bmp"
    c = textured(40, 28, gen=g).astype(np.uint16)
    raw_bmp(d / "bmp_rgb555.bmp", (c[..., 0] >> 3) << 10 | (c[..., 1] >> 3) << 5 | c[..., 2] >> 3, [], 16)
    out["bmp_rgb555"] = "bmp_rgb555.bmp"
    c = textured(40, 28, gen=g).astype(np.uint16)
    raw_bmp(d / "bmp_rgb565.bmp", (c[..., 0] >> 3) << 11 | (c[..., 1] >> 2) << 5 | c[..., 2] >> 3, [], 16,
            masks=(0xF800, 0x7E0, 0x1F))
    out["bmp_rgb565"] = "bmp_rgb565.bmp"
    # TIFF 16-bit: grey (Pillow's I;16) with values above and below 255, RGB (high bytes).
    g16 = textured(40, 28, 1, gen=g)[..., 0].astype(np.uint16) * 257
    g16[:, :20] //= 200
    Image.fromarray(g16).save(d / "tiff_grey16.tif"); out["tiff_grey16"] = "tiff_grey16.tif"
    raw_tiff_rgb16(d / "tiff_rgb16.tif", textured(40, 28, gen=g).astype(np.uint16) * 257 + 3 * np.arange(40)[None, :, None])
    out["tiff_rgb16"] = "tiff_rgb16.tif"
    # GIF whose first frame is smaller than the screen and offset: Pillow fills the rest with
    # the transparent index, else index 0.
    for name, trns in (("gif_frame_offset", None), ("gif_frame_offset_trns", 5)):
        q = Image.fromarray(textured(40, 28, gen=g)).quantize(colors=16, dither=Image.Dither.NONE)
        q.save(d / f"{name}.gif", **({} if trns is None else {"transparency": trns}))
        gif_move_frame(d / f"{name}.gif", (50, 36), (6, 4))
        out[name] = f"{name}.gif"
    # Tall images whose height shrinks by more than twice as many pixels as the width: Pillow 13 runs
    # the vertical pass first there (Resample.c `horizontal_first`). Own generator, as above.
    g = np.random.default_rng(20261130)
    Image.fromarray(textured(60, 200, gen=g)).save(d / "tall_rgb.png"); out["tall_rgb"] = "tall_rgb.png"
    rgba = np.concatenate([textured(40, 130, gen=g), textured(40, 130, 1, gen=g)], -1)
    Image.fromarray(rgba, "RGBA").save(d / "tall_rgba.png"); out["tall_rgba"] = "tall_rgba.png"
    g16 = textured(30, 100, 1, gen=g)[..., 0].astype(np.uint16) * 257
    Image.fromarray(g16).save(d / "tall_grey16.png"); out["tall_grey16"] = "tall_grey16.png"
    return out


def golden(name, im, size, exif, tensor=False, decoded=False, squash=False):
    if exif:
        im = ImageOps.exif_transpose(im)
    pixels, to_tensor = (squash_pixels, squash_tensor) if squash else (clip_pixels, clip_tensor)
    px = np.asarray(pixels(size)(im))
    assert px.shape == (size, size, 3) and px.dtype == np.uint8, px.shape
    (FIX / "goldens" / f"{name}.u8").write_bytes(px.tobytes())
    entry = {"name": name, "size": size, "exif": exif, "pixels": f"goldens/{name}.u8"}
    if squash:
        entry["resize"] = "squash"
    if decoded:
        # the whole decoded image, in the crate's layout of Pillow's modes ("1": a byte per pixel)
        raw = im.convert("L").tobytes() if im.mode == "1" else im.tobytes()
        entry["decoded"] = {"mode": im.mode, "width": im.width, "height": im.height,
                            "sha256": hashlib.sha256(raw).hexdigest()}
    if tensor:
        t = to_tensor(size)(im).numpy()[None]
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
            # BMP/TIFF/GIF/WebP: smaller crops (fixture size), and a hash of the whole decoded image
            other = file.rsplit(".", 1)[1] in ("bmp", "tif", "gif", "webp")
            e = golden(name, im, 32 if other else s, False, tensor=name in tensor_cases, decoded=other)
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
    # Shorter side with the vertical pass first (tall images, width also reduced), crop window included.
    for name, size in (("tall_rgb", 32), ("tall_rgba", 24), ("tall_grey16", 16)):
        with Image.open(FIX / "inputs" / inputs[name]) as im:
            e = golden(f"{name}_{size}", im, size, False, tensor=True)
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
    # Chinese-CLIP's squash resize (Resize((s, s)), no crop): aspect ratios both ways, up- and
    # downscaling, the modes resized in their own mode (RGBA premultiplied, P nearest, 16-bit), EXIF.
    check_cn_clip_transform()
    squash = {"landscape_rgb": 64, "portrait_rgb_jpeg": 64, "odd_crop_97x64": 48, "tiny_1x1": 16, "exact_64": 64,
              "upscale_40x30": 96, "aspect_2000x20": 64, "aspect_13x999": 64, "grey_l": 64, "grey_la": 64,
              "rgba": 64, "palette": 64, "palette_trns_4bit": 64, "bilevel": 64, "cmyk_jpeg": 64, "grey16": 64,
              "rgb16": 64, "exif_6": 64, "gif_transparent": 32, "webp_lossless_rgba": 32, "tall_rgb": 48,
              "tall_rgba": 32, "tall_grey16": 16}
    for name, size in squash.items():
        with Image.open(FIX / "inputs" / inputs[name]) as im:
            im.load()
            e = golden("squash_" + name, im, size, name == "exif_6", tensor=True, squash=True)
            e["input"] = f"inputs/{inputs[name]}"
            e["mode"] = im.mode
            cases.append(e)
    for photo in sorted((FIX / "photos").glob("*"))[:2]:
        if photo.name == "PROVENANCE":
            continue
        with Image.open(photo) as im:
            e = golden("squash_photo_" + photo.stem, im, 224, False, tensor=True, squash=True)
            e["input"] = f"photos/{photo.name}"
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
