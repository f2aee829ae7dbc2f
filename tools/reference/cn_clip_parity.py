#!/usr/bin/env python3
"""Chinese-CLIP reference fixtures: cn_clip 1.6.0 (the OFA-Sys reference) and transformers' ChineseCLIPModel.

Subcommands (run from the repository root with the reference venv's python):

  tokenizer   crates/clip-model/tests/fixtures/cn_tokenizer_*: cn_clip `tokenize` ids of the 80,000 Chinese
              ImageNet prompts (1000 class names x 80 templates of cn_clip/eval/imagenet_zeroshot_templates.py;
              `cn_tokenizer_imagenet_ids.bin.gz`: per prompt a length byte then little-endian u16 ids,
              `[CLS]` ... `[SEP]` without padding; names, templates, count and sha256 in
              `cn_tokenizer_imagenet.json`), tricky strings with their full ids and the 52-token row
              (`cn_tokenizer_tricky.json`), and the character classes of BERT's basic tokenizer for every
              code point (`cn_tokenizer_char_classes.txt`).
  models      crates/clip-model/tests/fixtures/cn_clip_tiny/: tiny random Chinese-CLIP models (a ViT image
              tower with 4 heads of 16 and a BERT of 2 heads of 16, so head counts must come from the config;
              a ModifiedResNet one), in cn_clip naming (`cn_clip/`, with a cn_clip model config as
              config.json) and transformers naming (`hf/`, the same ViT model through ChineseCLIPModel, its
              config.json), weights stored as float16; inputs (pixels, Chinese texts tokenized by cn_clip) and
              the embeddings of cn_clip's CLIP and of transformers' ChineseCLIPModel in float32.
  eval-data   crates/clip-eval/data/cn_clip_imagenet_classes_templates.json: cn_clip's 1000 Chinese class
              names and 80 templates (each template called with "{}").
  time-text [BATCH] [ROUNDS]
              times cn_clip's RoBERTa-wwm-ext-base text tower (ViT-B-16@RoBERTa-wwm-ext-base-chinese, random
              weights, 2 threads unless RAYON_NUM_THREADS says otherwise) on the Chinese ImageNet prompts the
              `text_cn` bench of benches/benches/encoders.rs uses; compare with
              `CLIP_BENCH_LOOP=text_cn:BATCH:ROUNDS cargo bench -p clip-benches --bench encoders`.
  full --model cn-vit-b-16|cn-vit-l-14|cn-vit-h-14 --out DIR
              a random full-size model (cn_clip naming + its model config), random pixels, 8 Chinese
              ImageNet prompts, cn_clip's embeddings and forward times (timing.json), for
              `cargo xtask parity --model cn-vit-b-16` (not committed).
  convert IN.pt OUT.safetensors
              a cn_clip training checkpoint (`{"state_dict": ...}`, `module.` prefix) to safetensors in
              cn_clip naming, without `bert.pooler.*` (weights stay as they are; never commit them).
"""
import gzip
import hashlib
import json
import struct
import sys
import unicodedata
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "crates/clip-model/tests/fixtures"


def templates_and_classes():
    from cn_clip.eval import imagenet_zeroshot_templates as z
    return list(z.imagenet_classnames), [t("{}") for t in z.openai_imagenet_template]


