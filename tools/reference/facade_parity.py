"""End-to-end reference cases for the `clip` facade: image files and label texts in, the reference
library's own preprocessing, tokenizer and model out, for two model families.

Writes `crates/clip/tests/fixtures/families/`:

- `siglip2/`: a tiny random SigLIP 2-flavoured `transformers.SiglipModel` (tanh-GELU in both towers,
  layer-norm eps 1e-6, 64 text positions; image 64 px in 16 px patches; text width 32 projected to
  the image tower's 64; logit scale 10, logit bias -0.5) whose text `vocab_size` is the size of the
  committed Gemma-style BPE `crates/clip-model/tests/fixtures/sentencepiece/siglip2_tokenizer.json`
  (added tokens included), copied here as `tokenizer.json`. `model.safetensors` + `config.json` by
  `save_pretrained` (float16 values), a transformers `preprocessor_config.json` (squash to 64x64,
  bicubic, mean = std = 0.5, rescale 1/255, no centre crop). Reference: the photos opened by Pillow (`.convert("RGB")`),
  preprocessed by transformers' PIL-backend `SiglipImageProcessorPil` (`backend="pil"`, the slow
  processor) read from that `preprocessor_config.json`; the labels tokenized by transformers'
  `Siglip2Tokenizer` on `tokenizer.json` (it lower-cases; right padding with `<pad>` to 64, longer
  texts cut, as `sentencepiece_tokenizer.py` runs it); embeddings from the model reloaded from the
  float16 file as float32 (`get_image_features` / `get_text_features` on the ids alone, no attention
  mask, as SigLIP is run), L2-normalised; `probs = sigmoid(logit_scale.exp() * cos + logit_bias)`.
- `cn_clip/`: a tiny random Chinese-CLIP (ViT image tower with 4 heads of 16, BERT with 2 heads of 16,
  as `cn_clip_parity.py models`, image 64 px) with cn_clip's full 21,128-token vocabulary, in cn_clip
  naming (`model.safetensors`, float16 values, `bert.pooler` dropped) with the cn_clip model
  `config.json`. Reference: cn_clip 1.6.0's `image_transform(64)` on the same photos,
  `cn_clip.clip.tokenize(labels, context_length=52)`, `CLIP.encode_image` / `encode_text` of the
  model reloaded from the file, L2-normalised; `probs = softmax(logit_scale.exp() * cos)` over the
  labels, per image (logit scale 1/0.07). Zero-shot case, by cn_clip's own
  `eval/zeroshot_evaluation.py` on the same reloaded model (CPU): `zs_classnames.json` (the first 10
  Chinese ImageNet class names of `eval/imagenet_zeroshot_templates.py`), `zs_templates.json` (all 80 of
  its `openai_imagenet_template` lambdas called with "{}"; both checked equal to
  `crates/clip-eval/data/cn_clip_imagenet_classes_templates.json`), `zs_classifier.npy` (float32
  [10, D]: `zero_shot_classifier`'s [D, 10] columns, transposed), `zs_logits.npy` (float32 [3, 10]:
  `100.0 * image_embeds @ classifier`, the fixed scale of its `run`) and `zs_probs.npy` (float32 [3, 10]:
  `run`'s softmax of those logits over the 10 classes, from the pixels). The zero-shot numbers are
  printed, not added to `report.json`.

The random values are sharpened (larger attention logits, see `sharpen_siglip` / `sharpen_cn_clip`):
otherwise tiny random towers give every label nearly the same embedding (cos > 0.999), and a
tokenizer or preprocessing mistake would hardly show in the outputs.

Each family folder holds `labels.json`, `pixels.npy` (float32 [3, 3, S, S], photos in the order
chelsea, coffee, rocket), `token_ids.npy` (int64 [labels, context]), `image_embeds.npy` (float32 [3, D]),
`text_embeds.npy` (float32 [labels, D]) and `probs.npy` (float32 [3, labels]). `report.json` at the root
gives versions, shapes, how the processors' pixels relate to Pillow's 8-bit resize, and per family the
max |diff| between the in-memory float16-rounded model and the one reloaded from the written files.

    $PY tools/reference/facade_parity.py   # crates/clip/tests/fixtures/families/
"""

