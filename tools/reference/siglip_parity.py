"""Reference embeddings and sigmoid probabilities for the clip-model SigLIP parity tests.

Builds tiny random SigLIP models (a v1-like one with open_clip's exact-GELU text tower and a
SigLIP 2-like one with the tanh-GELU text tower, as open_clip's ViT-B-16-SigLIP / -SigLIP2
configs say), saves each in both checkpoint namings and the outputs of the reference that
reads that naming:

- transformers naming (`model.safetensors` + `config.json`, `SiglipModel` as on
  `google/siglip*-…`): embeddings from `transformers.SiglipModel` (tanh-GELU in both towers,
  as the released configs say), probabilities `sigmoid(logits_per_image)`;
- open_clip naming (`open_clip_model.safetensors` + `open_clip_config.json`, image tower a timm
  `VisionTransformer` under `visual.trunk.*`, as on `timm/ViT-B-16-SigLIP2`): embeddings from
  `open_clip.CustomTextCLIP` (timm builds the image tower with exact GELU).

The key mapping between the two namings is checked here: the open_clip-named weights loaded
strictly into open_clip must give what transformers gives for the transformers-named weights
when transformers is told the same activations (max |diff| < 1e-5).

    $PY tools/reference/siglip_parity.py tiny                 # crates/clip-model/tests/fixtures/siglip_tiny/
    $PY tools/reference/siglip_parity.py full --model siglip2-b-16 --out DIR   # full size, not committed
"""

import argparse
import json
import math
import os

import numpy as np
import open_clip
import timm
import torch
from safetensors.torch import save_file
from timm.models import register_model
from timm.models.vision_transformer import _create_vision_transformer
from transformers import SiglipConfig, SiglipModel

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "crates", "clip-model", "tests", "fixtures",
                        "siglip_tiny")

# Tiny sizes: 4 heads of 16 in the image tower, 2 heads of 16 in the text tower (narrower than the
# embedding, so the text head's projection is exercised), 64 positions as in every SigLIP.
TINY_VISION = dict(image_size=32, patch_size=8, width=64, layers=2, heads=4, mlp_width=112)
TINY_TEXT = dict(context_length=64, width=32, layers=2, heads=2, mlp_width=80)
VARIANTS = {
    # name: (vocab size, open_clip text activation: act_kwargs.approximate or None = exact)
    "v1": (1000, None),
    "v2": (1200, "tanh"),
}


@register_model
def vit_tiny_test_siglip(pretrained=False, **kwargs):
    """A tiny timm SigLIP image tower (same builder and defaults as vit_base_patch16_siglip_224)."""
    v = TINY_VISION
    args = dict(img_size=v["image_size"], patch_size=v["patch_size"], embed_dim=v["width"], depth=v["layers"],
                num_heads=v["heads"], mlp_ratio=v["mlp_width"] / v["width"], class_token=False, global_pool="map")
    return _create_vision_transformer("vit_tiny_test_siglip", pretrained=pretrained, **dict(args, **kwargs))


def hf_config(vocab, vision, text, vision_act="gelu_pytorch_tanh", text_act="gelu_pytorch_tanh"):
    return {
        "architectures": ["SiglipModel"],
        "model_type": "siglip",
        "vision_config": {
            "model_type": "siglip_vision_model",
            "hidden_size": vision["width"], "intermediate_size": vision["mlp_width"],
            "num_hidden_layers": vision["layers"], "num_attention_heads": vision["heads"],
            "image_size": vision["image_size"], "patch_size": vision["patch_size"],
            "hidden_act": vision_act, "layer_norm_eps": 1e-6,
        },
        "text_config": {
            "model_type": "siglip_text_model",
            "hidden_size": text["width"], "intermediate_size": text["mlp_width"],
            "num_hidden_layers": text["layers"], "num_attention_heads": text["heads"],
            "max_position_embeddings": text["context_length"], "vocab_size": vocab,
            "hidden_act": text_act, "layer_norm_eps": 1e-6, "projection_size": vision["width"],
            "pad_token_id": 1, "eos_token_id": 1, "bos_token_id": None,
        },
    }


