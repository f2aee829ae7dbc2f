"""Fixtures for crates/imagenet-meta: what scipy reads from meta.mat, and tiny MAT-files.

Writes into crates/imagenet-meta/tests/fixtures/:
  meta_scipy.json.gz    every synset of ../shared/data/imagenet-devkit/meta.mat as scipy.io.loadmat
                        reads it (all fields incl. children), plus the class index computed here
                        (leaves sorted by wnid), gzip-compressed.
  tiny_compressed.mat, tiny_uncompressed.mat
                        written by scipy.io.savemat (struct array, cell array, char incl. non-ASCII,
                        every numeric class, logical, complex, empty values).
  handmade_le.mat, handmade_be.mat
                        written byte by byte here (scipy cannot write them): char stored as
                        miUINT16 / miUTF16 (surrogate pair) / miUTF8, doubles and ints stored in
                        narrower integer types, saturating conversions, empty miMATRIX, big-endian.
  tiny_expected.json    the expected contents of every tiny file, from the Python values that
                        were written (cross-checked against scipy.io.loadmat where scipy agrees).

Run from the repository root: $PY tools/reference/imagenet_meta.py
"""
import gzip
import json
import os
import struct
from pathlib import Path

import numpy as np
import scipy.io as sio

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "crates/imagenet-meta/tests/fixtures"
SHARED = Path(os.environ.get("CLIP_SHARED_DATA", ROOT / "../shared/data"))


# --------------------------------------------------------------------------- real meta.mat
def meta_fixture():
    m = sio.loadmat(SHARED / "imagenet-devkit/meta.mat")
    syn = m["synsets"].ravel(order="F")
    records = []
    for e in syn:
        def scalar(name):
            v = e[name]
            assert v.size == 1, (name, v)
            return int(v.ravel()[0])

        def text(name):
            v = e[name]
            return str(v[0]) if v.size else ""

        records.append({
            "id": scalar("ILSVRC2012_ID"),
            "wnid": text("WNID"),
            "words": text("words"),
            "gloss": text("gloss"),
            "num_children": scalar("num_children"),
            "children": [int(c) for c in e["children"].ravel(order="F")],
            "wordnet_height": scalar("wordnet_height"),
            "num_train_images": scalar("num_train_images"),
        })
    leaves = sorted(r["wnid"] for r in records if r["num_children"] == 0)
    index = {w: i for i, w in enumerate(leaves)}
    for r in records:
        r["class_index"] = index.get(r["wnid"]) if r["num_children"] == 0 else None
    assert len(records) == 1860 and len(leaves) == 1000
    assert leaves[0] == "n01440764"
    with gzip.GzipFile(OUT / "meta_scipy.json.gz", "wb", mtime=0) as f:
        f.write(json.dumps(records, ensure_ascii=False, indent=0).encode())


# --------------------------------------------------------------------------- expected values
def num(cls, dims, data, imag=None, logical=False):
    return {"kind": "numeric", "class": cls, "dims": list(dims), "data": list(data),
            "imag": None if imag is None else list(imag), "logical": logical}


def chars(dims, rows):
    return {"kind": "char", "dims": list(dims), "rows": rows}


def cell(dims, cells):
    return {"kind": "cell", "dims": list(dims), "cells": cells}


def struct_(dims, fields, elements):
    return {"kind": "struct", "dims": list(dims), "fields": fields, "elements": elements}


def pyval(x):
    return x.item() if hasattr(x, "item") else x


def colmajor(a):
    return [pyval(v) for v in np.asarray(a).ravel(order="F")]