import importlib.metadata
import json
import math
import os
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import cn_clip_parity  # noqa: E402  (tiny cn_clip model builder, safetensors writer)
import siglip_parity  # noqa: E402  (tiny SigLIP config and randomisation)

ROOT = HERE.parents[1]
OUT = ROOT / "crates/clip/tests/fixtures/families"
PHOTOS = [ROOT / "examples/photos" / n for n in ("chelsea.png", "coffee.png", "rocket.jpg")]
SIGLIP2_TOKENIZER = ROOT / "crates/clip-model/tests/fixtures/sentencepiece/siglip2_tokenizer.json"

IMAGE_SIZE = 64
SIGLIP_CONTEXT = 64
SIGLIP_VISION = dict(image_size=IMAGE_SIZE, patch_size=16, width=64, layers=2, heads=4, mlp_width=112)
SIGLIP_TEXT = dict(context_length=SIGLIP_CONTEXT, width=32, layers=2, heads=2, mlp_width=80)
SIGLIP_LABELS = [
    "a photo of a cat",
    "咖啡",
    "a rocket on a launch pad",
    "一只猫",
    "Coffee in a Cup",  # capitals: Siglip2Tokenizer lower-cases
    "a very long description of a photograph showing a small grey and brown tabby cat sitting on a "
    "wooden floor next to a cup of hot black coffee while a white rocket lifts off from its launch "
    "pad far away in the background under a clear blue sky on a sunny summer afternoon",
]

CN_VOCAB = 21128  # cn_clip's vocab.txt (RoBERTa-wwm-ext / BERT Chinese)
CN_CONTEXT = 52
CN_VISION = dict(cn_clip_parity.VIT, image_resolution=IMAGE_SIZE)
CN_LABELS = ["猫", "一杯咖啡", "火箭", "狗", "一只猫的照片", "汽车"]
CN_ZS_CLASSES = 10  # first Chinese ImageNet class names in the zero-shot case
CN_EVAL_DATA = ROOT / "crates/clip-eval/data/cn_clip_imagenet_classes_templates.json"


def save_npy(path, a):
    np.save(path, np.ascontiguousarray(a))


def max_abs(a, b):
    return float((torch.as_tensor(a).double() - torch.as_tensor(b).double()).abs().max())


def normalize(x):
    return torch.nn.functional.normalize(x.float(), dim=-1)


def load_photos():
    from PIL import Image
    return [Image.open(p).convert("RGB") for p in PHOTOS]


def pil_u8_resized(images, resample):
    """Pillow's own 8-bit resize of each photo to IMAGE_SIZE (what both processors start from)."""
    from PIL import Image
    return [np.asarray(im.resize((IMAGE_SIZE, IMAGE_SIZE), resample=Image.Resampling(resample)))
            for im in images]


def write_labels(d, labels):
    (d / "labels.json").write_text(json.dumps(labels, ensure_ascii=False, indent=1) + "\n")


def round_to_half(model):
    """Every float value rounded to float16, so the float16 file holds exactly what is computed with."""
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            if t.dtype.is_floating_point:
                t.copy_(t.half().float())


def off_diagonal_max(e):
    c = e @ e.T
    return float(c[~torch.eye(len(e), dtype=torch.bool)].max())


# ------------------------------------------------------------------------------------------- SigLIP 2