def tricky_strings():
    long_zh = "这是一段很长的中文文本，用来测试截断。" * 6
    out = [
        ("plain", "一只猫的照片。"),
        ("template", "一张包含金毛猎犬的照片。"),
        ("mixed_en", "一张iPhone 15 Pro的照片"),
        ("mixed_en_upper", "CLIP模型很好用ABC"),
        ("english", "A photo of a dog, running on the beach!"),
        ("english_wordpiece", "unaffable transformers tokenization"),
        ("fullwidth_punct", "你好，世界！这是“引号”和（括号）；还有：冒号？"),
        ("halfwidth_punct", "你好,世界!这是\"引号\"和(括号);还有:冒号?"),
        ("fullwidth_latin", "ＡＢＣ１２３ｘｙｚ"),
        ("fullwidth_space", "一只\u3000猫"),
        ("ideographic_punct", "《红楼梦》、【标题】…—～·"),
        ("traditional", "這是一張貓的照片，臺灣的風景很漂亮。"),
        ("traditional_rare", "龜鱉齜齬麤靐"),
        ("emoji", "我爱🐱和🐶😀"),
        ("emoji_zwj", "👨‍👩‍👧 家庭"),
        ("emoji_flag", "🇨🇳 中国"),
        ("digits", "2024年12月31日 23:59:59"),
        ("digits_long", "1234567890 3.14159 100%"),
        ("accents", "Café naïve résumé Ångström"),
        ("accents_combining", "Cafe\u0301 nai\u0308ve"),
        ("accents_upper", "ÉCOLE ÜBER ÇA"),
        ("german", "Straße Größe"),
        ("greek", "Αθήνα ελληνικά"),
        ("cyrillic", "Москва привет"),
        ("japanese_kana", "ひらがなカタカナ日本語"),
        ("halfwidth_kana", "ｶﾀｶﾅ"),
        ("korean", "안녕하세요 서울"),
        ("arabic", "مرحبا بالعالم"),
        ("thai", "สวัสดีครับ"),
        ("hindi", "नमस्ते दुनिया"),
        ("cjk_ext_a", "㐀㐁㑇"),
        ("cjk_ext_b", "𠀀𠀁𪚥"),
        ("cjk_ext_e_start", "\U0002B820\U0002B830\U0002B91F"),
        ("cjk_compat", "豈更車"),
        ("cjk_compat_supplement", "\U0002F800\U0002F801"),
        ("radicals", "⺀⺁⼀⼁"),
        ("bopomofo", "ㄅㄆㄇ"),
        ("control_chars", "一\x00只\x01猫\x7f的\u200b照\ufeff片\ufffd"),
        ("whitespace_mix", "  一\t只\n猫\r的 照片  "),
        ("nbsp", "一\u00a0只\u2009猫"),
        ("line_separator", "一\u2028只\u2029猫"),
        ("info_separators", "一\x1c只\x1d猫\x1e的\x1f照片"),
        ("zero_width_joiner", "a\u200db\u200cc"),
        ("soft_hyphen", "co\u00adop"),
        ("bidi_marks", "\u202a一只猫\u202c"),
        ("math_symbols", "x²+y²=z² ∑∫√∞ ≤≥≠"),
        ("currency", "￥100 $5 €3 £2"),
        ("arrows_boxes", "→←↑↓ ■□●○"),
        ("roman_numerals", "Ⅰ Ⅱ Ⅻ ⅰ"),
        ("circled", "①②③ ⑴⑵"),
        ("superscript", "H₂O CO₂ m³"),
        ("ligatures", "ﬁﬂ ﬀ"),
        ("turkish_i", "İstanbul ıi"),
        ("final_sigma", "ΟΔΟΣ"),
        ("url", "https://www.example.com/path?q=中文&x=1"),
        ("email", "user.name@example.cn"),
        ("hashtag", "#人工智能 @用户"),
        ("html", "<b>粗体</b> &amp; &lt;"),
        ("brackets_tokens", "[CLS] [SEP] [PAD] [UNK] [MASK]"),
        ("repeated", "哈哈哈哈哈哈哈哈哈哈"),
        ("long_word", "a" * 250),
        ("long_word_200", "b" * 200),
        ("long_word_201", "c" * 201),
        ("unknown_script", "\U00010330\U00010331"),
        ("private_use", "\ue000\uf8ff"),
        ("unassigned", "\U0003FFFD\U000E0001"),
        ("tags", "\U000E0041\U000E0042"),
        ("variation_selectors", "葛\U000E0100 ︎❤️"),
        ("combining_only", "\u0301\u0308"),
        ("mongolian", "ᠮᠣᠩᠭᠣᠯ"),
        ("tibetan", "བོད་ཡིག"),
        ("uyghur", "ئۇيغۇرچە"),
        ("vietnamese", "Tiếng Việt có dấu"),
        ("empty", ""),
        ("spaces_only", "   "),
        ("single_char", "猫"),
        ("punct_only", "。，！？"),
        ("ascii_punct", "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"),
        ("tilde_caret", "~^`$"),
        ("dashes", "a–b—c―d"),
        ("quotes", "‘single’ “double” 「中」『文』"),
        ("ellipsis", "等等……好吧"),
        ("middle_dot", "克里斯·保罗"),
        ("numbers_mixed", "第3名 1st 2nd 3rd 10万"),
        ("class_names", "丁鲷 金鱼 大白鲨 虎鲨"),
        ("wordpiece_pieces", "playing played player"),
        ("uppercase_english", "THE QUICK BROWN FOX"),
        ("camel_case", "ChineseCLIPModel"),
        ("numbers_english", "gpt4 v2.0 ResNet50"),
        ("long_zh_truncated", long_zh),
        ("long_mixed_truncated", ("一张photo的照片, " * 12)),
        ("long_exact_50", "猫" * 50),
        ("long_exact_51", "猫" * 51),
        ("long_en_truncated", "a photo of a very large and fluffy cat " * 5),
        ("newline_heavy", "第一行\n第二行\n\n第三行"),
        ("tab_separated", "名称\t数量\t价格"),
        ("surrogate_like", "\U0001F600\U0001F601"),
        ("kangxi", "⼈⼤⼩"),
        ("enclosed_cjk", "㊀㊁㈠"),
        ("cjk_symbols", "〆〇〡"),
        ("halfwidth_forms", "｡｢｣､"),
        ("small_forms", "﹐﹑﹒"),
        ("vertical_forms", "︐︑"),
        ("fullwidth_tilde", "～〜"),
    ]
    return out


