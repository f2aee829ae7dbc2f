"""Reference token ids for clip-model's SentencePiece (SigLIP / SigLIP 2) tokenizer.

The released SigLIP vocabularies (T5's 32k, Gemma's 256k) cannot be fetched here, so this proves
the mechanism on small models of the same kinds, trained here by the `sentencepiece` package on a
multilingual corpus (OpenAI's ImageNet prompts in English, cn_clip's Chinese ImageNet names and
templates, and sentences in other scripts):

- `siglip`: a T5-style unigram model (pad 0, eos 1, unk 2, NFKC normalisation), converted to
  `tokenizer.json` by transformers' `T5Converter`; reference ids from transformers'
  `SiglipTokenizer` (the slow tokenizer: the SentencePiece library itself, with its
  canonicalisation: lower-case, punctuation removed, whitespace collapsed), padded to 64.
- `siglip2`: a Gemma-style byte-fallback BPE model (pad 0, eos 1, bos 2, unk 3, no dummy prefix,
  no normalisation, digits split), converted by transformers' `GemmaConverter`; reference ids
  from the SentencePiece library on the lower-cased text with the converted file's special
  tokens around it, and transformers' `Siglip2Tokenizer` on that file (right padding to 64, as
  big_vision trained SigLIP 2); the two agree except that Python's `str.lower()` writes a
  word-final capital sigma as ς where the `tokenizers` Lowercase normaliser of
  `Siglip2Tokenizer` writes σ (checked string by string below); the fixture follows transformers.

    $PY tools/reference/sentencepiece_tokenizer.py   # crates/clip-model/tests/fixtures/sentencepiece/
"""

import json
import os
import random
import tempfile

import sentencepiece as spm

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
OUT = os.path.join(ROOT, "crates", "clip-model", "tests", "fixtures", "sentencepiece")
CONTEXT = 64

OTHER = [
    "一只可爱的小猫在草地上玩耍", "城市夜景的照片", "一碗热腾腾的拉面", "日落时分的海滩",
    "夕日の写真", "桜の花が咲いている公園", "東京タワーの夜景", "ラーメンとギョーザ",
    "Фотография кошки на диване", "Красная площадь в Москве зимой", "собака бежит по снегу",
    "صورة لقطة صغيرة", "غروب الشمس فوق البحر", "Μια φωτογραφία ενός σκύλου", "ΟΔΟΣ ΑΘΗΝΑΣ",
    "Ein Foto von einem Hund im Schnee", "Straße in München", "Une photo d'un chat très mignon",
    "Café crème à Paris", "고양이 사진", "서울의 밤 풍경", "कुत्ते की एक तस्वीर", "Ảnh của một con mèo",
    "Zdjęcie psa na plaży", "Bir kedinin fotoğrafı", "รูปภาพของแมว", "emoji 🐱🐶🚗 and ✨ sparkles",
    "ÇA VA? Ñandú, Øresund, Ærøskøbing, İstanbul, ǅemal",
]


def corpus():
    with open(os.path.join(ROOT, "crates", "clip-eval", "data", "openai_imagenet_classes_templates.json")) as f:
        data = json.load(f)
    classes, templates = data["classes"], data["templates"]
    from cn_clip.eval.imagenet_zeroshot_templates import imagenet_classnames as zh_classes
    from cn_clip.eval.imagenet_zeroshot_templates import openai_imagenet_template as zh_templates
    rng = random.Random(1)
    lines = []
    for c in classes:
        for t in rng.sample(templates, 4):
            lines.append(t.format(c))
    for c in zh_classes:
        for t in rng.sample(zh_templates, 3):
            lines.append(t(c) if callable(t) else t.format(c))
    lines += OTHER * 20
    return lines, classes, templates, zh_classes, zh_templates


def test_strings(classes, templates, zh_classes, zh_templates):
    rng = random.Random(2)
    out = []
    for _ in range(1200):
        out.append(rng.choice(templates).format(rng.choice(classes)))
    for _ in range(900):
        t = rng.choice(zh_templates)
        c = rng.choice(zh_classes)
        out.append(t(c) if callable(t) else t.format(c))
    for _ in range(400):
        out.append(" ".join(rng.sample(OTHER, 2)))
    # Case, punctuation, whitespace, digits, unseen characters, long texts.
    seps = [" ", "  ", "\t", "\n", " \u3000 ", "\u00a0", "_", "-", "...", "!?", " , "]
    for _ in range(600):
        words = [rng.choice(classes + zh_classes + OTHER) for _ in range(rng.randint(1, 4))]
        s = ""
        for w in words:
            s += rng.choice(seps) + rng.choice([w, w.upper(), w.title(), w.lower()])
        if rng.random() < 0.3:
            s += " " + str(rng.randint(0, 10**6))
        if rng.random() < 0.2:
            s = "  " + s + "  "
        out.append(s)
    for _ in range(100):
        out.append(" ".join(rng.choice(classes) for _ in range(30)))  # far beyond 64 tokens
    out += ["", " ", "!!!", "A", "a", "ß", "ǅ", "İ", "🦄", "\u200b", "x" * 200, "中" * 100,
            "a_b_c", "it's a \"quoted\" (thing)", "tab\tand\nnewline", "\u001fsep", "ＡＢＣ full width",
            "①②③", "ﬁ ligature", "Å Å (composed and decomposed)"]
    return out