def open_clip_config(vocab, text_approx, timm_name, vision, text):
    text_cfg = {
        "context_length": text["context_length"], "vocab_size": vocab, "width": text["width"],
        "heads": text["heads"], "layers": text["layers"], "mlp_ratio": text["mlp_width"] / text["width"],
        "no_causal_mask": True, "proj_bias": True, "pool_type": "last", "norm_kwargs": {"eps": 1e-6},
    }
    if text_approx:
        text_cfg["act_kwargs"] = {"approximate": text_approx}
    return {
        "embed_dim": vision["width"], "init_logit_bias": -10, "custom_text": True,
        # `head_width` is ignored by open_clip for timm towers and absent from the hub's SigLIP
        # configs (the Rust side then applies its head rule, which fits the released sizes but not
        # this tiny one): given here so the tiny model's 4 heads are read.
        "vision_cfg": {"image_size": vision["image_size"], "timm_model_name": timm_name,
                       "timm_model_pretrained": False, "timm_pool": "map", "timm_proj": "none",
                       "head_width": vision["width"] // vision["heads"]},
        "text_cfg": text_cfg,
    }


def build_hf(cfg_dict):
    c = SiglipConfig(text_config=cfg_dict["text_config"], vision_config=cfg_dict["vision_config"])
    return SiglipModel(c).eval()


def randomize(model, gen):
    """Every parameter random, biases and norms included (so a bias that is not loaded shows)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            leaf = name.split(".")[-1]
            parent = name.split(".")[-2] if "." in name else ""
            if name == "logit_scale":
                p.fill_(math.log(10.0))
            elif name == "logit_bias":
                p.fill_(-0.5)
            elif leaf == "weight" and ("norm" in parent):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            elif leaf == "bias" or "bias" in leaf:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif p.ndim >= 2 and "position" not in name and "probe" not in name:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(fan_in))
            else:
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))


def hf_to_open_clip(sd, vision_layers, text_layers):
    """transformers SiglipModel names -> open_clip CustomTextCLIP names (timm image tower)."""
    out = {}
    v, t = "vision_model", "text_model"
    out["visual.trunk.patch_embed.proj.weight"] = sd[f"{v}.embeddings.patch_embedding.weight"]
    out["visual.trunk.patch_embed.proj.bias"] = sd[f"{v}.embeddings.patch_embedding.bias"]
    out["visual.trunk.pos_embed"] = sd[f"{v}.embeddings.position_embedding.weight"].unsqueeze(0)
    for i in range(vision_layers):
        s, d = f"{v}.encoder.layers.{i}", f"visual.trunk.blocks.{i}"
        for k in ("weight", "bias"):
            out[f"{d}.attn.qkv.{k}"] = torch.cat([sd[f"{s}.self_attn.{q}_proj.{k}"] for q in "qkv"], 0)
            out[f"{d}.attn.proj.{k}"] = sd[f"{s}.self_attn.out_proj.{k}"]
            out[f"{d}.norm1.{k}"] = sd[f"{s}.layer_norm1.{k}"]
            out[f"{d}.norm2.{k}"] = sd[f"{s}.layer_norm2.{k}"]
            out[f"{d}.mlp.fc1.{k}"] = sd[f"{s}.mlp.fc1.{k}"]
            out[f"{d}.mlp.fc2.{k}"] = sd[f"{s}.mlp.fc2.{k}"]
    w = sd[f"{v}.head.attention.in_proj_weight"]
    b = sd[f"{v}.head.attention.in_proj_bias"]
    n = w.shape[1]
    out["visual.trunk.attn_pool.latent"] = sd[f"{v}.head.probe"]
    out["visual.trunk.attn_pool.q.weight"] = w[:n]
    out["visual.trunk.attn_pool.q.bias"] = b[:n]
    out["visual.trunk.attn_pool.kv.weight"] = w[n:]
    out["visual.trunk.attn_pool.kv.bias"] = b[n:]
    for k in ("weight", "bias"):
        out[f"visual.trunk.norm.{k}"] = sd[f"{v}.post_layernorm.{k}"]
        out[f"visual.trunk.attn_pool.proj.{k}"] = sd[f"{v}.head.attention.out_proj.{k}"]
        out[f"visual.trunk.attn_pool.norm.{k}"] = sd[f"{v}.head.layernorm.{k}"]
        out[f"visual.trunk.attn_pool.mlp.fc1.{k}"] = sd[f"{v}.head.mlp.fc1.{k}"]
        out[f"visual.trunk.attn_pool.mlp.fc2.{k}"] = sd[f"{v}.head.mlp.fc2.{k}"]
        out[f"text.ln_final.{k}"] = sd[f"{t}.final_layer_norm.{k}"]
        out[f"text.text_projection.{k}"] = sd[f"{t}.head.{k}"]
    out["text.token_embedding.weight"] = sd[f"{t}.embeddings.token_embedding.weight"]
    out["text.positional_embedding"] = sd[f"{t}.embeddings.position_embedding.weight"]
    for i in range(text_layers):
        s, d = f"{t}.encoder.layers.{i}", f"text.transformer.resblocks.{i}"
        out[f"{d}.attn.in_proj_weight"] = torch.cat([sd[f"{s}.self_attn.{q}_proj.weight"] for q in "qkv"], 0)
        out[f"{d}.attn.in_proj_bias"] = torch.cat([sd[f"{s}.self_attn.{q}_proj.bias"] for q in "qkv"], 0)
        for k in ("weight", "bias"):
            out[f"{d}.attn.out_proj.{k}"] = sd[f"{s}.self_attn.out_proj.{k}"]
            out[f"{d}.ln_1.{k}"] = sd[f"{s}.layer_norm1.{k}"]
            out[f"{d}.ln_2.{k}"] = sd[f"{s}.layer_norm2.{k}"]
            out[f"{d}.mlp.c_fc.{k}"] = sd[f"{s}.mlp.fc1.{k}"]
            out[f"{d}.mlp.c_proj.{k}"] = sd[f"{s}.mlp.fc2.{k}"]
    out["logit_scale"] = sd["logit_scale"].reshape(())
    out["logit_bias"] = sd["logit_bias"].reshape(())
    return {k: v.contiguous().clone() for k, v in out.items()}


def hf_state(model):
    return {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()
            if not k.endswith("position_ids")}


def inputs(image_size, vocab, n_images, gen):
    pixels = torch.randn((n_images, 3, image_size, image_size), generator=gen)
    rows = []
    # SigLIP rows: text ids, end-of-sequence (1), then padding to 64 (id 1 for v1, 0 for Gemma).
    for n in (1, 3, 10, 40, 63):
        body = torch.randint(2, vocab, (n,), generator=gen).tolist()
        rows.append((body + [1] + [0] * 64)[:64])
    return pixels, torch.tensor(rows, dtype=torch.int64)


def hf_outputs(model, pixels, ids):
    def t(x):
        return x if isinstance(x, torch.Tensor) else x.pooler_output

    with torch.no_grad():
        img = t(model.get_image_features(pixel_values=pixels)).float()
        txt = t(model.get_text_features(input_ids=ids)).float()
        probs = torch.sigmoid(model(input_ids=ids, pixel_values=pixels).logits_per_image).float()
    return img, txt, probs


def open_clip_outputs(model, pixels, ids):
    with torch.no_grad():
        img = model.encode_image(pixels).float()
        txt = model.encode_text(ids).float()
        logits = (model.logit_scale.exp() * torch.nn.functional.normalize(img, dim=-1)
                  @ torch.nn.functional.normalize(txt, dim=-1).T + model.logit_bias)
    return img, txt, torch.sigmoid(logits).float()


def save_npy(path, a):
    np.save(path, np.ascontiguousarray(a))


def tiny():
    os.makedirs(FIXTURES, exist_ok=True)
    pixels, ids = None, None
    for name, (vocab, text_approx) in VARIANTS.items():
        gen = torch.Generator().manual_seed(2024 if name == "v1" else 2025)
        hf_cfg = hf_config(vocab, TINY_VISION, TINY_TEXT)
        model = build_hf(hf_cfg)
        randomize(model, gen)
        if pixels is None:
            pixels, ids = inputs(TINY_VISION["image_size"], 1000, 4, torch.Generator().manual_seed(7))
        sd = hf_state(model)
        img, txt, probs = hf_outputs(model, pixels, ids)

        # open_clip naming: the same weights, open_clip's model and activations.
        oc_cfg = open_clip_config(vocab, text_approx, "vit_tiny_test_siglip", TINY_VISION, TINY_TEXT)
        oc = open_clip.model.CustomTextCLIP(
            embed_dim=oc_cfg["embed_dim"], vision_cfg=open_clip.model.CLIPVisionCfg(**oc_cfg["vision_cfg"]),
            text_cfg=open_clip.model.CLIPTextCfg(**oc_cfg["text_cfg"]), init_logit_bias=-10).eval()
        oc_sd = hf_to_open_clip(sd, TINY_VISION["layers"], TINY_TEXT["layers"])
        missing, unexpected = oc.load_state_dict(oc_sd, strict=True), None
        assert not missing.missing_keys and not missing.unexpected_keys, missing
        oimg, otxt, oprobs = open_clip_outputs(oc, pixels, ids)

        # The mapping check: transformers with open_clip's activations computes what open_clip does.
        check = build_hf(hf_config(vocab, TINY_VISION, TINY_TEXT, vision_act="gelu",
                                   text_act="gelu_pytorch_tanh" if text_approx else "gelu"))
        check.load_state_dict(model.state_dict())
        cimg, ctxt, cprobs = hf_outputs(check, pixels, ids)
        for label, a, b in (("image", cimg, oimg), ("text", ctxt, otxt), ("probs", cprobs, oprobs)):
            d = (a - b).abs().max().item()
            print(f"{name}: transformers (open_clip's activations) vs open_clip {label}: max|diff| {d:.2e}")
            assert d < 1e-5, f"{name}: the open_clip key mapping does not reproduce transformers ({label})"
        # And the activation matters: transformers' tanh-GELU image tower differs from timm's.
        assert (img - oimg).abs().max() > 1e-4, "tanh and exact GELU should differ"

        hf_dir = os.path.join(FIXTURES, name, "hf")
        oc_dir = os.path.join(FIXTURES, name, "open_clip")
        for d in (hf_dir, oc_dir):
            os.makedirs(d, exist_ok=True)
        save_file(sd, os.path.join(hf_dir, "model.safetensors"))
        with open(os.path.join(hf_dir, "config.json"), "w") as f:
            json.dump(hf_cfg, f, indent=2)
        save_file(oc_sd, os.path.join(oc_dir, "open_clip_model.safetensors"))
        with open(os.path.join(oc_dir, "open_clip_config.json"), "w") as f:
            json.dump({"model_cfg": oc_cfg, "preprocess_cfg": {
                "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "interpolation": "bicubic",
                "resize_mode": "squash"}}, f, indent=2)
        for d, (a, b, c) in ((hf_dir, (img, txt, probs)), (oc_dir, (oimg, otxt, oprobs))):
            save_npy(os.path.join(d, "image_embeds.npy"), a.numpy())
            save_npy(os.path.join(d, "text_embeds.npy"), b.numpy())
            save_npy(os.path.join(d, "probs.npy"), c.numpy())
        with open(os.path.join(FIXTURES, name, "logits.json"), "w") as f:
            json.dump({"logit_scale_exp": float(model.logit_scale.exp().item()),
                       "logit_bias": float(model.logit_bias.item())}, f)
        print(f"wrote {name}: image {tuple(img.shape)}, text {tuple(txt.shape)}, probs {tuple(probs.shape)}")
    save_npy(os.path.join(FIXTURES, "pixels.npy"), pixels.numpy().astype(np.float32))
    save_npy(os.path.join(FIXTURES, "token_ids.npy"), ids.numpy().astype(np.int64))


# Full-size random models (transformers naming), for the on-demand parity run.
FULL = {
    # name: (vision width, layers, heads, mlp, patch, image, text width, layers, heads, mlp, vocab)
    "siglip2-b-16": (768, 12, 12, 3072, 16, 224, 768, 12, 12, 3072, 256000),
    "siglip-b-16": (768, 12, 12, 3072, 16, 224, 768, 12, 12, 3072, 32000),
    "siglip2-so400m-14": (1152, 27, 16, 4304, 14, 384, 1152, 27, 16, 4304, 256000),
}


def full(name, out):
    vw, vl, vh, vm, p, s, tw, tl, th, tm, vocab = FULL[name]
    vision = dict(image_size=s, patch_size=p, width=vw, layers=vl, heads=vh, mlp_width=vm)
    text = dict(context_length=64, width=tw, layers=tl, heads=th, mlp_width=tm)
    cfg = hf_config(vocab, vision, text)
    model = build_hf(cfg)
    randomize(model, torch.Generator().manual_seed(11))
    pixels, ids = inputs(s, vocab, 2, torch.Generator().manual_seed(7))
    img, txt, probs = hf_outputs(model, pixels, ids)
    os.makedirs(out, exist_ok=True)
    save_file(hf_state(model), os.path.join(out, "model.safetensors"))
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    save_npy(os.path.join(out, "pixels.npy"), pixels.numpy().astype(np.float32))
    save_npy(os.path.join(out, "token_ids.npy"), ids.numpy().astype(np.int64))
    save_npy(os.path.join(out, "image_embeds.npy"), img.numpy())
    save_npy(os.path.join(out, "text_embeds.npy"), txt.numpy())
    save_npy(os.path.join(out, "probs.npy"), probs.numpy())
    from timing import write_tower_timing
    write_tower_timing(out, lambda: model.get_image_features(pixel_values=pixels),
                       lambda: model.get_text_features(input_ids=ids))
    print(f"wrote {out}: {name} image {tuple(img.shape)}, text {tuple(txt.shape)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("tiny")
    f = sub.add_parser("full")
    f.add_argument("--model", choices=sorted(FULL), default="siglip2-b-16")
    f.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    if a.cmd == "tiny":
        tiny()
    else:
        full(a.model, a.out)


if __name__ == "__main__":
    main()