def sharpen_siglip(model):
    """Random tiny towers attend almost uniformly, and SigLIP pools the last position (a padding token
    for short labels), so every label would get nearly the same embedding (cos > 0.999). Sharper
    attention (queries and keys x4 in the text tower, x3 in the image tower), larger token embeddings
    (x4) and smaller text position embeddings (x0.3) make labels and photos distinguishable."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            text = name.startswith("text_model.")
            if name.endswith(("q_proj.weight", "k_proj.weight")) and ".encoder." in name:
                p.mul_(4.0 if text else 3.0)
            elif name == "text_model.embeddings.token_embedding.weight":
                p.mul_(4.0)
            elif name == "text_model.embeddings.position_embedding.weight":
                p.mul_(0.3)


def siglip2_tokenizer_vocab():
    from tokenizers import Tokenizer
    tk = Tokenizer.from_file(str(SIGLIP2_TOKENIZER))
    return tk.get_vocab_size(with_added_tokens=True), tk.get_vocab_size(with_added_tokens=False)


def siglip_features(model, pixels, ids):
    def t(x):
        return x if isinstance(x, torch.Tensor) else x.pooler_output

    with torch.no_grad():
        img = normalize(t(model.get_image_features(pixel_values=pixels)))
        txt = normalize(t(model.get_text_features(input_ids=ids)))
        probs = torch.sigmoid(model.logit_scale.exp() * img @ txt.T + model.logit_bias).float()
        forward = torch.sigmoid(model(input_ids=ids, pixel_values=pixels).logits_per_image).float()
    return img, txt, probs, forward


def siglip2(d, images):
    from transformers import AutoImageProcessor, Siglip2Tokenizer, SiglipModel

    d.mkdir(parents=True, exist_ok=True)
    vocab, model_vocab = siglip2_tokenizer_vocab()
    shutil.copyfile(SIGLIP2_TOKENIZER, d / "tokenizer.json")
    tok = Siglip2Tokenizer(tokenizer_file=str(d / "tokenizer.json"))
    assert tok.pad_token == "<pad>", tok.pad_token

    cfg = siglip_parity.hf_config(vocab, SIGLIP_VISION, SIGLIP_TEXT)
    # Gemma's special ids (pad 0, eos 1, bos 2), as the tokenizer file has them.
    cfg["text_config"].update(pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                              bos_token_id=tok.bos_token_id)
    model = siglip_parity.build_hf(cfg)
    siglip_parity.randomize(model, torch.Generator().manual_seed(2026))
    sharpen_siglip(model)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(10.0))
        model.logit_bias.fill_(-0.5)
        round_to_half(model)
    model.half().save_pretrained(str(d))
    model.float()

    pp = {
        "image_processor_type": "SiglipImageProcessor",
        "processor_class": "SiglipProcessor",
        "do_resize": True,
        "size": {"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        "resample": 3,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "do_convert_rgb": True,
    }
    (d / "preprocessor_config.json").write_text(json.dumps(pp, indent=2) + "\n")
    proc = AutoImageProcessor.from_pretrained(str(d), backend="pil")
    assert type(proc).__name__ == "SiglipImageProcessorPil", type(proc)
    pixels = proc(images=images, return_tensors="pt")["pixel_values"]
    assert pixels.dtype == torch.float32 and tuple(pixels.shape) == (3, 3, IMAGE_SIZE, IMAGE_SIZE)

    # How the PIL processor's pixels relate to Pillow's 8-bit resize: float64 u8 * (1/255) cast to
    # float32, then (x - 0.5) / 0.5 in float32.
    u8 = np.stack(pil_u8_resized(images, 3)).transpose(0, 3, 1, 2)
    manual = ((u8.astype(np.float64) * (1 / 255)).astype(np.float32) - np.float32(0.5)) / np.float32(0.5)
    pil_formula = max_abs(pixels, manual)
    fast = AutoImageProcessor.from_pretrained(str(d), backend="torchvision")
    fast_px = fast(images=images, return_tensors="pt")["pixel_values"]
    fast_vs_pil = max_abs(fast_px, pixels)

    lengths = [len(tok(s)["input_ids"]) for s in SIGLIP_LABELS]
    assert max(lengths) > SIGLIP_CONTEXT, lengths  # one label is truncated
    ids = torch.tensor(tok(SIGLIP_LABELS, padding="max_length", max_length=SIGLIP_CONTEXT, truncation=True,
                           padding_side="right")["input_ids"], dtype=torch.int64)
    assert int(ids.max()) < vocab
    upper = tok(["COFFEE IN A CUP"], padding="max_length", max_length=SIGLIP_CONTEXT, truncation=True,
                padding_side="right")["input_ids"][0]
    lower = tok(["coffee in a cup"], padding="max_length", max_length=SIGLIP_CONTEXT, truncation=True,
                padding_side="right")["input_ids"][0]
    lowercases = upper == lower

    ref = SiglipModel.from_pretrained(str(d), dtype=torch.float32).eval()
    img, txt, probs, forward = siglip_features(ref, pixels, ids)
    img0, txt0, probs0, _ = siglip_features(model.eval(), pixels, ids)
    assert max_abs(probs, forward) < 1e-5, "sigmoid(scale * cos + bias) differs from logits_per_image"
    assert off_diagonal_max(txt) < 0.95 and off_diagonal_max(img) < 0.95, "embeddings too alike"

    write_labels(d, SIGLIP_LABELS)
    save_npy(d / "pixels.npy", pixels.numpy().astype("<f4"))
    save_npy(d / "token_ids.npy", ids.numpy().astype("<i8"))
    save_npy(d / "image_embeds.npy", img.numpy().astype("<f4"))
    save_npy(d / "text_embeds.npy", txt.numpy().astype("<f4"))
    save_npy(d / "probs.npy", probs.numpy().astype("<f4"))
    return {
        "model": "transformers SiglipModel (SigLIP 2 flavour: gelu_pytorch_tanh, layer_norm_eps 1e-6)",
        "image_size": IMAGE_SIZE,
        "patch_size": SIGLIP_VISION["patch_size"],
        "context_length": SIGLIP_CONTEXT,
        "vocab_size": vocab,
        "tokenizer_model_vocab": model_vocab,
        "len_siglip2_tokenizer": len(tok),
        "pad_id": tok.pad_token_id,
        "padding_side": "right (Siglip2Tokenizer's default is left)",
        "label_lengths_unpadded": lengths,
        "tokenizer_lowercases": bool(lowercases),
        "logit_scale_exp": float(ref.logit_scale.detach().exp()),
        "logit_bias": float(ref.logit_bias.detach()),
        "pixels_pil_processor_vs_pillow_u8_formula_max_abs": pil_formula,
        "pixels_torchvision_processor_vs_pil_processor_max_abs": fast_vs_pil,
        "shapes": {"pixels": list(pixels.shape), "token_ids": list(ids.shape), "image_embeds": list(img.shape),
                   "text_embeds": list(txt.shape), "probs": list(probs.shape)},
        "in_memory_vs_reloaded_max_abs": {"image": max_abs(img, img0), "text": max_abs(txt, txt0),
                                          "probs": max_abs(probs, probs0)},
        "probs_range": [float(probs.min()), float(probs.max())],
        "max_cos_between_labels": off_diagonal_max(txt),
        "max_cos_between_photos": off_diagonal_max(img),
    }


# --------------------------------------------------------------------------------------- Chinese-CLIP

def sharpen_cn_clip(model):
    """cn_clip_parity's values (std 0.05 everywhere) leave every residual branch small, so all labels get
    the same text embedding (cos > 0.999): every matrix of the towers (not the embeddings or the final
    projections) rescaled to std 1/sqrt(fan_in), and queries and keys x3."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2 and "embedding" not in name and name not in ("visual.proj", "text_projection"):
                p.mul_((1 / math.sqrt(p[0].numel())) / p.std())
            if name.endswith(("attention.self.query.weight", "attention.self.key.weight")):
                p.mul_(3.0)
            elif name.startswith("visual.") and name.endswith("attn.in_proj_weight"):
                p[: 2 * p.shape[1]].mul_(3.0)


