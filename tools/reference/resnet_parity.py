#!/usr/bin/env python3
"""Reference data for the ModifiedResNet (CLIP RN50 ... RN50x64) image tower.

Two modes:

* ``fixtures`` (default): builds tiny random open_clip ``ModifiedResNet`` models, saves their weights with the
  open_clip / OpenAI checkpoint names (``visual.conv1.weight`` ...) as safetensors, plus fixed random
  pre-normalised pixel tensors and open_clip's image embeddings for them, under
  ``crates/clip-model/tests/fixtures/``. Rerun with the reference venv:

      ~/.cache/clip-rs/reference-venv/bin/python tools/reference/resnet_parity.py

* ``time --model rn50x64 --out DIR``: times PyTorch again on the saved model and images (for timing
  interleaved with ours).

* ``full --model rn50x64 --out DIR``: builds a full-size random model of the named preset, writes
  ``DIR/model.safetensors``, ``DIR/input.npy``, ``DIR/expected.npy`` and ``DIR/torch.json`` (PyTorch's time per
  image at batch 1 on this machine). Used by ``cargo xtask parity --model rn50x64``.

Batch-norm layers get non-trivial inference statistics so that the test exercises them: running mean / variance
are first estimated from random inputs (so activations stay in a sane range through deep towers), then perturbed,
and the affine weight and bias are random (open_clip initialises every ``bn3.weight`` to zero, which would hide
most of each bottleneck).
"""

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from open_clip.modified_resnet import ModifiedResNet
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "crates" / "clip-model" / "tests" / "fixtures"

# (layers, width, image_size, output_dim), as in open_clip's model_configs/RN*.json.
PRESETS = {
    "rn50": ([3, 4, 6, 3], 64, 224, 1024),
    "rn101": ([3, 4, 23, 3], 64, 224, 512),
    "rn50x4": ([4, 6, 10, 6], 80, 288, 640),
    "rn50x16": ([6, 8, 18, 8], 96, 384, 768),
    "rn50x64": ([3, 15, 36, 10], 128, 448, 1024),
}

# Tiny model for CI (all fixtures together stay under 500 KB): layers, width, image_size, output_dim.
# heads = width * 32 / 64 as in open_clip, so two heads; identity-shortcut blocks in three stages; 2x2 final grid.
TINY = {
    "resnet_tiny": ([2, 2, 2, 1], 4, 64, 32),
}


def build(layers, width, image_size, output_dim, seed):
    torch.manual_seed(seed)
    heads = width * 32 // 64
    model = ModifiedResNet(layers=layers, output_dim=output_dim, heads=heads, image_size=image_size, width=width)
    g = torch.Generator().manual_seed(seed + 1)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    # Random affine parameters first, then running statistics measured on random inputs with those parameters,
    # so activations neither vanish nor explode through deep towers.
    # The last batch norm of each bottleneck (bn3) gets a smaller gain, as in trained ResNets (open_clip starts it
    # at zero): with gains near 1, the 64 blocks of RN50x64 amplify f32 rounding until two correct f32
    # implementations differ by 1e-2 (measured against an f64 run).
    bn3 = {id(m.bn3) for m in model.modules() if hasattr(m, "bn3") and hasattr(m, "downsample")}
    with torch.no_grad():
        for bn in bns:
            c = bn.num_features
            lo, span = (0.1, 0.3) if id(bn) in bn3 else (0.4, 0.8)
            bn.weight.copy_(torch.rand(c, generator=g) * span + lo)
            bn.bias.copy_(torch.randn(c, generator=g) * 0.2)
            bn.momentum = None  # cumulative average
            bn.reset_running_stats()
        model.train()
        calib = torch.randn(2, 3, image_size, image_size, generator=g)
        model(calib)
        # Perturb the measured statistics slightly so they are not exactly the batch statistics (larger
        # perturbations compound over the ~200 batch norms of RN50x64 and blow up the activations).
        for bn in bns:
            c = bn.num_features
            bn.running_mean.add_(torch.randn(c, generator=g) * 0.02 * bn.running_var.sqrt())
            bn.running_var.mul_(torch.rand(c, generator=g) * 0.1 + 0.95)
    model.eval()
    return model, heads


def state_dict_for_file(model):
    # open_clip checkpoints name the image tower "visual.*"; num_batches_tracked is kept (int64) as in real files.
    return {f"visual.{k}": v.contiguous() for k, v in model.state_dict().items()}


def embed(model, x):
    with torch.inference_mode():
        return model(x)


def write_npy(path, array):
    np.save(path, np.ascontiguousarray(array, dtype=np.float32))