# --------------------------------------------------------------------------- savemat files
def savemat_fixtures():
    text = "Ünïcødé ✓ naïve"
    d = np.array([[1.5, -2.0, 3.25], [4.0, 5.0, -6.5]])
    ints = {
        "i8": np.array([[-128, 0, 127]], dtype=np.int8),
        "u8": np.array([[0, 200, 255]], dtype=np.uint8),
        "i16": np.array([[-32768, 12345]], dtype=np.int16),
        "u16": np.array([[65535, 1]], dtype=np.uint16),
        "i32": np.array([[-2147483648, 7]], dtype=np.int32),
        "u32": np.array([[4294967295, 0]], dtype=np.uint32),
        "i64": np.array([[-(2 ** 62), 2 ** 40 + 1]], dtype=np.int64),
        "u64": np.array([[2 ** 63, 3]], dtype=np.uint64),
    }
    sgl = np.array([[0.25, -1.5], [3.0, 1e-3]], dtype=np.float32)
    logic = np.array([[True, False, True]])
    cplx = np.array([[1 + 2j, -3.5 - 0.5j]])
    s = np.zeros((1, 3), dtype=[("name", object), ("id", object), ("vals", object), ("empty", object)])
    s[0, 0] = ("first", np.array([[1]], dtype=np.uint16), np.array([[1.0, 2.0]]), np.zeros((0, 0)))
    s[0, 1] = ("zweite Größe", np.array([[2.5]]), np.zeros((1, 0)), "")
    s[0, 2] = ("", np.array([[-3]], dtype=np.int32), np.array([[7.0], [8.0]]), np.zeros((0, 3)))
    c = np.empty((2, 2), dtype=object)
    c[0, 0] = "abc"
    c[1, 0] = np.array([[1.0, 2.0, 3.0]])
    c[0, 1] = np.array([[-5, 7]], dtype=np.int16)
    inner = np.empty((1, 2), dtype=object)
    inner[0, 0] = "x"
    inner[0, 1] = np.zeros((0, 0))
    c[1, 1] = inner
    data = {"d": d, "sgl": sgl, "logic": logic, "cplx": cplx, "s": s, "c": c, "text": text,
            "empty": np.zeros((0, 0)), "emptychar": "", **ints}
    expected = {
        "d": num("double", d.shape, colmajor(d)),
        "sgl": num("single", sgl.shape, [float(v) for v in sgl.ravel(order="F")]),
        "logic": num("uint8", logic.shape, [1, 0, 1], logical=True),
        "cplx": num("double", cplx.shape, colmajor(cplx.real), colmajor(cplx.imag)),
        "text": chars([1, len(text)], [text]),
        "empty": num("double", [0, 0], []),
        "emptychar": chars([0, 0], []),
        "s": struct_([1, 3], ["name", "id", "vals", "empty"], [
            [chars([1, 5], ["first"]), num("uint16", [1, 1], [1]), num("double", [1, 2], [1.0, 2.0]),
             num("double", [0, 0], [])],
            [chars([1, 12], ["zweite Größe"]), num("double", [1, 1], [2.5]), num("double", [1, 0], []),
             chars([0, 0], [])],
            [chars([0, 0], []), num("int32", [1, 1], [-3]), num("double", [2, 1], [7.0, 8.0]),
             num("double", [0, 3], [])],
        ]),
        "c": cell([2, 2], [
            chars([1, 3], ["abc"]),
            num("double", [1, 3], [1.0, 2.0, 3.0]),
            num("int16", [1, 2], [-5, 7]),
            cell([1, 2], [chars([1, 1], ["x"]), num("double", [0, 0], [])]),
        ]),
    }
    for k, a in ints.items():
        expected[k] = num(str(a.dtype).replace("uint", "uint").replace("int", "int"), a.shape, colmajor(a))
    for compressed in (True, False):
        name = "tiny_compressed.mat" if compressed else "tiny_uncompressed.mat"
        sio.savemat(OUT / name, data, do_compression=compressed, oned_as="row")
        back = sio.loadmat(OUT / name)
        # Cross-check a few values against scipy's own reading.
        assert np.array_equal(back["d"], d)
        assert back["text"][0] == text
        assert back["s"][0, 1]["name"][0] == "zweite Größe"
        assert back["i64"][0, 0] == -(2 ** 62)
        assert np.array_equal(back["c"][1, 0], c[1, 0])
    return expected