def train(lines, prefix, **kw):
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as f:
        f.write("\n".join(lines))
        path = f.name
    spm.SentencePieceTrainer.train(input=path, model_prefix=prefix, **kw)
    os.unlink(path)
    return prefix + ".model"


def siglip(lines, strings, tmp):
    from transformers import SiglipTokenizer
    from transformers.convert_slow_tokenizer import T5Converter

    model = train(lines, os.path.join(tmp, "siglip"), vocab_size=2000, model_type="unigram", pad_id=0, eos_id=1,
                  unk_id=2, bos_id=-1, character_coverage=0.9995, normalization_rule_name="nmt_nfkc",
                  minloglevel=2)
    slow = SiglipTokenizer(vocab_file=model)
    slow._extra_ids = 0  # T5Converter reads it; SiglipTokenizer has no extra ids.
    fast = T5Converter(slow).converted()
    ids = slow(strings, padding="max_length", max_length=CONTEXT, truncation=True)["input_ids"]
    return fast, ids


def siglip2(lines, strings, tmp):
    from transformers import Siglip2Tokenizer
    from transformers.convert_slow_tokenizer import GemmaConverter

    model = train(lines, os.path.join(tmp, "siglip2"), vocab_size=3000, model_type="bpe", pad_id=0, eos_id=1,
                  bos_id=2, unk_id=3, byte_fallback=True, add_dummy_prefix=False, split_digits=True,
                  normalization_rule_name="identity", allow_whitespace_only_pieces=True,
                  remove_extra_whitespaces=False, character_coverage=0.9995, minloglevel=2)

    class Original:  # what GemmaConverter reads of a slow GemmaTokenizer
        vocab_file = model
        add_bos_token = True
        add_eos_token = True
        bos_token = "<bos>"
        eos_token = "<eos>"
        pad_token = "<pad>"
        unk_token = "<unk>"

    sp = spm.SentencePieceProcessor(model_file=model)
    # transformers 5.24's GemmaSentencePieceExtractor reads a `sp` processor it never sets.
    from transformers import convert_slow_tokenizer
    if not hasattr(convert_slow_tokenizer.GemmaSentencePieceExtractor, "sp"):
        convert_slow_tokenizer.GemmaSentencePieceExtractor.sp = property(
            lambda self: spm.SentencePieceProcessor(model_file=model))
    conv = GemmaConverter(Original())
    fast = conv.converted()
    # Independent reference: SentencePiece on the lower-cased text, with the converted file's
    # special tokens around it (read off the file's encoding of a plain text).
    probe = fast.encode("a").ids
    plain = sp.encode("a")
    start = [i for i in range(len(probe) - len(plain) + 1) if probe[i:i + len(plain)] == plain][0]
    before, after = probe[:start], probe[start + len(plain):]
    ids = []
    for s in strings:
        body = sp.encode(s.lower())
        body = body[:CONTEXT - len(before) - len(after)]
        row = before + body + after
        ids.append(row + [0] * (CONTEXT - len(row)))
    # transformers' Siglip2Tokenizer on the same file agrees (padding on the right).
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "tokenizer.json")
        fast.save(path)
        hf = Siglip2Tokenizer(tokenizer_file=path)
        hf_ids = hf(strings, padding="max_length", max_length=CONTEXT, truncation=True,
                    padding_side="right")["input_ids"]
    differ = [i for i, (a, b) in enumerate(zip(ids, hf_ids)) if a != b]
    print(f"siglip2: SentencePiece on str.lower() vs transformers Siglip2Tokenizer: {len(strings) - len(differ)} "
          f"of {len(strings)} equal; special tokens added by the file: before {before}, after {after}")
    # The only difference allowed: Python's str.lower() writes a word-final capital sigma as ς,
    # the `tokenizers` Lowercase normaliser of Siglip2Tokenizer lower-cases character by
    # character (σ). The fixture follows transformers.
    for i in differ:
        assert "Σ" in strings[i], (strings[i], ids[i], hf_ids[i])
        char_wise = "".join(c.lower() for c in strings[i])
        body = sp.encode(char_wise)[:CONTEXT - len(before) - len(after)]
        row = before + body + after
        assert row + [0] * (CONTEXT - len(row)) == hf_ids[i], strings[i]
    ids = hf_ids
    return fast, ids, len(differ)


def main():
    lines, classes, templates, zh_classes, zh_templates = corpus()
    strings = test_strings(classes, templates, zh_classes, zh_templates)
    os.makedirs(OUT, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        fast1, ids1 = siglip(lines, strings, tmp)
        fast2, ids2, hf_differ = siglip2(lines, strings, tmp)
    for name, fast, ids in (("siglip", fast1, ids1), ("siglip2", fast2, ids2)):
        fast.save(os.path.join(OUT, f"{name}_tokenizer.json"))
        # Padding is not stored: every row is its ids followed by the padding id 0 (or 1 for
        # SigLIP's `</s>` padding) up to 64.
        rows = [[i for i in r] for r in ids]
        with open(os.path.join(OUT, f"{name}_ids.json"), "w", encoding="utf-8") as f:
            json.dump({"context_length": CONTEXT, "strings": strings, "ids": rows}, f, ensure_ascii=False,
                      separators=(",", ":"))
        print(f"wrote {name}: {len(strings)} strings")
    if hf_differ:
        print(f"note: transformers' Siglip2Tokenizer differed from SentencePiece on {hf_differ} strings")


if __name__ == "__main__":
    main()
