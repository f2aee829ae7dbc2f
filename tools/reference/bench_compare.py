"""The Python side of `cargo xtask bench-compare`: PyTorch + open_clip, ONNX Runtime and FAISS.

    # random full-size models (open_clip naming, safetensors) + ONNX exports of ViT-B/32
    $PY tools/reference/bench_compare.py prepare --out DIR [--rn50x64]
    # a timing server: one JSON command per stdin line, one JSON answer per stdout line
    $PY tools/reference/bench_compare.py serve --dir DIR --threads 2

`prepare` builds ViT-B-32-quickgelu (and RN50x64 with --rn50x64) with every parameter random
(`model_parity.randomize`), saves `DIR/<model>/open_clip_model.safetensors` (the file the Rust side
loads, so both sides run the same weights), and exports the ViT-B/32 image tower (dynamic batch) and
text tower (dynamic batch, 77 tokens) to ONNX with `torch.onnx.export`.

With `--families`, `prepare` also writes a random SigLIP 2 B/16 @224 (`siglip2-b-16/`: transformers
`SiglipModel`, `model.safetensors` + `config.json`; token embedding of 32,000 rows instead of Gemma's
256,000, which costs a lookup either way) and a random Chinese-CLIP ViT-B/16 (`cn-vit-b-16/`: cn_clip's
`CLIP` with its ViT-B-16 + RoBERTa-wwm-ext-base configs, cn_clip naming, `config.json` the merged
cn_clip model config).

`serve` loads everything once and answers commands so the caller can interleave its own runs with
ours. Each command names an engine (`torch`, `ort`, `faiss`), a workload and a shape, and gets the
seconds of each repetition back (after one untimed warm-up run). Threads: torch.set_num_threads,
ORT intra-op threads, faiss.omp_set_num_threads, all = --threads.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))

MODELS = {"vit-b-32": "ViT-B-32-quickgelu", "rn50x64": "RN50x64-quickgelu"}


def prepare_families(out_dir, regenerate):
    from safetensors.torch import save_file

    out = os.path.join(out_dir, "siglip2-b-16")
    if regenerate or not os.path.exists(os.path.join(out, "model.safetensors")):
        from transformers import SiglipConfig, SiglipModel

        torch.manual_seed(1234)
        cfg = SiglipConfig(
            text_config=dict(vocab_size=32000, hidden_size=768, intermediate_size=3072,
                             num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=64,
                             hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6, projection_size=768),
            vision_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                               num_attention_heads=12, image_size=224, patch_size=16,
                               hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6),
        )
        model = SiglipModel(cfg).eval()
        os.makedirs(out, exist_ok=True)
        model.save_pretrained(out, safe_serialization=True)
        print(f"saved {out}", file=sys.stderr)

    out = os.path.join(out_dir, "cn-vit-b-16")
    path = os.path.join(out, "model.safetensors")
    if regenerate or not os.path.exists(path):
        from cn_clip.clip.model import CLIP

        cfg = cn_clip_config()
        torch.manual_seed(1234)
        model = CLIP(**cfg).eval()
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "LayerNorm.weight" in name or name.endswith(("ln_1.weight", "ln_2.weight")):
                    p.copy_(1 + 0.1 * torch.randn_like(p))
                elif name != "logit_scale":
                    p.copy_(0.02 * torch.randn_like(p))
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()
                 if not k.startswith("bert.pooler") and not k.endswith("num_batches_tracked")}
        os.makedirs(out, exist_ok=True)
        save_file(state, path + ".tmp")
        os.replace(path + ".tmp", path)
        with open(os.path.join(out, "config.json"), "w") as f:
            json.dump(cfg, f)
        print(f"saved {out}", file=sys.stderr)


def cn_clip_config():
    import cn_clip

    base = os.path.join(os.path.dirname(cn_clip.__file__), "clip", "model_configs")
    cfg = {}
    for name in ("ViT-B-16.json", "RoBERTa-wwm-ext-base-chinese.json"):
        with open(os.path.join(base, name)) as f:
            cfg.update(json.load(f))
    return cfg


def prepare(args):
    if args.families:
        prepare_families(args.out, args.regenerate)
    import open_clip
    from safetensors.torch import save_file
    from model_parity import open_clip_state, randomize

    names = ["vit-b-32"] + (["rn50x64"] if args.rn50x64 else [])
    for key in names:
        out = os.path.join(args.out, key)
        os.makedirs(out, exist_ok=True)
        path = os.path.join(out, "open_clip_model.safetensors")
        if os.path.exists(path) and not args.regenerate:
            if key == "vit-b-32" and not os.path.exists(os.path.join(out, "image_int8.onnx")):
                quantize_int8(out)
            continue
        gen = torch.Generator().manual_seed(1234)
        model = open_clip.create_model(MODELS[key], pretrained=None).eval()
        randomize(model, gen)
        state = open_clip_state(model)
        # BatchNorm buffers are not parameters: keep the running variances positive.
        for k, v in state.items():
            if k.endswith("running_var"):
                state[k] = (0.5 + torch.rand(v.shape, generator=gen)).contiguous()
            elif k.endswith("running_mean"):
                state[k] = (0.1 * torch.randn(v.shape, generator=gen)).contiguous()
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
        save_file(state, path + ".tmp")
        os.replace(path + ".tmp", path)
        print(f"saved {path}", file=sys.stderr)
        if key == "vit-b-32":
            export_onnx(model, out)
            quantize_int8(out)


class ImageTower(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixels):
        return self.model.encode_image(pixels)


class TextTower(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, ids):
        return self.model.encode_text(ids)


def export_onnx(model, out):
    pixels = torch.randn(2, 3, 224, 224)
    ids = torch.zeros(2, 77, dtype=torch.int64)
    ids[:, 0], ids[:, 5] = 49406, 49407
    kw = dict(opset_version=17, do_constant_folding=True, dynamo=False)
    torch.onnx.export(ImageTower(model), (pixels,), os.path.join(out, "image.onnx"),
                      input_names=["pixels"], output_names=["embeds"],
                      dynamic_axes={"pixels": {0: "batch"}, "embeds": {0: "batch"}}, **kw)
    torch.onnx.export(TextTower(model), (ids,), os.path.join(out, "text.onnx"),
                      input_names=["ids"], output_names=["embeds"],
                      dynamic_axes={"ids": {0: "batch"}, "embeds": {0: "batch"}}, **kw)
    print(f"exported ONNX to {out}", file=sys.stderr)


def quantize_int8(out):
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        # The reduced-precision peer on CPUs without bf16 units: dynamic int8 (weights int8,
        # activations quantised per call), as onnxruntime documents it for transformers.
        quantize_dynamic(os.path.join(out, "image.onnx"), os.path.join(out, "image_int8.onnx"),
                         weight_type=QuantType.QInt8)
        print(f"quantized the image tower to int8 in {out}", file=sys.stderr)
    except ImportError:
        print("onnxruntime.quantization missing: no int8 row", file=sys.stderr)


class Server:
    def __init__(self, args):
        import open_clip
        from safetensors.torch import load_file

        torch.set_num_threads(args.threads)
        torch.set_num_interop_threads(1)
        self.threads = args.threads
        self.dir = args.dir
        self.models = {}
        for key, name in MODELS.items():
            path = os.path.join(args.dir, key, "open_clip_model.safetensors")
            if os.path.exists(path):
                model = open_clip.create_model(name, pretrained=None).eval()
                model.load_state_dict(load_file(path), strict=False)
                self.models[key] = model
        self.ort = {}
        self.faiss_index = None
        self.versions = {"torch": torch.__version__, "open_clip": open_clip.__version__}
        try:
            import onnxruntime as ort

            self.versions["onnxruntime"] = ort.__version__
            so = ort.SessionOptions()
            so.intra_op_num_threads = args.threads
            so.inter_op_num_threads = 1
            so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            for part in ("image", "text", "image_int8"):
                path = os.path.join(args.dir, "vit-b-32", f"{part}.onnx")
                if os.path.exists(path):
                    self.ort[part] = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        except ImportError:
            pass
        try:
            import faiss

            self.versions["faiss"] = faiss.__version__
            faiss.omp_set_num_threads(args.threads)
        except ImportError:
            pass
        ids_path = os.path.join(args.dir, "prompt_ids.npy")
        self.prompt_ids = np.load(ids_path).astype(np.int64) if os.path.exists(ids_path) else None
        # The reduced-precision peer users reach for: the model cast to bfloat16 (oneDNN uses the
        # CPU's bf16 / AMX units where it has them).
        self.bf16 = {}
        if "vit-b-32" in self.models:
            import copy

            self.bf16["vit-b-32"] = copy.deepcopy(self.models["vit-b-32"]).to(torch.bfloat16)
        self.family_ids = {}
        for key, name in (("siglip", "siglip_ids.npy"), ("cn", "cn_prompt_ids.npy")):
            path = os.path.join(args.dir, name)
            if os.path.exists(path):
                self.family_ids[key] = torch.from_numpy(np.load(path).astype(np.int64))
        siglip = os.path.join(args.dir, "siglip2-b-16")
        if os.path.exists(os.path.join(siglip, "model.safetensors")):
            import transformers
            from transformers import SiglipModel

            self.versions["transformers"] = transformers.__version__
            self.models["siglip2-b-16"] = SiglipModel.from_pretrained(siglip).float().eval()
        cn = os.path.join(args.dir, "cn-vit-b-16", "model.safetensors")
        if os.path.exists(cn):
            from cn_clip.clip.model import CLIP

            model = CLIP(**cn_clip_config()).eval()
            model.load_state_dict(load_file(cn), strict=False)
            self.models["cn-vit-b-16"] = model

    def pixels(self, batch, size):
        return torch.randn((batch, 3, size, size), generator=torch.Generator().manual_seed(batch))

    def run(self, cmd):
        engine, work, reps = cmd["engine"], cmd["workload"], int(cmd.get("reps", 1))
        if engine == "faiss":
            return self.faiss(cmd, reps)
        batch = int(cmd["batch"])
        if work == "cosine":
            return self.cosine(engine, batch)
        if work == "image" and engine == "torch_bf16":
            x, model = self.pixels(batch, 224).to(torch.bfloat16), self.bf16["vit-b-32"]
            fn = lambda: model.encode_image(x)
        elif work == "image" and engine == "ort_int8":
            sess, feed = self.ort["image_int8"], {"pixels": self.pixels(batch, 224).numpy()}
            fn = lambda: sess.run(None, feed)
        elif work == "image":
            model_key = cmd.get("model", "vit-b-32")
            size = 448 if model_key == "rn50x64" else 224
            x = self.pixels(batch, size)
            if engine == "torch":
                model = self.models[model_key]
                fn = lambda: model.encode_image(x)
            elif engine == "ort":
                sess, feed = self.ort["image"], {"pixels": x.numpy()}
                fn = lambda: sess.run(None, feed)
            else:
                raise ValueError(engine)
        elif work == "siglip_image":
            x, model = self.pixels(batch, 224), self.models["siglip2-b-16"]
            fn = lambda: model.get_image_features(pixel_values=x)
        elif work == "siglip_text":
            ids, model = self.family_ids["siglip"][:batch], self.models["siglip2-b-16"]
            fn = lambda: model.get_text_features(input_ids=ids)
        elif work == "cn_text":
            # cn_clip's encode_text masks [PAD] (id 0) itself.
            ids, model = self.family_ids["cn"][:batch], self.models["cn-vit-b-16"]
            fn = lambda: model.encode_text(ids)
        elif work == "text":
            ids = torch.from_numpy(self.prompt_ids[:batch].copy())
            if engine == "torch":
                model = self.models["vit-b-32"]
                fn = lambda: model.encode_text(ids)
            elif engine == "ort":
                sess, feed = self.ort["text"], {"ids": ids.numpy()}
                fn = lambda: sess.run(None, feed)
            else:
                raise ValueError(engine)
        else:
            raise ValueError(work)
        with torch.inference_mode():
            if not cmd.get("no_warmup"):
                fn()
            secs = []
            for _ in range(reps):
                t0 = time.perf_counter()
                fn()
                secs.append(time.perf_counter() - t0)
        return {"seconds": secs}

    def cosine(self, engine, batch):
        """Min per-image cosine of `engine`'s ViT-B/32 image embeddings to PyTorch f32's."""
        x = self.pixels(batch, 224)
        with torch.inference_mode():
            ref = self.models["vit-b-32"].encode_image(x).float()
            if engine == "torch_bf16":
                got = self.bf16["vit-b-32"].encode_image(x.to(torch.bfloat16)).float()
            elif engine == "ort_int8":
                got = torch.from_numpy(self.ort["image_int8"].run(None, {"pixels": x.numpy()})[0])
            elif engine == "ort":
                got = torch.from_numpy(self.ort["image"].run(None, {"pixels": x.numpy()})[0])
            else:
                raise ValueError(engine)
        cos = torch.nn.functional.cosine_similarity(got, ref, dim=1)
        return {"cosine": float(cos.min()), "seconds": []}

    def faiss(self, cmd, reps):
        import faiss

        n, dim, k = int(cmd["n"]), int(cmd["dim"]), int(cmd["k"])
        if self.faiss_index is None or self.faiss_index.ntotal != n:
            rng = np.random.default_rng(7)
            index = faiss.IndexFlatIP(dim)
            for start in range(0, n, 100_000):
                x = rng.standard_normal((min(100_000, n - start), dim), dtype=np.float32)
                x /= np.linalg.norm(x, axis=1, keepdims=True)
                index.add(x)
            self.faiss_index = index
        rng = np.random.default_rng(11)
        q = rng.standard_normal((reps + 1, dim), dtype=np.float32)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        self.faiss_index.search(q[:1], k)
        secs = []
        for i in range(1, reps + 1):
            t0 = time.perf_counter()
            self.faiss_index.search(q[i : i + 1], k)
            secs.append(time.perf_counter() - t0)
        return {"seconds": secs}


def serve(args):
    server = Server(args)
    print(json.dumps({"ready": True, "threads": args.threads, "versions": server.versions,
                      "models": sorted(server.models), "ort": sorted(server.ort)}), flush=True)
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            answer = server.run(json.loads(line))
        except Exception as e:  # report and keep serving
            answer = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(answer), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("prepare")
    a.add_argument("--out", required=True)
    a.add_argument("--rn50x64", action="store_true")
    a.add_argument("--regenerate", action="store_true")
    a.add_argument("--families", action="store_true")
    b = sub.add_parser("serve")
    b.add_argument("--dir", required=True)
    b.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    prepare(args) if args.cmd == "prepare" else serve(args)


if __name__ == "__main__":
    main()