# --------------------------------------------------------------------------- hand-made files
MI = {"int8": 1, "uint8": 2, "int16": 3, "uint16": 4, "int32": 5, "uint32": 6, "single": 7,
      "double": 9, "int64": 12, "uint64": 13, "matrix": 14, "utf8": 16, "utf16": 17}
MX = {"cell": 1, "struct": 2, "char": 4, "double": 6, "single": 7, "int8": 8, "uint8": 9,
      "int16": 10, "uint16": 11, "int32": 12, "uint32": 13, "int64": 14, "uint64": 15}
FMT = {"int8": "b", "uint8": "B", "int16": "h", "uint16": "H", "int32": "i", "uint32": "I",
       "single": "f", "double": "d", "int64": "q", "uint64": "Q"}


class Writer:
    def __init__(self, e):
        self.e = e  # '<' or '>'

    def element(self, ty, data):
        if len(data) <= 4 and ty != MI["matrix"]:
            tag = struct.pack(self.e + "I", (len(data) << 16) | ty)
            return tag + data + b"\0" * (4 - len(data))
        pad = (8 - len(data) % 8) % 8
        return struct.pack(self.e + "II", ty, len(data)) + data + b"\0" * pad

    def values(self, mi, vals):
        return self.element(MI[mi], struct.pack(self.e + FMT[mi] * len(vals), *vals))

    def matrix(self, cls, dims, name, body, flags=0):
        f = struct.pack(self.e + "II", MX[cls] | flags, 0)
        content = (self.element(MI["uint32"], f) + self.values("int32", dims)
                   + self.element(MI["int8"], name.encode()) + body)
        return self.element(MI["matrix"], content)

    def header(self):
        text = b"MATLAB 5.0 MAT-file written by tools/reference/imagenet_meta.py".ljust(116, b" ")
        version = struct.pack(self.e + "H", 0x0100)
        return text + b"\0" * 8 + version + (b"IM" if self.e == "<" else b"MI")


