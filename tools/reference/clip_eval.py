"""Fixtures for crates/clip-eval: metrics from scikit-learn and a zero-shot classifier from torch.

Writes into crates/clip-eval/tests/fixtures/:
  metrics.json   random float32 scores (300 images x 12 classes, class 11 never a target) and
                 targets, with sklearn's top_k_accuracy_score (k = 1, 2, 5),
                 balanced_accuracy_score, per-class top-k recall and the confusion matrix's
                 most frequent off-diagonal pairs.
  zeroshot.json  a table of prompt embeddings (5 names x 3 templates, dim 16), image embeddings,
                 and the classifier weights, cosine scores and probabilities computed with the
                 code of OpenAI's Prompt_Engineering_for_ImageNet notebook in float32 torch.

Run from the repository root: $PY tools/reference/clip_eval.py  (needs scikit-learn)
"""
import json
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, top_k_accuracy_score

OUT = Path(__file__).resolve().parents[2] / "crates/clip-eval/tests/fixtures"


def f32list(a):
    return [float(v) for v in np.asarray(a, dtype=np.float32).ravel()]


def metrics():
    rng = np.random.default_rng(20261127)
    n, c = 300, 12
    targets = rng.integers(0, c - 1, size=n)  # class 11 has no image
    scores = rng.normal(size=(n, c)).astype(np.float32)
    # Make the task learnable so accuracies are far from chance.
    scores[np.arange(n), targets] += rng.uniform(0, 2.5, size=n).astype(np.float32)
    labels = np.arange(c)
    top = {str(k): float(top_k_accuracy_score(targets, scores, k=k, labels=labels)) for k in (1, 2, 5)}
    pred = scores.argmax(axis=1)
    balanced = float(balanced_accuracy_score(targets, pred))
    per_class = {}
    for k in (1, 2, 5):
        row = []
        for cls in range(c):
            mask = targets == cls
            if not mask.any():
                row.append(None)
                continue
            # Independent of sklearn: is the target among the k largest scores?
            ranks = (scores[mask] > scores[mask, cls][:, None]).sum(axis=1)
            row.append(float((ranks < k).mean()))
        per_class[str(k)] = row
    cm = confusion_matrix(targets, pred, labels=labels)
    pairs = [(int(cm[t, p]), t, p) for t in range(c) for p in range(c) if t != p and cm[t, p] > 0]
    pairs.sort(key=lambda x: (-x[0], x[1], x[2]))
    return {
        "n_classes": c,
        "targets": [int(t) for t in targets],
        "scores": f32list(scores),
        "top_k_accuracy": top,
        "correct_top_k": {k: int(round(v * n)) for k, v in top.items()},
        "balanced_accuracy": balanced,
        "per_class_top_k": per_class,
        "class_counts": [int((targets == k).sum()) for k in range(c)],
        "most_confused": [{"target": t, "predicted": p, "count": n_} for n_, t, p in pairs[:10]],
    }


def zeroshot():
    rng = np.random.default_rng(7)
    classnames = ["cat", "dog", "red car", "tench", "space shuttle"]
    templates = ["a photo of a {}.", "a {} in the wild.", "itap of a {}."]
    dim = 16
    prompts = [t.format(c) for c in classnames for t in templates]
    table = rng.normal(size=(len(prompts), dim)).astype(np.float32)
    # Give each class a shared direction so the classes are distinguishable.
    for i in range(len(classnames)):
        table[i * 3:(i + 1) * 3] += 3 * rng.normal(size=dim).astype(np.float32)
    lookup = {p: torch.from_numpy(table[i]) for i, p in enumerate(prompts)}
    images = rng.normal(size=(4, dim)).astype(np.float32)

    # OpenAI's notebook, verbatim apart from the encoder (a table look-up here).
    with torch.no_grad():
        zeroshot_weights = []
        for classname in classnames:
            texts = [template.format(classname) for template in templates]
            class_embeddings = torch.stack([lookup[t] for t in texts])
            class_embeddings /= class_embeddings.norm(dim=-1, keepdim=True)
            class_embedding = class_embeddings.mean(dim=0)
            class_embedding /= class_embedding.norm()
            zeroshot_weights.append(class_embedding)
        zeroshot_weights = torch.stack(zeroshot_weights, dim=1)
        image_features = torch.from_numpy(images.copy())
        image_features /= image_features.norm(dim=-1, keepdim=True)
        cosine = image_features @ zeroshot_weights
        probs = (100.0 * image_features @ zeroshot_weights).softmax(dim=-1)
    return {
        "classnames": classnames,
        "templates": templates,
        "dim": dim,
        "prompts": prompts,
        "prompt_embeddings": f32list(table),
        "image_embeddings": f32list(images),
        "weights": f32list(zeroshot_weights.T.contiguous().numpy()),
        "cosine": f32list(cosine.numpy()),
        "probs": f32list(probs.numpy()),
    }


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "metrics.json").write_text(json.dumps(metrics()) + "\n")
    (OUT / "zeroshot.json").write_text(json.dumps(zeroshot()) + "\n")


if __name__ == "__main__":
    main()
