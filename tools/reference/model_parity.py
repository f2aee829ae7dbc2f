"""Reference embeddings from open_clip for the clip-model parity tests.

Builds random open_clip ViT CLIP models, saves their weights as safetensors in both checkpoint
namings (open_clip's `visual.conv1.weight`, … and Hugging Face transformers' `vision_model.…`),
and saves the embeddings open_clip computes for fixed random pixel tensors (already normalised, so
preprocessing plays no part) and fixed token-id rows of different lengths.

The transformers naming is produced by the key mapping below and checked by loading it into
`transformers.CLIPModel` (strictly) and comparing its embeddings with open_clip's.

    # the committed tiny fixtures (crates/clip-model/tests/fixtures/vit_tiny/)
    $PY tools/reference/model_parity.py tiny
    # tiny models with the head widths of the large open_clip ViTs, both activations
    # (crates/clip-model/tests/fixtures/vit_heads/)
    $PY tools/reference/model_parity.py heads
    # a full-size random model into DIR (used by `cargo xtask parity`; not committed)
    $PY tools/reference/model_parity.py full --model vit-b-32 --out DIR
"""

import argparse
import json
import math
import os
import sys

import numpy as np
import open_clip
import torch
from safetensors.torch import save_file

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "crates", "clip-model", "tests", "fixtures", "vit_tiny")

# The committed tiny model: small widths with several heads (so head splitting is exercised),
# a small vocabulary (the token embedding dominates the file size). Its end-of-text id is
# vocab_size - 1, the largest id, as in OpenAI's vocabulary.
TINY = {
    "embed_dim": 32,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 1000, "width": 32, "heads": 2, "layers": 2},
}

FULL = {
    "vit-b-32": "ViT-B-32-quickgelu",
    "vit-b-16": "ViT-B-16-quickgelu",
    "vit-l-14": "ViT-L-14-quickgelu",
    # DFN5B's architecture: 1280 wide, 16 heads of 80 (the rule the Rust side applies without a
    # config file), QuickGELU.
    "vit-h-14": "ViT-H-14-quickgelu",
}

# Tiny models with the head widths of ViT-H/14 (80) and ViT-bigG/14 (104): two heads each, one
# block, MLP ratio 2 (as small as the file-size budget allows), and a preprocess_cfg that squashes
# (DFN5B's) so the config reader is exercised too.
HEADS = {
    "h80": {"width": 160, "head_width": 80},
    "h104": {"width": 208, "head_width": 104},
}
HEADS_FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "crates", "clip-model", "tests", "fixtures",
                              "vit_heads")

# Lengths of the token rows (end-of-text at index length - 1); 77 fills the whole context.
TEXT_LENGTHS = [2, 5, 17, 40, 77]