def id_rows_blob(rows):
    out = bytearray()
    for r in rows:
        assert len(r) < 256 and max(r) < 65536
        out.append(len(r))
        out += struct.pack(f"<{len(r)}H", *r)
    return bytes(out)


def char_classes():
    """For every code point, the classes of bert_tokenizer: bit 0 removed control (`_is_control` or NUL
    or U+FFFD), 1 `_is_whitespace`, 2 `_is_punctuation`, 3 CJK (`_is_chinese_char`), 4 non-spacing mark
    (removed by `_run_strip_accents`), 5 Python `str.isspace()` (what `str.split()` splits on),
    6 unassigned in this Python's Unicode version (category Cn). Written as runs: `hex value`."""
    from cn_clip.clip import bert_tokenizer as bt
    basic = bt.BasicTokenizer()
    runs = []
    prev = None
    for cp in range(0x110000):
        c = chr(cp)
        cat = unicodedata.category(c)
        v = 0
        if cp == 0 or cp == 0xFFFD or bt._is_control(c):
            v |= 1
        if bt._is_whitespace(c):
            v |= 2
        if bt._is_punctuation(c):
            v |= 4
        if basic._is_chinese_char(cp):
            v |= 8
        if cat == "Mn":
            v |= 16
        if c.isspace():
            v |= 32
        if cat == "Cn":
            v |= 64
        if v != prev:
            runs.append(f"{cp:x} {v}")
            prev = v
    return runs


def nfd_table():
    """Every code point whose NFD differs from itself (after lower-casing is applied by the caller)."""
    lines = []
    for cp in range(0x110000):
        c = chr(cp)
        if 0xD800 <= cp <= 0xDFFF:
            continue
        d = unicodedata.normalize("NFD", c)
        if d != c:
            lines.append(f"{cp:x} " + " ".join(f"{ord(x):x}" for x in d))
    return lines


