"""Reference for `cargo xtask eval-imagenet`: open_clip's zero-shot classifier and predictions for a tiny model.

Builds a tiny random open_clip ViT CLIP with OpenAI's full 49,408-token vocabulary (so real ImageNet prompts
tokenize; the text width is 8 to keep the token embedding small) and takes 20 photos of
$CLIP_SHARED_DATA/imagenet-sample, OpenAI's curated class names and a few of the 80 templates. Writes to
xtask/tests/fixtures/eval_parity/:

- `model/open_clip_model.safetensors` + `model/open_clip_config.json`: the tiny model (float16 values, which
  both sides read as float32, so they compute from identical weights), open_clip / OpenAI naming;
- `case.json`: the photos (in the order they become ILSVRC2012_val_00000001.JPEG …), their wnids, devkit ids (read
  from meta.mat with scipy) and class indices (sorted-wnid order), the templates, the model file;
- `classifier.npy`: float32 [1000, embed_dim], open_clip's zero-shot weights (per class: encode every template
  filled with the name, L2-normalise, average, L2-normalise);
- `scores.npy`: float32 [20, 1000], cosine similarity of each L2-normalised image embedding to each class
  (OpenAI's transform: bicubic resize of the shorter side, centre crop, RGB, normalise).

The photos themselves are not copied. Run from the repository root:

    CLIP_SHARED_DATA=../shared/data $PY tools/reference/eval_parity.py
"""

import argparse
import json
import os
from pathlib import Path

import numpy as np
import open_clip
import scipy.io
import torch
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
from PIL import Image
from safetensors.torch import load_file, save_file

OUT = Path("xtask/tests/fixtures/eval_parity")
N_PHOTOS = 20
# A few of OpenAI's 80 templates (the first, and two with different wording).
TEMPLATES = ["a bad photo of a {}.", "a photo of many {}.", "itap of a {}."]
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


TINY = {
    "embed_dim": 16,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 8, "heads": 2, "layers": 2},
}


def build() -> dict:
    """The tiny model's weights: open_clip's initialisation plus random biases and norm gains (so that loading
    them is exercised), rounded to float16."""
    torch.manual_seed(20261127)
    model = CLIP(
        embed_dim=TINY["embed_dim"],
        vision_cfg=CLIPVisionCfg(**TINY["vision_cfg"]),
        text_cfg=CLIPTextCfg(**TINY["text_cfg"]),
        quick_gelu=True,
    )
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape))
            elif name.endswith("weight") and "ln" in name.split(".")[-2]:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape))
    return {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}


def load(state: dict) -> CLIP:
    model = CLIP(
        embed_dim=TINY["embed_dim"],
        vision_cfg=CLIPVisionCfg(**TINY["vision_cfg"]),
        text_cfg=CLIPTextCfg(**TINY["text_cfg"]),
        quick_gelu=True,
    )
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return model.float().eval()


def transform(path: Path, size: int) -> torch.Tensor:
    """OpenAI's `clip.load` transform, as open_clip builds it for inference."""
    t = open_clip.transform.image_transform(size, is_train=False, mean=MEAN, std=STD)
    return t(Image.open(path))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", help="use this safetensors file (open_clip naming, tiny config) instead of building one")
    args = ap.parse_args()
    shared = Path(os.environ.get("CLIP_SHARED_DATA", "../shared/data"))

    model_dir = OUT / "model"
    model_file = model_dir / "open_clip_model.safetensors"
    if args.model:
        state = load_file(args.model)
    else:
        state = build()
        model_dir.mkdir(parents=True, exist_ok=True)
        save_file(state, model_file)
        (model_dir / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY}, indent=2) + "\n")
    model = load(state)
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size

    meta = scipy.io.loadmat(shared / "imagenet-devkit/meta.mat", squeeze_me=True)["synsets"]
    leaves = sorted(
        (str(s["WNID"]), int(s["ILSVRC2012_ID"])) for s in meta if int(s["num_children"]) == 0
    )
    class_of = {w: i for i, (w, _) in enumerate(leaves)}
    devkit_of = dict(leaves)
    assert len(leaves) == 1000

    names = json.loads((shared / "clip/openai_imagenet_classes_templates.json").read_text())["classes"]
    photos = sorted(p.name for p in (shared / "imagenet-sample").iterdir() if p.suffix == ".JPEG")
    step = len(photos) // N_PHOTOS
    chosen = photos[::step][:N_PHOTOS]

    with torch.no_grad():
        weights = []
        for name in names:
            tokens = open_clip.tokenize([t.format(name) for t in TEMPLATES])
            e = model.encode_text(tokens)
            e = e / e.norm(dim=-1, keepdim=True)
            m = e.mean(dim=0)
            weights.append(m / m.norm())
        classifier = torch.stack(weights)  # [1000, D]
        images = torch.stack([transform(shared / "imagenet-sample" / p, size) for p in chosen])
        f = model.encode_image(images)
        f = f / f.norm(dim=-1, keepdim=True)
        scores = f @ classifier.T

    OUT.mkdir(parents=True, exist_ok=True)
    np.save(OUT / "classifier.npy", classifier.numpy().astype("<f4"))
    np.save(OUT / "scores.npy", scores.numpy().astype("<f4"))
    wnids = [p.split("_")[0] for p in chosen]
    case = {
        "model": str(model_file),
        "image_size": size,
        "templates": TEMPLATES,
        "photos": chosen,
        "wnids": wnids,
        "devkit_ids": [devkit_of[w] for w in wnids],
        "targets": [class_of[w] for w in wnids],
        "open_clip": open_clip.__version__,
        "torch": torch.__version__,
    }
    (OUT / "case.json").write_text(json.dumps(case, indent=1) + "\n")
    (OUT / "templates.txt").write_text("".join(t + "\n" for t in TEMPLATES))
    top1 = scores.argmax(dim=1).tolist()
    print(f"wrote {OUT}: classifier {tuple(classifier.shape)}, scores {tuple(scores.shape)}, top-1 {top1}")


if __name__ == "__main__":
    main()