def handmade(e):
    w = Writer(e)
    u16 = ["ab€", "cdé"]  # 2x3 char, column-major
    u16_units = [ord(u16[r][c]) for c in range(3) for r in range(2)]
    utf16_text = "G𝄞ü"  # the clef is a surrogate pair: 4 UTF-16 code units
    utf16_bytes = utf16_text.encode("utf-16-le" if e == "<" else "utf-16-be")
    utf8_text = "naïve ☃"
    n8 = len(utf8_text.encode("utf-16-le")) // 2
    field_len = 32
    names = b"".join(n.encode().ljust(field_len, b"\0") for n in ["a", "bb"])
    st_body = (w.values("int32", [field_len]) + w.element(MI["int8"], names)
               + w.matrix("double", [1, 1], "", w.values("uint8", [9]))
               + w.matrix("char", [1, 2], "", w.values("uint16", [ord("h"), ord("i")]))
               + w.matrix("int16", [1, 2], "", w.values("int8", [-1, 2]))
               + w.element(MI["matrix"], b""))
    cell_body = w.element(MI["matrix"], b"") + w.matrix("char", [0, 0], "", w.element(MI["utf8"], b""))
    body = b"".join([
        w.matrix("char", [2, 3], "u16chars", w.values("uint16", u16_units)),
        w.matrix("char", [1, 4], "utf16chars", w.element(MI["utf16"], utf16_bytes)),
        w.matrix("char", [1, n8], "utf8chars", w.element(MI["utf8"], utf8_text.encode())),
        w.matrix("double", [1, 3], "dbl_u8", w.values("uint8", [1, 200, 255])),
        w.matrix("double", [2, 2], "dbl_i16", w.values("int16", [-300, 5, 7, 32000])),
        w.matrix("int32", [1, 2], "i32_i8", w.values("int8", [-1, 100])),
        w.matrix("uint8", [1, 3], "sat_u8", w.values("int16", [300, -5, 17])),
        w.matrix("int8", [1, 4], "round_i8", w.values("double", [2.5, -2.5, 1000.0, float("nan")])),
        w.matrix("single", [1, 2], "sgl_i32", w.values("int32", [16777217, -3])),
        w.matrix("double", [1, 2], "cplx", w.values("int8", [1, -2]) + w.values("double", [0.5, 1.5]),
                 flags=0x0800),
        w.matrix("int64", [1, 2], "i64", w.values("int64", [-(2 ** 62), 2 ** 53 + 1])),
        w.matrix("cell", [1, 2], "cellempty", cell_body),
        w.matrix("struct", [2, 1], "st", st_body),
    ])
    (OUT / f"handmade_{'le' if e == '<' else 'be'}.mat").write_bytes(w.header() + body)
    expected = {
        "u16chars": chars([2, 3], u16),
        "utf16chars": chars([1, 4], [utf16_text]),
        "utf8chars": chars([1, n8], [utf8_text]),
        "dbl_u8": num("double", [1, 3], [1.0, 200.0, 255.0]),
        "dbl_i16": num("double", [2, 2], [-300.0, 5.0, 7.0, 32000.0]),
        "i32_i8": num("int32", [1, 2], [-1, 100]),
        # MATLAB semantics: integer conversion saturates, double -> int rounds half away from
        # zero and saturates, NaN -> 0.
        "sat_u8": num("uint8", [1, 3], [255, 0, 17]),
        "round_i8": num("int8", [1, 4], [3, -3, 127, 0]),
        "sgl_i32": num("single", [1, 2], [float(np.float32(16777217)), -3.0]),
        "cplx": num("double", [1, 2], [1.0, -2.0], [0.5, 1.5]),
        "i64": num("int64", [1, 2], [-(2 ** 62), 2 ** 53 + 1]),
        "cellempty": cell([1, 2], [num("double", [0, 0], []), chars([0, 0], [])]),
        "st": struct_([2, 1], ["a", "bb"], [
            [num("double", [1, 1], [9.0]), chars([1, 2], ["hi"])],
            [num("int16", [1, 2], [-1, 2]), num("double", [0, 0], [])],
        ]),
    }
    # Cross-check what scipy can read the same way (it keeps storage dtypes, so compare values).
    # scipy counts code points, not UTF-16 code units as MATLAB's dimensions do, so it cannot
    # read `utf16chars` (a surrogate pair makes 4 units of 3 characters).
    names = [k for k in expected if k != "utf16chars"]
    back = sio.loadmat(OUT / f"handmade_{'le' if e == '<' else 'be'}.mat", variable_names=names,
                       uint16_codec="utf-16-le" if e == "<" else "utf-16-be")
    assert list(back["u16chars"]) == u16, back["u16chars"]
    assert back["utf8chars"][0] == utf8_text
    assert list(back["dbl_u8"].ravel()) == [1, 200, 255]
    assert list(back["dbl_i16"].ravel(order="F")) == [-300, 5, 7, 32000]
    assert back["st"].shape == (2, 1) and back["st"][0, 0]["bb"][0] == "hi"
    assert back["cplx"][0, 1] == -2 + 1.5j
    return expected


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    meta_fixture()
    expected = {
        "tiny_compressed.mat": savemat_fixtures(),
        "handmade_le.mat": handmade("<"),
        "handmade_be.mat": handmade(">"),
    }
    expected["tiny_uncompressed.mat"] = expected["tiny_compressed.mat"]
    (OUT / "tiny_expected.json").write_text(json.dumps(expected, ensure_ascii=False, indent=1) + "\n")


if __name__ == "__main__":
    main()