def cmd_tokenizer():
    from cn_clip.clip import tokenize
    from cn_clip.clip import _tokenizer as tk
    classes, templates = templates_and_classes()
    prompts = [t.replace("{}", c) for c in classes for t in templates]
    from cn_clip.eval import imagenet_zeroshot_templates as z
    # The templates are lambdas: check that "{}" substitution gives exactly what they return.
    for c in classes[:50]:
        for f, t in zip(z.openai_imagenet_template, templates):
            assert f(c) == t.replace("{}", c)
    rows = []
    for i in range(0, len(prompts), 2000):
        ids = tokenize(prompts[i:i + 2000], context_length=52)
        for r in ids.tolist():
            n = r.index(102) + 1
            assert all(x == 0 for x in r[n:])
            rows.append(r[:n])
    blob = id_rows_blob(rows)
    (FIX / "cn_tokenizer_imagenet_ids.bin.gz").write_bytes(gzip.compress(blob, 9, mtime=0))
    meta = {
        "generator": "tools/reference/cn_clip_parity.py tokenizer (cn_clip 1.6.0 tokenize, context 52)",
        "rows": len(rows),
        "ids_sha256": hashlib.sha256(blob).hexdigest(),
        "truncated_rows": sum(1 for p in prompts if len(tk.tokenize(p)) + 2 > 52),
        "classes": classes,
        "templates": templates,
    }
    (FIX / "cn_tokenizer_imagenet.json").write_text(json.dumps(meta, ensure_ascii=False, indent=0) + "\n")
    strings = []
    for name, text in tricky_strings():
        toks = tk.tokenize(text)
        full = [101] + tk.convert_tokens_to_ids(toks) + [102]
        row = tokenize([text], context_length=52)[0].tolist()
        strings.append({"name": name, "text": text, "tokens": toks, "ids": full, "row52": row})
    tricky = {
        "generator": "tools/reference/cn_clip_parity.py tokenizer (cn_clip 1.6.0)",
        "context_length": 52,
        "strings": strings,
    }
    (FIX / "cn_tokenizer_tricky.json").write_text(json.dumps(tricky, ensure_ascii=False, indent=1) + "\n")
    header = (f"# bert_tokenizer character classes per code point (Python {sys.version.split()[0]}, Unicode "
              f"{unicodedata.unidata_version}): bits 1 control-removed, 2 whitespace, 4 punctuation, 8 CJK, "
              f"16 Mn, 32 str.isspace, 64 unassigned; runs `start value`; see tools/reference/cn_clip_parity.py")
    (FIX / "cn_tokenizer_char_classes.txt").write_text(header + "\n" + "\n".join(char_classes()) + "\n")
    nfd_lines = nfd_table()
    (FIX / "cn_tokenizer_nfd.txt.gz").write_bytes(gzip.compress(
        ("# unicodedata.normalize('NFD', c) where it changes c (Unicode %s)\n" % unicodedata.unidata_version
         + "\n".join(nfd_lines) + "\n").encode(), 9, mtime=0))
    print(f"{len(rows)} ImageNet prompts ({meta['truncated_rows']} truncated), {len(strings)} tricky strings, "
          f"{len(nfd_lines)} NFD entries")


# ---------------------------------------------------------------------------------------------- models

TINY_VOCAB = 10000  # every common CJK character of cn_clip's vocabulary has an id below 7992
VIT = {"embed_dim": 24, "image_resolution": 32, "vision_layers": 2, "vision_width": 64, "vision_head_width": 16,
       "vision_patch_size": 8}
RN = {"embed_dim": 24, "image_resolution": 64, "vision_layers": "[1,1,1,1]", "vision_width": 8,
      "vision_patch_size": None}
BERT = {"vocab_size": TINY_VOCAB, "text_attention_probs_dropout_prob": 0.1, "text_hidden_act": "gelu",
        "text_hidden_dropout_prob": 0.1, "text_hidden_size": 32, "text_initializer_range": 0.02,
        "text_intermediate_size": 64, "text_max_position_embeddings": 64, "text_num_attention_heads": 2,
        "text_num_hidden_layers": 2, "text_type_vocab_size": 2}
TEXTS = ["一只猫的照片。", "一张包含金毛猎犬的照片。", "这是一张很漂亮的风景照片，有山有水，还有蓝天和白云。", "狗",
         "丁鲷的照片。", "质量差的大白鲨的照片。", "《红楼梦》的插图", "2024年的北京", "！？，。", "",
         "我爱中国" * 16]


