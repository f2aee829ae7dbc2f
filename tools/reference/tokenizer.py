"""Tokenizer parity fixtures from OpenAI's own tokenizer (`clip/simple_tokenizer.py` of the `openai-clip`
package, which is github.com/openai/CLIP).

Writes, under crates/clip-model/tests/fixtures/:
  tokenizer_imagenet_prompts.json  the 1000 curated class names and 80 templates (prompt i*80+j is
                                   template j with class i), the SHA-256 of the ids file, the row count
  tokenizer_imagenet_ids.bin.gz    for each of the 80,000 prompts: one byte n, then n little-endian u16
                                   ids (`<|startoftext|>` ... `<|endoftext|>`, no padding)
  tokenizer_tricky.json            tricky strings: OpenAI's cleaned text, ids (untruncated, with the
                                   special tokens), the 77-id row of `clip.tokenize(truncate=True)`, and
                                   for strings that ftfy's mojibake repair changes, the ids OpenAI's
                                   tokenizer gives with that one ftfy step off (what the Rust side
                                   reproduces; see crates/clip-model/src/tokenizer/mod.rs)
  tokenizer_char_classes.txt       how OpenAI's regex (Python `regex` module) treats each code point c
                                   between two letters / two `!`: runs of "start_hex class", class L
                                   (joins letters), N (a match of its own), O (joins punctuation),
                                   S (skipped like white space), U (unassigned in Python's
                                   `unicodedata`, Unicode 14: not compared)
  tokenizer_lowercase.txt          `str.lower()` of every assigned code point it changes

Needs the reference venv plus `openai-clip` (pip install --no-deps openai-clip==1.0.1; its package
`__init__` needs setuptools, so the tokenizer module is loaded from its file). Also checks that
open_clip's copy of the tokenizer agrees (it differs only on the special token names).

Run from the repository root:  $PY tools/reference/tokenizer.py
"""

import gzip
import hashlib
import importlib.util
import json
import os
import struct
import sys
import unicodedata
from pathlib import Path

import ftfy

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("CLIP_SHARED_DATA", ROOT.parent / "shared" / "data"))
OUT = ROOT / "crates" / "clip-model" / "tests" / "fixtures"
VOCAB = ROOT / "crates" / "clip-model" / "assets" / "bpe_simple_vocab_16e6.txt.gz"
CONTEXT = 77