def fixtures():
    FIXTURES.mkdir(parents=True, exist_ok=True)
    for i, (name, (layers, width, image_size, output_dim)) in enumerate(TINY.items()):
        model, heads = build(layers, width, image_size, output_dim, seed=100 + i)
        x = torch.randn(2, 3, image_size, image_size, generator=torch.Generator().manual_seed(200 + i))
        y = embed(model, x)
        save_file(state_dict_for_file(model), FIXTURES / f"{name}.safetensors")
        write_npy(FIXTURES / f"{name}_input.npy", x.numpy())
        write_npy(FIXTURES / f"{name}_expected.npy", y.numpy())
        # The stem's output and each stage's (NCHW), flattened and concatenated: the feature maps.
        with torch.inference_mode():
            h = model.stem(x)
            maps = [h]
            for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
                h = stage(h)
                maps.append(h)
        write_npy(FIXTURES / f"{name}_maps.npy", torch.cat([m.reshape(-1) for m in maps]).numpy())
        cos01 = torch.nn.functional.cosine_similarity(y[0], y[1], dim=0).item()
        print(
            f"{name}: layers={layers} width={width} image={image_size} out={output_dim} heads={heads} "
            f"|y|max={y.abs().max().item():.3f} cos(img0,img1)={cos01:.4f}"
        )
    total = sum(p.stat().st_size for p in FIXTURES.glob("resnet_*"))
    print(f"fixtures: {total} bytes in {FIXTURES}")


def full(model_name, out, images, runs):
    layers, width, image_size, output_dim = PRESETS[model_name]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model, heads = build(layers, width, image_size, output_dim, seed=7)
    print(f"{model_name}: built random model in {time.perf_counter() - t0:.1f} s (heads={heads})", flush=True)
    x = torch.randn(images, 3, image_size, image_size, generator=torch.Generator().manual_seed(8))
    save_file(state_dict_for_file(model), out / "model.safetensors")
    write_npy(out / "input.npy", x.numpy())
    ys = []
    times = []
    embed(model, x[:1])  # warm-up
    for r in range(runs):
        for i in range(images):
            t = time.perf_counter()
            y = embed(model, x[i : i + 1])
            times.append(time.perf_counter() - t)
            if r == 0:
                ys.append(y)
    y = torch.cat(ys)
    write_npy(out / "expected.npy", y.numpy())
    info = {
        "model": model_name,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "seconds_per_image": times,
        "median_seconds_per_image": float(np.median(times)),
        "max_abs_embedding": float(y.abs().max()),
    }
    (out / "torch.json").write_text(json.dumps(info, indent=2))
    print(json.dumps(info))


def time_saved(model_name, out, runs):
    """Times PyTorch on the model and images already saved in `out` (no rebuild), for interleaved timing."""
    from safetensors.torch import load_file

    layers, width, image_size, output_dim = PRESETS[model_name]
    out = Path(out)
    with torch.device("meta"):
        model = ModifiedResNet(
            layers=layers, output_dim=output_dim, heads=width * 32 // 64, image_size=image_size, width=width
        )
    state = {k[len("visual."):]: v for k, v in load_file(out / "model.safetensors").items()}
    model.load_state_dict(state, assign=True)
    model.eval()
    x = torch.from_numpy(np.load(out / "input.npy"))
    embed(model, x[:1])  # warm-up
    times = []
    for _ in range(runs):
        for i in range(x.shape[0]):
            t = time.perf_counter()
            embed(model, x[i : i + 1])
            times.append(time.perf_counter() - t)
    print(json.dumps({"seconds_per_image": times, "median_seconds_per_image": float(np.median(times))}))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="mode")
    sub.add_parser("fixtures")
    f = sub.add_parser("full")
    f.add_argument("--model", choices=sorted(PRESETS), default="rn50x64")
    f.add_argument("--out", required=True)
    f.add_argument("--images", type=int, default=2)
    f.add_argument("--runs", type=int, default=1, help="timed passes over the images")
    t = sub.add_parser("time", help="time PyTorch on a model saved by `full` (prints JSON)")
    t.add_argument("--model", choices=sorted(PRESETS), default="rn50x64")
    t.add_argument("--out", required=True)
    t.add_argument("--runs", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(int(os.environ.get("CLIP_REF_THREADS", torch.get_num_threads())))
    if a.mode == "full":
        full(a.model, a.out, a.images, a.runs)
    elif a.mode == "time":
        time_saved(a.model, a.out, a.runs)
    else:
        fixtures()


if __name__ == "__main__":
    main()