def build_cn_clip(vision_cfg, seed):
    from cn_clip.clip.model import CLIP
    cfg = dict(vision_cfg)
    cfg.update(BERT)
    info = dict(cfg)
    if isinstance(info["vision_layers"], str):
        info["vision_layers"] = eval(info["vision_layers"])
    torch.manual_seed(seed)
    model = CLIP(**info).eval()
    # Random values of a useful scale everywhere (the init leaves zeros, e.g. bn3, LayerNorm biases),
    # rounded to float16 so that the stored file holds them exactly.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "logit_scale":
                p.fill_(np.log(1 / 0.07))
            elif "LayerNorm.weight" in name or name.endswith("ln_1.weight") or name.endswith("ln_2.weight") \
                    or "ln_pre.weight" in name or "ln_post.weight" in name or name.endswith("bn1.weight") \
                    or name.endswith("bn2.weight") or name.endswith("bn3.weight") or name.endswith("downsample.2.weight"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.05 * torch.randn_like(p) * (3 if "embedding" in name else 1))
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn_like(b))
            elif name.endswith("running_var"):
                b.copy_(1 + 0.2 * torch.rand_like(b))
        for t in list(model.parameters()) + list(model.buffers()):
            if t.dtype.is_floating_point:
                t.copy_(t.half().float())
    return model, cfg


def cn_state_dict(model):
    return {k: v.detach().contiguous() for k, v in model.state_dict().items()
            if not k.startswith("bert.pooler") and not k.endswith("num_batches_tracked")}


def hf_from_cn(model, cfg):
    """The same ViT model as transformers' ChineseCLIPModel, weights copied over."""
    from transformers import ChineseCLIPConfig, ChineseCLIPModel
    w = cfg["vision_width"]
    config = ChineseCLIPConfig(
        text_config=dict(vocab_size=TINY_VOCAB, hidden_size=BERT["text_hidden_size"],
                         num_hidden_layers=BERT["text_num_hidden_layers"],
                         num_attention_heads=BERT["text_num_attention_heads"],
                         intermediate_size=BERT["text_intermediate_size"], hidden_act="gelu",
                         max_position_embeddings=BERT["text_max_position_embeddings"], type_vocab_size=2,
                         layer_norm_eps=1e-12, pad_token_id=0),
        vision_config=dict(hidden_size=w, intermediate_size=4 * w, num_hidden_layers=cfg["vision_layers"],
                           num_attention_heads=w // cfg["vision_head_width"], image_size=cfg["image_resolution"],
                           patch_size=cfg["vision_patch_size"], hidden_act="quick_gelu", layer_norm_eps=1e-5),
        projection_dim=cfg["embed_dim"])
    hf = ChineseCLIPModel(config).eval()
    sd = cn_state_dict(model)
    out = {}
    for k, v in sd.items():
        if k.startswith("bert."):
            out["text_model." + k[5:]] = v
        elif k == "text_projection":
            out["text_projection.weight"] = v.t().contiguous()
        elif k == "logit_scale":
            out[k] = v
        elif k == "visual.proj":
            out["visual_projection.weight"] = v.t().contiguous()
        elif k == "visual.class_embedding":
            out["vision_model.embeddings.class_embedding"] = v
        elif k == "visual.conv1.weight":
            out["vision_model.embeddings.patch_embedding.weight"] = v
        elif k == "visual.positional_embedding":
            out["vision_model.embeddings.position_embedding.weight"] = v
        elif k.startswith("visual.ln_pre."):
            out["vision_model.pre_layrnorm." + k.split(".")[-1]] = v
        elif k.startswith("visual.ln_post."):
            out["vision_model.post_layernorm." + k.split(".")[-1]] = v
        elif k.startswith("visual.transformer.resblocks."):
            i, rest = k[len("visual.transformer.resblocks."):].split(".", 1)
            p = f"vision_model.encoder.layers.{i}."
            if rest.startswith("attn.in_proj_"):
                kind = rest.rsplit("_", 1)[1]
                for name, part in zip(("q_proj", "k_proj", "v_proj"), v.chunk(3)):
                    out[p + f"self_attn.{name}.{kind}"] = part.contiguous()
            else:
                m = {"attn.out_proj": "self_attn.out_proj", "ln_1": "layer_norm1", "ln_2": "layer_norm2",
                     "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}
                mod, param = rest.rsplit(".", 1)
                out[p + m[mod] + "." + param] = v
        else:
            raise KeyError(k)
    missing, unexpected = hf.load_state_dict(out, strict=False)
    assert not unexpected, unexpected
    assert all(k.startswith("text_model.pooler") or k.endswith("position_ids") or k.endswith("token_type_ids")
               for k in missing), missing
    return hf, out, config


def save_safetensors(path, tensors):
    from safetensors.torch import save_file
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.half() if k != "logit_scale" else v.float() for k, v in tensors.items()}, str(path))


