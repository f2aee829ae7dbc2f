"""clip-model against PyTorch + open_clip on the same GPU, the same random weights and inputs.

    python3 tools/cuda/gpu_bench.py --bin PATH/clip-cuda-check --work DIR [--out DIR] [--dtypes f32,bf16]

Builds ViT-B-32-quickgelu and RN50x64-quickgelu with every parameter random, exactly as
`tools/reference/bench_compare.py prepare` does (same seed, `model_parity.randomize`), saves them as
open_clip safetensors under DIR, and writes fixed inputs beside them (a few images, 256 token rows
whose end-of-text sits at 8–20 tokens, like ImageNet prompts). Then, per model and dtype, it runs
`clip-cuda-check bench` (the Rust side, its own process) and times open_clip on the same device:
each timed run ends with a device synchronisation, after warm-up runs; medians are reported.

Ratios are PyTorch's time over ours: above 1.0 we are faster. The text rows compare ours at all 77
positions (what open_clip runs) and up to the longest end-of-text token (what clip-model runs by
default; the same result, as attention is causal). In f32 both sides compute in full f32: TF32 is
switched off for PyTorch's matmuls and cuDNN convolutions (candle uses none).

Accuracy on full-size models: ours and PyTorch in each dtype against PyTorch in f32, on the same
inputs (cosine and max |diff| per embedding).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))

from bench_compare import MODELS  # noqa: E402  (open_clip names of the benchmark models)
from model_parity import open_clip_state, randomize  # noqa: E402

DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}
SOT, EOT = 49406, 49407
# Workloads per model: image batches, text batches (the text tower is timed on ViT-B/32's), runs.
PLAN = {
    "vit-b-32": {"size": 224, "image": [1, 32, 256], "text": [1, 256], "reps": 10},
    "rn50x64": {"size": 448, "image": [1, 16], "text": [], "reps": 5},
}


def prepare(work, key):
    """bench_compare.prepare's model, without its ONNX export."""
    import open_clip
    from safetensors.torch import save_file

    out = os.path.join(work, key)
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "open_clip_model.safetensors")
    if not os.path.exists(path):
        t0 = time.time()
        gen = torch.Generator().manual_seed(1234)
        model = open_clip.create_model(MODELS[key], pretrained=None).eval()
        randomize(model, gen)
        state = open_clip_state(model)
        # As bench_compare.prepare: BatchNorm buffers are not parameters; keep the variances positive.
        for k, v in state.items():
            if k.endswith("running_var"):
                state[k] = (0.5 + torch.rand(v.shape, generator=gen)).contiguous()
            elif k.endswith("running_mean"):
                state[k] = (0.1 * torch.randn(v.shape, generator=gen)).contiguous()
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
        save_file(state, path + ".tmp")
        os.replace(path + ".tmp", path)
        log(f"made {path} in {time.time() - t0:.1f} s")
    size = PLAN[key]["size"]
    gen = torch.Generator().manual_seed(5)
    n = 8 if size == 224 else 2
    np.save(os.path.join(out, f"pixels_{size}.npy"), torch.randn((n, 3, size, size), generator=gen).numpy())
    rows = max(PLAN["vit-b-32"]["text"] + [8])
    ids = torch.zeros((rows, 77), dtype=torch.int64)
    for r in range(rows):
        eot = int(torch.randint(8, 21, (1,), generator=gen))
        ids[r, 0] = SOT
        ids[r, 1:eot] = torch.randint(1, SOT, (eot - 1,), generator=gen)
        ids[r, eot] = EOT
    np.save(os.path.join(out, "text_ids.npy"), ids.numpy())
    return path


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def ours(args, key, dtype, weights):
    plan = PLAN[key]
    cmd = [args.bin, "bench", "--device", args.device, "--dtype", dtype, "--weights", weights,
           "--image-batches", ",".join(map(str, plan["image"])), "--reps", str(plan["reps"]),
           "--inputs", os.path.dirname(weights)]
    if plan["text"]:
        cmd += ["--text-batches", ",".join(map(str, plan["text"]))]
    log("$ " + " ".join(cmd))
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        log(p.stdout + p.stderr)
        return None, f"exit {p.returncode}: {p.stderr.strip()[-400:]}"
    lines = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    log(f"ours {key} {dtype}: {time.time() - t0:.1f} s, {lines[0]}")
    return {(r["workload"], r["batch"]): r["seconds"] for r in lines[1:]}, None


def sync_time(fn, warmup, reps):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    secs = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        secs.append(time.perf_counter() - t0)
    return secs