def build_cn_clip_full_vocab(seed):
    """cn_clip_parity's tiny ViT model, with the full vocabulary (its builder reads the module's BERT)."""
    saved = cn_clip_parity.BERT
    cn_clip_parity.BERT = dict(saved, vocab_size=CN_VOCAB)
    try:
        return cn_clip_parity.build_cn_clip(CN_VISION, seed)
    finally:
        cn_clip_parity.BERT = saved


def cn_features(model, pixels, ids):
    with torch.no_grad():
        img = normalize(model.encode_image(pixels))
        txt = normalize(model.encode_text(ids))
        probs = (model.logit_scale.exp() * img @ txt.T).softmax(dim=-1).float()
    return img, txt, probs


def import_cn_clip_zeroshot():
    """cn_clip's `eval/zeroshot_evaluation.py` (`zero_shot_classifier`, `run`). It imports the training
    code, which imports `lmdb` (not installed, see the README; only its LMDB data loaders use it): an
    empty stand-in module is registered for the import alone and removed again. Its `tqdm` progress bars
    are replaced by the identity (output only) and its `accuracy` (the top-1 count of `run`, not written)
    by a copy that also runs under numpy 2."""
    stub = None
    try:
        __import__("lmdb")
    except ImportError:
        stub = sys.modules["lmdb"] = types.ModuleType("lmdb")
    try:
        from cn_clip.eval import zeroshot_evaluation as zs
    finally:
        if stub is not None and sys.modules.get("lmdb") is stub:
            del sys.modules["lmdb"]
    zs.tqdm = lambda it: it

    def accuracy(output, target, topk=(1,)):
        # cn_clip's `accuracy` (used by `run` for its top-1 count only) with `.item()`: its
        # `float(array of shape [1])` is an error in numpy 2.
        pred = output.topk(max(topk), 1, True, True)[1].t()
        correct = pred.eq(target.view(1, -1).expand_as(pred))
        return [correct[:k].reshape(-1).float().sum().item() for k in topk]

    zs.accuracy = accuracy
    return zs