def randomize(model, gen):
    """Replaces every parameter by random values, biases and norms included (open_clip's own
    initialisation leaves biases at zero, which would not test that they are loaded)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "logit_scale":
                p.fill_(math.log(1 / 0.07) + 0.25)
            elif name.endswith("weight") and ("ln" in name.split(".")[-2]):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif p.ndim >= 2 and not name.endswith("positional_embedding"):
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(fan_in))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))


def open_clip_state(model):
    return {k: v.detach().contiguous().clone() for k, v in model.state_dict().items() if k != "attn_mask"}


def hf_state(sd, vision_layers, text_layers):
    """open_clip / OpenAI names -> Hugging Face transformers CLIPModel names."""
    out = {}

    def block(src, dst, i):
        p = f"{src}.{i}"
        q = f"{dst}.{i}"
        for kind in ("weight", "bias"):
            w = sd[f"{p}.attn.in_proj_{kind}"]
            qw, kw, vw = w.chunk(3, dim=0)
            out[f"{q}.self_attn.q_proj.{kind}"] = qw.contiguous()
            out[f"{q}.self_attn.k_proj.{kind}"] = kw.contiguous()
            out[f"{q}.self_attn.v_proj.{kind}"] = vw.contiguous()
            out[f"{q}.self_attn.out_proj.{kind}"] = sd[f"{p}.attn.out_proj.{kind}"]
            out[f"{q}.layer_norm1.{kind}"] = sd[f"{p}.ln_1.{kind}"]
            out[f"{q}.layer_norm2.{kind}"] = sd[f"{p}.ln_2.{kind}"]
            out[f"{q}.mlp.fc1.{kind}"] = sd[f"{p}.mlp.c_fc.{kind}"]
            out[f"{q}.mlp.fc2.{kind}"] = sd[f"{p}.mlp.c_proj.{kind}"]

    out["vision_model.embeddings.patch_embedding.weight"] = sd["visual.conv1.weight"]
    out["vision_model.embeddings.class_embedding"] = sd["visual.class_embedding"]
    out["vision_model.embeddings.position_embedding.weight"] = sd["visual.positional_embedding"]
    for kind in ("weight", "bias"):
        out[f"vision_model.pre_layrnorm.{kind}"] = sd[f"visual.ln_pre.{kind}"]
        out[f"vision_model.post_layernorm.{kind}"] = sd[f"visual.ln_post.{kind}"]
        out[f"text_model.final_layer_norm.{kind}"] = sd[f"ln_final.{kind}"]
    for i in range(vision_layers):
        block("visual.transformer.resblocks", "vision_model.encoder.layers", i)
    for i in range(text_layers):
        block("transformer.resblocks", "text_model.encoder.layers", i)
    out["visual_projection.weight"] = sd["visual.proj"].t().contiguous()
    out["text_model.embeddings.token_embedding.weight"] = sd["token_embedding.weight"]
    out["text_model.embeddings.position_embedding.weight"] = sd["positional_embedding"]
    out["text_projection.weight"] = sd["text_projection"].t().contiguous()
    out["logit_scale"] = sd["logit_scale"]
    # q, k, v split: four more tensors per block.
    assert len(out) == len(sd) + 4 * (vision_layers + text_layers), (len(out), len(sd))
    return out


def hf_config(cfg):
    v, t = cfg["vision_cfg"], cfg["text_cfg"]
    act = "quick_gelu" if cfg.get("quick_gelu") else "gelu"
    vw = v["width"]
    tw = t["width"]
    return {
        "architectures": ["CLIPModel"],
        "model_type": "clip",
        "projection_dim": cfg["embed_dim"],
        "logit_scale_init_value": 2.6592,
        "vision_config": {
            "hidden_size": vw,
            "intermediate_size": int(vw * v.get("mlp_ratio", 4.0)),
            "num_hidden_layers": v["layers"],
            "num_attention_heads": vw // v.get("head_width", 64),
            "image_size": v["image_size"],
            "patch_size": v["patch_size"],
            "hidden_act": act,
            "projection_dim": cfg["embed_dim"],
        },
        "text_config": {
            "hidden_size": tw,
            "intermediate_size": int(tw * t.get("mlp_ratio", 4.0)),
            "num_hidden_layers": t["layers"],
            "num_attention_heads": t["heads"],
            "max_position_embeddings": t["context_length"],
            "vocab_size": t["vocab_size"],
            "hidden_act": act,
            "projection_dim": cfg["embed_dim"],
            "bos_token_id": t["vocab_size"] - 2,
            "eos_token_id": t["vocab_size"] - 1,
            "pad_token_id": 0,
        },
    }


def inputs(image_size, vocab_size, context_length, n_images, gen):
    pixels = torch.randn((n_images, 3, image_size, image_size), generator=gen)
    sot, eot = vocab_size - 2, vocab_size - 1
    rows = []
    for n in TEXT_LENGTHS:
        n = min(n, context_length)
        body = torch.randint(1, vocab_size - 2, (n - 2,), generator=gen).tolist()
        row = [sot] + body + [eot]
        rows.append(row + [0] * (context_length - n))
    return pixels, torch.tensor(rows, dtype=torch.int64)


def embed(model, pixels, ids):
    with torch.no_grad():
        return model.encode_image(pixels).float(), model.encode_text(ids).float()


def check_hf(hf_sd, cfg, pixels, ids, image_ref, text_ref):
    """Loads the transformers-named weights into transformers.CLIPModel and compares."""
    try:
        from transformers import CLIPConfig, CLIPModel
    except ImportError:
        print("transformers not installed: the HF key mapping is not cross-checked", file=sys.stderr)
        return
    hc = CLIPConfig(text_config=hf_config(cfg)["text_config"], vision_config=hf_config(cfg)["vision_config"],
                    projection_dim=cfg["embed_dim"])
    model = CLIPModel(hc).eval()
    missing, unexpected = model.load_state_dict(hf_sd, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    assert not missing and not unexpected, (missing, unexpected)

    def tensor(x):
        return x if isinstance(x, torch.Tensor) else x.pooler_output

    with torch.no_grad():
        img = tensor(model.get_image_features(pixel_values=pixels))
        txt = tensor(model.get_text_features(input_ids=ids))
    di = (img - image_ref).abs().max().item()
    dt = (txt - text_ref).abs().max().item()
    print(f"transformers.CLIPModel vs open_clip: image max|diff| {di:.2e}, text max|diff| {dt:.2e}")
    assert di < 1e-4 and dt < 1e-4, "the transformers key mapping does not reproduce open_clip"


def build(cfg, seed):
    model = open_clip.model.CLIP(
        embed_dim=cfg["embed_dim"],
        vision_cfg=open_clip.model.CLIPVisionCfg(**cfg["vision_cfg"]),
        text_cfg=open_clip.model.CLIPTextCfg(**cfg["text_cfg"]),
        quick_gelu=cfg.get("quick_gelu", False),
    ).eval()
    gen = torch.Generator().manual_seed(seed)
    randomize(model, gen)
    return model


def save_npy(path, a):
    np.save(path, np.ascontiguousarray(a))


def tiny():
    os.makedirs(FIXTURES, exist_ok=True)
    cfg = TINY
    model = build(cfg, seed=1234)
    sd = open_clip_state(model)
    v, t = cfg["vision_cfg"], cfg["text_cfg"]
    pixels, ids = inputs(v["image_size"], t["vocab_size"], t["context_length"], 4, torch.Generator().manual_seed(99))
    image, text = embed(model, pixels, ids)

    # The same weights with exact GELU: only the config file differs.
    gelu_cfg = dict(cfg, quick_gelu=False)
    gelu = build(gelu_cfg, seed=0)
    missing, unexpected = gelu.load_state_dict(sd, strict=False)
    assert not unexpected and all(k == "attn_mask" for k in missing), (missing, unexpected)
    image_g, text_g = embed(gelu.eval(), pixels, ids)
    assert (image_g - image).abs().max() > 1e-3, "GELU and QuickGELU should differ"

    oc_dir = os.path.join(FIXTURES, "open_clip")
    hf_dir = os.path.join(FIXTURES, "hf")
    gelu_dir = os.path.join(FIXTURES, "gelu")
    for d in (oc_dir, hf_dir, gelu_dir):
        os.makedirs(d, exist_ok=True)
    save_file(sd, os.path.join(oc_dir, "open_clip_model.safetensors"))
    with open(os.path.join(oc_dir, "open_clip_config.json"), "w") as f:
        json.dump({"model_cfg": cfg}, f, indent=2)
    hf_sd = hf_state(sd, v["layers"], t["layers"])
    check_hf(hf_sd, cfg, pixels, ids, image, text)
    save_file(hf_sd, os.path.join(hf_dir, "model.safetensors"))
    with open(os.path.join(hf_dir, "config.json"), "w") as f:
        json.dump(hf_config(cfg), f, indent=2)
    with open(os.path.join(gelu_dir, "open_clip_config.json"), "w") as f:
        json.dump({"model_cfg": gelu_cfg}, f, indent=2)

    save_npy(os.path.join(FIXTURES, "pixels.npy"), pixels.numpy().astype(np.float32))
    save_npy(os.path.join(FIXTURES, "token_ids.npy"), ids.numpy().astype(np.int64))
    save_npy(os.path.join(FIXTURES, "image_embeds.npy"), image.numpy())
    save_npy(os.path.join(FIXTURES, "text_embeds.npy"), text.numpy())
    save_npy(os.path.join(gelu_dir, "image_embeds.npy"), image_g.numpy())
    save_npy(os.path.join(gelu_dir, "text_embeds.npy"), text_g.numpy())
    with open(os.path.join(FIXTURES, "logit_scale.json"), "w") as f:
        json.dump({"logit_scale_exp": float(model.logit_scale.exp().item())}, f)
    print(f"wrote {FIXTURES}: image {tuple(image.shape)}, text {tuple(text.shape)}")


def heads():
    """For each head width, one set of weights and the embeddings with QuickGELU and with GELU;
    the activation is only in the config file, as on the hub."""
    os.makedirs(HEADS_FIXTURES, exist_ok=True)
    pixels = None
    for name, h in HEADS.items():
        cfg = {
            "embed_dim": 24,
            "quick_gelu": True,
            "vision_cfg": {"image_size": 32, "layers": 1, "width": h["width"], "head_width": h["head_width"],
                           "patch_size": 8, "mlp_ratio": 2.0},
            "text_cfg": {"context_length": 77, "vocab_size": 500, "width": 32, "heads": 2, "layers": 1},
        }
        v, t = cfg["vision_cfg"], cfg["text_cfg"]
        if pixels is None:
            pixels, ids = inputs(v["image_size"], t["vocab_size"], t["context_length"], 3,
                                 torch.Generator().manual_seed(5))
        model = build(cfg, seed=31 if name == "h80" else 32)
        assert model.visual.transformer.resblocks[0].attn.num_heads == 2
        sd = open_clip_state(model)
        out = os.path.join(HEADS_FIXTURES, name)
        os.makedirs(out, exist_ok=True)
        save_file(sd, os.path.join(out, "open_clip_model.safetensors"))
        for act, quick in (("quickgelu", True), ("gelu", False)):
            c = dict(cfg, quick_gelu=quick)
            m = build(c, seed=0)
            missing, unexpected = m.load_state_dict(sd, strict=False)
            assert not unexpected and all(k == "attn_mask" for k in missing), (missing, unexpected)
            image, text = embed(m.eval(), pixels, ids)
            d = os.path.join(out, act)
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, "open_clip_config.json"), "w") as f:
                json.dump({"model_cfg": c, "preprocess_cfg": {
                    "mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711],
                    "interpolation": "bicubic", "resize_mode": "squash"}}, f, indent=2)
            save_npy(os.path.join(d, "image_embeds.npy"), image.numpy())
            save_npy(os.path.join(d, "text_embeds.npy"), text.numpy())
            print(f"{name} {act}: image {tuple(image.shape)} text {tuple(text.shape)}")
    save_npy(os.path.join(HEADS_FIXTURES, "pixels.npy"), pixels.numpy().astype(np.float32))
    save_npy(os.path.join(HEADS_FIXTURES, "token_ids.npy"), ids.numpy().astype(np.int64))


def end_to_end(model, name, images, texts):
    """Normalised embeddings through open_clip's own pipeline: PIL image -> its OpenAI
    preprocessing transform, text -> open_clip.tokenize."""
    from PIL import Image

    _, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=None)
    with torch.no_grad():
        img = []
        for path in images:
            with Image.open(path) as im:
                img.append(preprocess(im))
        image = model.encode_image(torch.stack(img), normalize=True).float() if img else torch.zeros((0, 1))
        text = (model.encode_text(open_clip.tokenize(texts), normalize=True).float()
                if texts else torch.zeros((0, 1)))
    return {"images": images, "texts": texts, "image_embeds": image.tolist(), "text_embeds": text.tolist()}


def full(name, out, images=(), texts=()):
    os.makedirs(out, exist_ok=True)
    model = open_clip.create_model(FULL[name], pretrained=None).eval()
    randomize(model, torch.Generator().manual_seed(7))
    cfg = open_clip.get_model_config(FULL[name])
    v, t = cfg["vision_cfg"], cfg["text_cfg"]
    pixels, ids = inputs(v["image_size"], t.get("vocab_size", 49408), t.get("context_length", 77), 4,
                         torch.Generator().manual_seed(99))
    image, text = embed(model, pixels, ids)
    sd = open_clip_state(model)
    # No config file: the Rust side must infer everything (heads = width / 64, QuickGELU).
    save_file(sd, os.path.join(out, "open_clip_model.safetensors"))
    save_npy(os.path.join(out, "pixels.npy"), pixels.numpy().astype(np.float32))
    save_npy(os.path.join(out, "token_ids.npy"), ids.numpy().astype(np.int64))
    save_npy(os.path.join(out, "image_embeds.npy"), image.numpy())
    save_npy(os.path.join(out, "text_embeds.npy"), text.numpy())
    from timing import write_tower_timing
    write_tower_timing(out, lambda: model.encode_image(pixels), lambda: model.encode_text(ids))
    if images or texts:
        with open(os.path.join(out, "end_to_end.json"), "w") as f:
            json.dump(end_to_end(model, FULL[name], list(images), list(texts)), f)
    print(f"wrote {out}: {FULL[name]} image {tuple(image.shape)}, text {tuple(text.shape)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("tiny")
    sub.add_parser("heads")
    f = sub.add_parser("full")
    f.add_argument("--model", choices=sorted(FULL), default="vit-b-32")
    f.add_argument("--out", required=True)
    f.add_argument("--image", action="append", default=[], help="also embed this image end to end")
    f.add_argument("--text", action="append", default=[], help="also embed this text end to end")
    a = ap.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    if a.cmd == "tiny":
        tiny()
    elif a.cmd == "heads":
        heads()
    else:
        full(a.model, a.out, a.image, a.text)


if __name__ == "__main__":
    main()