def theirs(key, dtype, weights, device):
    import open_clip
    from safetensors.torch import load_file

    plan = PLAN[key]
    dt = DTYPES[dtype]
    model = open_clip.create_model(MODELS[key], pretrained=None).eval()
    model.load_state_dict(load_file(weights), strict=False)
    model = model.to(device=device, dtype=dt)
    size = plan["size"]
    times = {}
    out_dir = os.path.dirname(weights)
    with torch.inference_mode():
        for b in plan["image"]:
            x = torch.randn((b, 3, size, size), device=device, dtype=dt)
            times[("image", b)] = sync_time(lambda: model.encode_image(x), 3, plan["reps"])
        ids_all = torch.from_numpy(np.load(os.path.join(out_dir, "text_ids.npy"))).to(device)
        for b in plan["text"]:
            ids = ids_all[:b]
            times[("text77", b)] = sync_time(lambda: model.encode_text(ids), 3, plan["reps"])
        # Embeddings of the fixed inputs, for the accuracy rows.
        px = torch.from_numpy(np.load(os.path.join(out_dir, f"pixels_{size}.npy"))).to(device, dt)
        emb = {"image": model.encode_image(px).float().cpu().numpy()}
        if plan["text"]:
            emb["text"] = model.encode_text(ids_all).float().cpu().numpy()
    del model
    torch.cuda.empty_cache()
    return times, emb


def agreement(got, want):
    got, want = got.astype(np.float64), want.astype(np.float64)
    cos = (got * want).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    return float(cos.min()), float(np.abs(got - want).max())


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", required=True, help="the clip-cuda-check binary (built with --features cuda)")
    p.add_argument("--work", required=True, help="folder for the random models and inputs")
    p.add_argument("--out", help="folder for results.json")
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtypes", default="f32,bf16")
    p.add_argument("--models", default="vit-b-32,rn50x64")
    args = p.parse_args()

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    import open_clip

    tdev = torch.device("cuda" if args.device == "cuda" else args.device)
    log(f"torch {torch.__version__}, open_clip {open_clip.__version__}, {torch.cuda.get_device_name(tdev)}")
    rows, acc, errors = [], [], []
    for key in args.models.split(","):
        weights = prepare(args.work, key)
        ref = None
        for dtype in args.dtypes.split(","):
            mine, err = ours(args, key, dtype, weights)
            if err:
                errors.append(f"ours {key} {dtype}: {err}")
            t0 = time.time()
            tt, emb = theirs(key, dtype, weights, tdev)
            log(f"torch {key} {dtype}: {time.time() - t0:.1f} s")
            if dtype == "f32":
                ref = emb
            for (work, b), secs in sorted(tt.items()):
                t = statistics.median(secs)
                for ow in ([work] if work == "image" else ["text77", "text"]):
                    o = statistics.median(mine[(ow, b)]) if mine and (ow, b) in mine else None
                    rows.append({"model": key, "dtype": dtype, "workload": ow, "batch": b,
                                 "ours_ms": o and 1e3 * o, "torch_ms": 1e3 * t,
                                 "ratio": (t / o) if o else None})
            if ref is not None:
                d = os.path.dirname(weights)
                for part in ref:
                    f = os.path.join(d, f"ours_{dtype}_{part}.npy")
                    if os.path.exists(f):
                        c, m = agreement(np.load(f), ref[part])
                        acc.append({"model": key, "dtype": dtype, "part": part, "who": "ours",
                                    "min_cosine": c, "max_abs_diff": m})
                    if dtype != "f32":
                        c, m = agreement(emb[part], ref[part])
                        acc.append({"model": key, "dtype": dtype, "part": part, "who": "torch",
                                    "min_cosine": c, "max_abs_diff": m})

    print(f"\n{'model':9} {'dtype':5} {'workload':8} {'batch':>5} {'ours ms':>10} {'torch ms':>10} "
          f"{'torch/ours':>10} {'ours img|txt/s':>14}")
    for r in rows:
        o = f"{r['ours_ms']:.3f}" if r["ours_ms"] else "-"
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] else "-"
        rate = f"{1e3 * r['batch'] / r['ours_ms']:.0f}" if r["ours_ms"] else "-"
        print(f"{r['model']:9} {r['dtype']:5} {r['workload']:8} {r['batch']:>5} {o:>10} "
              f"{r['torch_ms']:>10.3f} {ratio:>10} {rate:>14}")
    print("\naccuracy against PyTorch f32 on the same inputs (full-size random models):")
    for a in acc:
        print(f"  {a['model']:9} {a['dtype']:5} {a['part']:5} {a['who']:5} min cosine {a['min_cosine']:.7f} "
              f"max |diff| {a['max_abs_diff']:.3e}")
    for r in rows:
        if (r["model"], r["workload"], r["batch"]) == ("vit-b-32", "image", 256) and r["ours_ms"]:
            print(f"ImageNet 50,000 images, ViT-B/32 {r['dtype']} at batch 256: model time "
                  f"{50000 / 256 * r['ours_ms'] / 1e3:.1f} s ours, {50000 / 256 * r['torch_ms'] / 1e3:.1f} s PyTorch")
    for e in errors:
        print("ERROR", e)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "gpu_bench.json"), "w") as f:
            json.dump({"device": torch.cuda.get_device_name(tdev), "torch": torch.__version__,
                       "open_clip": open_clip.__version__, "rows": rows, "accuracy": acc,
                       "errors": errors}, f, indent=1)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