def texts_ids():
    from cn_clip.clip import tokenize
    ids = tokenize(TEXTS, context_length=52)
    assert int(ids.max()) < TINY_VOCAB, "a test text has an id outside the tiny vocabulary"
    return ids


def cmd_models():
    out = FIX / "cn_clip_tiny"
    out.mkdir(parents=True, exist_ok=True)
    ids = texts_ids()
    np.save(out / "token_ids.npy", ids.numpy().astype("<i8"))
    (out / "texts.json").write_text(json.dumps(TEXTS, ensure_ascii=False, indent=0) + "\n")
    g = torch.Generator().manual_seed(7)
    report = {}
    for label, vcfg, seed in (("vit", VIT, 1), ("rn", RN, 2)):
        model, cfg = build_cn_clip(vcfg, seed)
        d = out / label
        save_safetensors(d / "cn_clip/model.safetensors", cn_state_dict(model))
        (d / "cn_clip/config.json").write_text(json.dumps(cfg, indent=1) + "\n")
        s = cfg["image_resolution"]
        pixels = torch.randn(3, 3, s, s, generator=g)
        np.save(d / "pixels.npy", pixels.numpy().astype("<f4"))
        with torch.no_grad():
            img = model.encode_image(pixels)
            txt = model.encode_text(ids)
        np.save(d / "image_embeds.npy", img.numpy().astype("<f4"))
        np.save(d / "text_embeds.npy", txt.numpy().astype("<f4"))
        report[label] = {"logit_scale": float(model.logit_scale.exp())}
        if label == "vit":
            hf, hf_sd, config = hf_from_cn(model, cfg)
            save_safetensors(d / "hf/model.safetensors", hf_sd)
            config.save_pretrained(d / "hf")
            with torch.no_grad():
                himg = hf.get_image_features(pixel_values=pixels)
                htxt = hf.get_text_features(input_ids=ids, attention_mask=(ids != 0).long(),
                                            token_type_ids=torch.zeros_like(ids))
            himg = getattr(himg, "pooler_output", himg)
            htxt = getattr(htxt, "pooler_output", htxt)
            np.save(d / "hf_image_embeds.npy", himg.numpy().astype("<f4"))
            np.save(d / "hf_text_embeds.npy", htxt.numpy().astype("<f4"))
            report["vit"]["transformers_vs_cn_clip_max_abs"] = {
                "image": float((himg - img).abs().max()), "text": float((htxt - txt).abs().max())}
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


def cmd_eval_data():
    classes, templates = templates_and_classes()
    path = ROOT / "crates/clip-eval/data/cn_clip_imagenet_classes_templates.json"
    data = {
        "source": "cn_clip 1.6.0 (PyPI cn-clip, MIT licence, github.com/OFA-Sys/Chinese-CLIP), "
                  "cn_clip/eval/imagenet_zeroshot_templates.py: imagenet_classnames and "
                  "openai_imagenet_template (each lambda called with \"{}\")",
        "classes": classes,
        "templates": templates,
    }
    path.write_text(json.dumps(data, ensure_ascii=False, indent=0) + "\n")
    print(f"{len(classes)} classes, {len(templates)} templates -> {path}")


def cmd_time_text(batch=256, rounds=5):
    import os
    import time
    from cn_clip.clip import tokenize
    from cn_clip.clip.model import CLIP
    torch.set_num_threads(int(os.environ.get("RAYON_NUM_THREADS", "2")))
    classes, templates = templates_and_classes()
    texts = [templates[(i * 31 + 7) % 80].replace("{}", classes[(i * 997 + 13) % 1000]) for i in range(batch)]
    ids = tokenize(texts, context_length=52)
    cfg = json.loads((Path(__import__("cn_clip").__file__).parent / "clip/model_configs/ViT-B-16.json").read_text())
    cfg.update(json.loads((Path(__import__("cn_clip").__file__).parent
                           / "clip/model_configs/RoBERTa-wwm-ext-base-chinese.json").read_text()))
    torch.manual_seed(0)
    model = CLIP(**cfg).eval()
    with torch.inference_mode():
        model.encode_text(ids)
        for r in range(rounds):
            t0 = time.perf_counter()
            model.encode_text(ids)
            dt = time.perf_counter() - t0
            print(f"cn_clip text batch {batch} round {r}: {dt:.3f} s ({batch / dt:.1f} prompts/s), "
                  f"{torch.get_num_threads()} threads, torch {torch.__version__}")