def cn_zero_shot(d, model, pixels, img):
    """A zero-shot classifier built by cn_clip's own `zero_shot_classifier` from the first CN_ZS_CLASSES
    Chinese ImageNet class names and all 80 templates of `eval/imagenet_zeroshot_templates.py`, on the
    reloaded model, on the CPU (`args.gpu = "cpu"` for its `.to(args.gpu)` calls); the photos' logits and
    probabilities by its `run` (`100.0 * image_features @ classifier`, then softmax over the classes)."""
    from cn_clip.eval import imagenet_zeroshot_templates as z

    zs = import_cn_clip_zeroshot()
    classnames = list(z.imagenet_classnames[:CN_ZS_CLASSES])
    template_fns = list(z.openai_imagenet_template)
    templates = [t("{}") for t in template_fns]
    # The templates are lambdas: "{}" substitution gives exactly what they return, and cn_clip's
    # `_preprocess_text` (lower-case, curly quotes to '"') leaves these prompts unchanged.
    for c in classnames:
        for f, t in zip(template_fns, templates):
            assert f(c) == t.replace("{}", c) == zs._preprocess_text(f(c)), (c, t)
    rust = json.loads(CN_EVAL_DATA.read_text())
    assert rust["classes"][:CN_ZS_CLASSES] == classnames, "class names differ from the Rust eval data"
    assert rust["templates"] == templates, "templates differ from the Rust eval data"

    args = types.SimpleNamespace(context_length=CN_CONTEXT, gpu="cpu")
    classifier = zs.zero_shot_classifier(model, classnames, template_fns, args)  # [embed_dim, classes]
    assert tuple(classifier.shape) == (img.shape[1], CN_ZS_CLASSES), classifier.shape
    with torch.no_grad():
        logits = 100.0 * img @ classifier
    _, probs = zs.run(model, classifier, [(pixels.clone(), torch.zeros(len(pixels), dtype=torch.long))], args)
    probs_vs_softmax = max_abs(probs, logits.softmax(dim=-1))
    assert probs_vs_softmax < 1e-6, probs_vs_softmax

    (d / "zs_classnames.json").write_text(json.dumps(classnames, ensure_ascii=False, indent=1) + "\n")
    (d / "zs_templates.json").write_text(json.dumps(templates, ensure_ascii=False, indent=1) + "\n")
    save_npy(d / "zs_classifier.npy", classifier.T.numpy().astype("<f4"))
    save_npy(d / "zs_logits.npy", logits.numpy().astype("<f4"))
    save_npy(d / "zs_probs.npy", probs.numpy().astype("<f4"))
    return {
        "classifier": "cn_clip.eval.zeroshot_evaluation.zero_shot_classifier, stored transposed",
        "logit_scale": 100.0,
        "templates_equal_rust_eval_data": True,
        "classnames_equal_rust_eval_data_first": CN_ZS_CLASSES,
        "run_probs_vs_softmax_of_logits_max_abs": probs_vs_softmax,
        "shapes": {"zs_classifier": list(classifier.T.shape), "zs_logits": list(logits.shape),
                   "zs_probs": list(probs.shape)},
        "argmax_per_photo": [int(i) for i in logits.argmax(dim=-1)],
        "max_cos_between_classes": off_diagonal_max(classifier.T),
    }