def load_openai_tokenizer_module():
    spec = importlib.util.find_spec("clip")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("needs the openai-clip package: pip install --no-deps openai-clip==1.0.1")
    path = Path(list(spec.submodule_search_locations)[0]) / "simple_tokenizer.py"
    mod_spec = importlib.util.spec_from_file_location("openai_simple_tokenizer", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    bundled = Path(module.default_bpe()).read_bytes()
    assert hashlib.sha256(bundled).digest() == hashlib.sha256(VOCAB.read_bytes()).digest(), (
        "the embedded vocabulary differs from the one shipped with openai-clip"
    )
    return module


def clip_tokenize_row(ids):
    """`clip.tokenize(text, context_length=77, truncate=True)` for ids = [sot] + encode(text) + [eot]."""
    row = list(ids)
    if len(row) > CONTEXT:
        row = row[:CONTEXT]
        row[-1] = ids[-1]
    return row + [0] * (CONTEXT - len(row))


LONG = " ".join(
    "the quick brown fox jumps over the lazy dog while a photo of a tench is taken".split() * 8
)

TRICKY = [
    ("empty", ""),
    ("only spaces", "   \t \n "),
    ("readme example", "Hello World!"),
    ("prompt", "a photo of a cat."),
    ("leading and trailing spaces", "  leading and trailing  "),
    ("spaces tabs newlines", "multiple    spaces\t\ttabs\n\nnewlines\r\n crlf\rcr"),
    ("mixed case", "UPPER lower MiXeD CamelCase"),
    ("precomposed accents", "café naïve résumé Zoë Saldaña"),
    ("combining accents", "cafe\u0301 nai\u0308ve x\u0301\u0302\u0303 stacked"),
    ("angstrom sign", "\u212bngstr\u00f6m \u00c5 A\u030a"),
    ("sharp s", "straße STRASSE ẞ"),
    ("dotted capital i", "İstanbul DİYARBAKIR"),
    ("final sigma", "ΟΔΟΣ Σίσυφος ΣΑΣ"),
    ("greek titlecase", "ῼ ᾳ ᾼ"),
    ("ypogegrammeni", "b\u0345 \u0345 a\u0345"),
    ("digraph ligatures", "ǅemal Ǉubljana ǈ ǋ Ǆ"),
    ("latin ligatures", "ﬁsh ﬂower ﬀ ﬃ ﬄ ﬅ ﬆ Ĳssel"),
    ("n apostrophe ligature", "ŉ nie"),
    ("fullwidth", "ＬＯＵＤ　ＮＯＩＳＥＳ １２３ ！？"),
    ("halfwidth katakana", "ｶﾀｶﾅ ﾃｽﾄ"),
    ("japanese", "東京タワーの写真"),
    ("chinese sentence", "一张猫的照片。"),
    ("chinese punctuation", "我爱北京天安门，天安门上太阳升！"),
    ("korean", "한국어 문장입니다"),
    ("hangul jamo", "\u1100\u1161\u11a8 \u1112\u1161\u11ab"),
    ("cyrillic", "Привет, мир! Ёлка"),
    ("arabic", "مرحبا بالعالم"),
    ("hebrew", "שלום עולם"),
    ("devanagari", "नमस्ते दुनिया"),
    ("thai", "ภาษาไทย"),
    ("mixed scripts", "日本語と English mixed テキスト123"),
    ("emoji", "emoji 😀😃 🐱 🚀"),
    ("zwj family", "👨\u200d👩\u200d👧\u200d👦 family"),
    ("zwj ninja cat and astronaut", "🐱\u200d👤 \U0001F9D1\u200d\U0001F680"),
    ("skin tone", "👍🏽 thumbs"),
    ("flags", "🇺🇸🇫🇷 flags"),
    ("tag sequence flag", "🏴\U000E0067\U000E0062\U000E0065\U000E006E\U000E0067\U000E007F England"),
    ("variation selector", "❤️ heart ☺︎"),
    ("digits", "1234567890 3.14159 1,000,000"),
    ("other numbers", "٣٤٥ ½ ² Ⅻ ⅻ ① ⒈"),
    ("math alphanumerics", "𝐁𝐨𝐥𝐝 𝕄𝕒𝕥𝕙"),
    ("circled letters", "Ⓐⓑ ⓒ"),
    ("punctuation runs", "!!!??? ... --- *** !?!"),
    ("punctuation between letters", "a.b.c,d;e:f"),
    ("contractions", "it's they're we've I'm you'll he'd don't"),
    ("contractions upper", "IT'S THEY'RE WE'VE I'M YOU'LL HE'D DON'T"),
    ("contraction edge cases", "'s 'sa rock 'n' roll ''quoted'' o'clock"),
    ("long s and kelvin", "'ſ 'K ſ K"),
    ("curly quotes", "it’s don’t ‘single’ “double” ‛reversed‟ ʼmodifier"),
    ("html entities", "&amp; &lt;b&gt; &#39; &quot;hi&quot; &nbsp;x &copy;2024"),
    ("html with tag", "<b>bold</b> &amp; &amp;amp; &#39;"),
    ("html nested", "&amp;amp;amp;amp;"),
    ("html uppercase and prefixes", "&EACUTE;T&EACUTE; &notit; &ampx &AMP;"),
    ("html numeric", "&#x1F600; &#128512; &#0; &#x80; &#xD800; &#65535; &#9999999;"),
    ("html becomes tag", "&lt;script&gt;alert(1)&lt;/script&gt;"),
    ("html per line", "one &amp;amp;\n<b> two &amp;amp;amp;\nthree &amp;amp;"),
    ("url and ampersand", "email@example.com https://example.com/path?q=1&r=2&amp;s=3"),
    ("terminal escapes", "\x1b[31mred\x1b[0m text \x1b[1;4mbold"),
    ("control characters", "control\x00\x01\x07chars\x7f\x0bvt"),
    ("c1 controls", "c1 \x80 \x85 \x93quoted\x94 \x81"),
    ("information separators", "\x1c\x1d\x1e\x1f separators \x1f"),
    ("zero width", "zero\u200bwidth\u200cnon\u200djoiner\u2060wj"),
    ("byte order mark", "\ufeffbom\ufeffhere"),
    ("unicode spaces", "no-break\u00a0space\u2003em\u3000ideographic\u202fnarrow\u180emongolian"),
    ("line separators", "line\u2028separator\u2029para\x85nel"),
    ("bidi controls", "\u2066isolates\u2069 \u202eRTL override\u202c \u200fRLM"),
    ("deprecated format controls", "\u206adeprecated\u206f arabic"),
    ("annotation characters", "\ufff9annotation\ufffb \ufffcobj \ufffdreplacement"),
    ("soft hyphen", "soft\u00adhyphen"),
    ("arabic ligature", "ﷺ ﷲ"),
    ("special token names", "<|startoftext|>hello<|endoftext|>"),
    ("special names after punctuation", "!<|endoftext|> x <|ENDOFTEXT|>"),
    ("special names with long s", "<|ſtartoftext|> <|STARTOFTEXT|> 'ſ"),
    ("special names in a row", "<|endoftext|><|endoftext|>a!<|startoftext|>b <|startoftext|>!"),
    ("repeated letters", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
    ("repeated syllables", "lolololololol hahahahaha zzzzzz"),
    ("identifiers", "snake_case camelCase kebab-case C++ C# F# .NET"),
    ("currency", "$100 €50 £30 ¥1000 ₿ ₹"),
    ("math symbols", "°C ± × ÷ ∑ ∞ ≠ √2"),
    ("mojibake utf8 as latin1", "Ã©tÃ© cafÃ©"),
    ("mojibake quotes", "â€œquotedâ€\x9d"),
    ("mojibake doubled", "The Mona Lisa doesnÃ¢â‚¬â„¢t have eyebrows."),
    ("long text", LONG),
    ("long single letters", " ".join(["a"] * 100)),
    ("long cjk", "猫" * 120),
]


def char_classes(pat):
    """Runs of (first code point, class) of every code point under OpenAI's regex `pat`."""

    def cls(ch):
        between_letters = pat.findall("b" + ch + "b")
        if between_letters == ["b" + ch + "b"]:
            return "L"
        if between_letters == ["b", "b"]:
            return "S"
        assert between_letters == ["b", ch, "b"], hex(ord(ch))
        between_marks = pat.findall("!" + ch + "!")
        if between_marks == ["!" + ch + "!"]:
            return "O"
        assert between_marks == ["!", ch, "!"], hex(ord(ch))
        return "N"

    runs, prev = [], None
    for c in range(0x110000):
        if 0xD800 <= c <= 0xDFFF:
            kind = "O"
        elif unicodedata.category(chr(c)) == "Cn":
            kind = "U"  # unassigned in this Python's Unicode: regex engines' tables disagree here
        else:
            kind = cls(chr(c))
        if kind != prev:
            runs.append((c, kind))
            prev = kind
    return runs


def main():
    st = load_openai_tokenizer_module()
    tok = st.SimpleTokenizer(str(VOCAB))
    sot, eot = tok.encoder["<|startoftext|>"], tok.encoder["<|endoftext|>"]
    assert (sot, eot) == (49406, 49407)

    import open_clip.tokenizer as oc

    oc_tok = oc.SimpleTokenizer(str(VOCAB))

    def encode(text):
        return [sot] + tok.encode(text) + [eot]

    def cleaned(text):
        return st.whitespace_clean(st.basic_clean(text)).lower()

    # Ids with ftfy's mojibake repair off (everything else unchanged).
    real_fix_text = st.ftfy.fix_text

    class NoEncodingFix:
        @staticmethod
        def fix_text(text):
            return real_fix_text(text, fix_encoding=False)

    def without_encoding_fix(text):
        """(cleaned text, ids) of OpenAI's tokenizer with ftfy's mojibake repair off."""
        st.ftfy = NoEncodingFix
        try:
            ids = [sot] + st.SimpleTokenizer(str(VOCAB)).encode(text) + [eot]
            return cleaned(text), ids
        finally:
            st.ftfy = ftfy

    assert encode("Hello World!") == [49406, 3306, 1002, 256, 49407]

    # 1. ImageNet prompts.
    meta = json.loads((SHARED / "clip" / "openai_imagenet_classes_templates.json").read_text())
    classes, templates = meta["classes"], meta["templates"]
    blob = bytearray()
    longest = 0
    open_clip_differs = 0
    for name in classes:
        for template in templates:
            text = template.format(name)
            ids = encode(text)
            assert len(ids) <= CONTEXT and len(ids) < 256, text
            longest = max(longest, len(ids))
            blob += bytes([len(ids)]) + struct.pack(f"<{len(ids)}H", *ids)
            open_clip_differs += oc_tok.encode(text) != ids[1:-1]
    rows = len(classes) * len(templates)
    OUT.mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(OUT / "tokenizer_imagenet_ids.bin.gz", "wb", mtime=0) as f:
        f.write(bytes(blob))
    (OUT / "tokenizer_imagenet_prompts.json").write_text(
        json.dumps(
            {
                "source": "OpenAI CLIP notebook Prompt_Engineering_for_ImageNet (MIT licence), via "
                "../shared/data/clip/openai_imagenet_classes_templates.json",
                "reference": "openai-clip 1.0.1 clip/simple_tokenizer.py, ftfy " + ftfy.__version__,
                "rows": rows,
                "order": "prompt i*80+j = templates[j] with {} replaced by classes[i]",
                "ids_sha256": hashlib.sha256(bytes(blob)).hexdigest(),
                "classes": classes,
                "templates": templates,
            },
            ensure_ascii=False,
            indent=0,
        )
        + "\n"
    )
    print(f"{rows} prompts, longest {longest} ids, open_clip differs on {open_clip_differs}")

    # 2. Tricky strings.
    entries = []
    names = set()
    for name, text in TRICKY:
        assert name not in names, name
        names.add(name)
        ids = encode(text)
        entry = {
            "name": name,
            "text": text,
            "cleaned": cleaned(text),
            "ids": ids,
            "truncated_77": clip_tokenize_row(ids),
        }
        if real_fix_text(text, fix_encoding=False) != real_fix_text(text):
            no_fix_cleaned, no_fix_ids = without_encoding_fix(text)
            entry["without_mojibake_repair"] = {"cleaned": no_fix_cleaned, "ids": no_fix_ids}
        oc_ids = [sot] + oc_tok.encode(text) + [eot]
        if oc_ids != ids:
            print(f"  open_clip differs on {name!r}: {oc_ids} vs {ids}")
        entries.append(entry)
    (OUT / "tokenizer_tricky.json").write_text(
        json.dumps(
            {
                "reference": "openai-clip 1.0.1 clip/simple_tokenizer.py, ftfy " + ftfy.__version__,
                "context_length": CONTEXT,
                "strings": entries,
            },
            ensure_ascii=False,
            indent=1,
        )
        + "\n"
    )
    import regex

    runs = char_classes(tok.pat)
    assert tok.pat.flags & regex.IGNORECASE
    (OUT / "tokenizer_char_classes.txt").write_text(
        f"# OpenAI's pre-tokenizer regex on each code point (regex {regex.__version__}, "
        f"U = unassigned in Unicode {unicodedata.unidata_version}); "
        "see tools/reference/tokenizer.py\n" + "".join(f"{c:x} {k}\n" for c, k in runs)
    )
    print(f"{len(runs)} runs of code point classes")
    lower = [
        (c, chr(c).lower())
        for c in range(0x110000)
        if not 0xD800 <= c <= 0xDFFF
        and unicodedata.category(chr(c)) != "Cn"
        and chr(c).lower() != chr(c)
    ]
    (OUT / "tokenizer_lowercase.txt").write_text(
        f"# str.lower() of each code point it changes (Python {sys.version.split()[0]}, Unicode "
        f"{unicodedata.unidata_version}); see tools/reference/tokenizer.py\n"
        + "".join(f"{c:x} {' '.join(f'{ord(x):x}' for x in low)}\n" for c, low in lower)
    )
    print(f"{len(lower)} code points changed by lower()")
    mojibake = sum("without_mojibake_repair" in e for e in entries)
    print(f"{len(entries)} tricky strings ({mojibake} changed by ftfy's mojibake repair)")


if __name__ == "__main__":
    main()