def cmd_full(name, out):
    """A random full-size Chinese-CLIP (cn_clip's CLIP with its published configs), its outputs on
    random pixels and Chinese ImageNet prompts, and its forward times, for `cargo xtask parity`."""
    import os
    from cn_clip.clip import tokenize
    from cn_clip.clip.model import CLIP
    from safetensors.torch import save_file
    configs = {"cn-vit-b-16": ("ViT-B-16", "RoBERTa-wwm-ext-base-chinese"),
               "cn-vit-l-14": ("ViT-L-14", "RoBERTa-wwm-ext-base-chinese"),
               "cn-vit-h-14": ("ViT-H-14", "RoBERTa-wwm-ext-large-chinese")}
    if name not in configs:
        sys.exit(f"unknown model {name}: {sorted(configs)}")
    base = Path(__import__("cn_clip").__file__).parent / "clip/model_configs"
    cfg = {}
    for part in configs[name]:
        cfg.update(json.loads((base / f"{part}.json").read_text()))
    torch.manual_seed(7)
    model = CLIP(**cfg).eval()
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if "LayerNorm.weight" in pname or pname.endswith(("ln_1.weight", "ln_2.weight")) \
                    or "ln_pre.weight" in pname or "ln_post.weight" in pname:
                p.copy_(1 + 0.1 * torch.randn_like(p))
            elif pname == "logit_scale":
                p.fill_(np.log(1 / 0.07))
            else:
                p.copy_(0.02 * torch.randn_like(p))
    classes, templates = templates_and_classes()
    texts = [templates[(i * 31 + 7) % 80].replace("{}", classes[(i * 997 + 13) % 1000]) for i in range(8)]
    ids = tokenize(texts, context_length=52)
    size = cfg["image_resolution"]
    pixels = torch.randn((2, 3, size, size), generator=torch.Generator().manual_seed(99))
    with torch.no_grad():
        image = model.encode_image(pixels).float()
        text = model.encode_text(ids).float()
    os.makedirs(out, exist_ok=True)
    state = cn_state_dict(model)
    save_file(state, os.path.join(out, "model.safetensors"))
    (Path(out) / "config.json").write_text(json.dumps(cfg))
    np.save(os.path.join(out, "pixels.npy"), pixels.numpy().astype(np.float32))
    np.save(os.path.join(out, "token_ids.npy"), ids.numpy().astype(np.int64))
    np.save(os.path.join(out, "image_embeds.npy"), image.numpy())
    np.save(os.path.join(out, "text_embeds.npy"), text.numpy())
    sys.path.insert(0, str(Path(__file__).parent))
    from timing import write_tower_timing
    write_tower_timing(out, lambda: model.encode_image(pixels), lambda: model.encode_text(ids))
    print(f"wrote {out}: {name} image {tuple(image.shape)}, text {tuple(text.shape)}")


def cmd_convert(src, dst):
    from safetensors.torch import save_file
    # A checkpoint is a pickle: only convert files from a source you trust.
    ckpt = torch.load(src, map_location="cpu", weights_only=False)
    sd = ckpt.get("state_dict", ckpt)
    sd = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in sd.items()}
    sd = {k: v.contiguous() for k, v in sd.items() if not k.startswith("bert.pooler")}
    save_file(sd, dst)
    print(f"{len(sd)} tensors -> {dst}")


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "tokenizer":
        cmd_tokenizer()
    elif cmd == "models":
        cmd_models()
    elif cmd == "eval-data":
        cmd_eval_data()
    elif cmd == "time-text":
        cmd_time_text(*(int(a) for a in sys.argv[2:4]))
    elif cmd == "full" and len(sys.argv) == 6 and sys.argv[2] == "--model" and sys.argv[4] == "--out":
        cmd_full(sys.argv[3], sys.argv[5])
    elif cmd == "convert" and len(sys.argv) == 4:
        cmd_convert(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