def cn_clip(d, images):
    from cn_clip.clip import tokenize
    from cn_clip.clip.model import CLIP
    from cn_clip.clip.utils import image_transform
    from safetensors.torch import load_file

    d.mkdir(parents=True, exist_ok=True)
    model, cfg = build_cn_clip_full_vocab(3)
    assert cfg["vocab_size"] == CN_VOCAB
    sharpen_cn_clip(model)
    round_to_half(model)
    cn_clip_parity.save_safetensors(d / "model.safetensors", cn_clip_parity.cn_state_dict(model))
    (d / "config.json").write_text(json.dumps(cfg, indent=1) + "\n")

    transform = image_transform(IMAGE_SIZE)
    pixels = torch.stack([transform(im) for im in images])
    # torchvision: Pillow's 8-bit resize, ToTensor (float32 / 255), Normalize in float32.
    u8 = np.stack(pil_u8_resized(images, 3)).transpose(0, 3, 1, 2)
    mean = torch.tensor((0.48145466, 0.4578275, 0.40821073)).view(1, 3, 1, 1)
    std = torch.tensor((0.26862954, 0.26130258, 0.27577711)).view(1, 3, 1, 1)
    manual = (torch.from_numpy(u8).float().div(255) - mean) / std
    formula = max_abs(pixels, manual)

    ids = tokenize(CN_LABELS, context_length=CN_CONTEXT)

    info = json.loads((d / "config.json").read_text())
    ref = CLIP(**info).eval()
    sd = {k: v.float() for k, v in load_file(str(d / "model.safetensors")).items()}
    missing, unexpected = ref.load_state_dict(sd, strict=False)
    assert not unexpected and all(k.startswith("bert.pooler") for k in missing), (missing, unexpected)
    img, txt, probs = cn_features(ref, pixels, ids)
    img0, txt0, probs0 = cn_features(model, pixels, ids)
    assert off_diagonal_max(txt) < 0.95 and off_diagonal_max(img) < 0.95, "embeddings too alike"

    write_labels(d, CN_LABELS)
    save_npy(d / "pixels.npy", pixels.numpy().astype("<f4"))
    save_npy(d / "token_ids.npy", ids.numpy().astype("<i8"))
    save_npy(d / "image_embeds.npy", img.numpy().astype("<f4"))
    save_npy(d / "text_embeds.npy", txt.numpy().astype("<f4"))
    save_npy(d / "probs.npy", probs.numpy().astype("<f4"))
    # Reported on stdout only: report.json keeps what it held before the zero-shot files were added.
    zero_shot = cn_zero_shot(d, ref, pixels, img)
    print(json.dumps({"cn_clip_zero_shot": zero_shot}, ensure_ascii=False, indent=1))
    return {
        "model": "cn_clip CLIP (ViT, BERT text tower)",
        "image_size": IMAGE_SIZE,
        "patch_size": CN_VISION["vision_patch_size"],
        "context_length": CN_CONTEXT,
        "vocab_size": CN_VOCAB,
        "pad_id": 0,
        "logit_scale_exp": float(ref.logit_scale.detach().exp()),
        "pixels_image_transform_vs_pillow_u8_formula_max_abs": formula,
        "shapes": {"pixels": list(pixels.shape), "token_ids": list(ids.shape), "image_embeds": list(img.shape),
                   "text_embeds": list(txt.shape), "probs": list(probs.shape)},
        "in_memory_vs_reloaded_max_abs": {"image": max_abs(img, img0), "text": max_abs(txt, txt0),
                                          "probs": max_abs(probs, probs0)},
        "probs_range": [float(probs.min()), float(probs.max())],
        "max_cos_between_labels": off_diagonal_max(txt),
        "max_cos_between_photos": off_diagonal_max(img),
    }


def main():
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    images = load_photos()
    report = {
        "generator": "tools/reference/facade_parity.py",
        "versions": {p: importlib.metadata.version(p) for p in
                     ("torch", "transformers", "tokenizers", "cn_clip", "torchvision", "Pillow", "numpy")},
        "photos": [p.name for p in PHOTOS],
        "siglip2": siglip2(OUT / "siglip2", images),
        "cn_clip": cn_clip(OUT / "cn_clip", images),
    }
    (OUT / "report.json").write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n")
    print(json.dumps(report, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
