//! Chinese-CLIP's tokenizer: BERT's basic tokenizer, then WordPiece, with cn_clip's Chinese
//! vocabulary (21,128 tokens) embedded in the crate.
//!
//! It reproduces `cn_clip.clip.tokenize` (cn_clip 1.6.0, `bert_tokenizer.py`'s `FullTokenizer`):
//!
//! 1. clean-up: NUL, U+FFFD and control characters (categories `Cc`, `Cf`, except tab, line feed and
//!    carriage return) are dropped, white space (those three, space, category `Zs`) becomes a space;
//! 2. a space on both sides of every CJK ideograph (the code point ranges of `_is_chinese_char`,
//!    which differ from the newer ranges of the `tokenizers` crate's `BertNormalizer` at
//!    U+2B820..U+2B91F, one reason the normaliser there is not used);
//! 3. split on Python's white space (`str.split()`); each piece lower-cased (`str.lower`), NFD
//!    decomposed with non-spacing marks (`Mn`) removed, and split around punctuation (ASCII
//!    non-alphanumerics and categories `P*`);
//! 4. WordPiece: greedy longest match from the left with the `##` prefix inside a word, a word
//!    with no match (or longer than 200 characters) becoming `[UNK]`;
//! 5. `[CLS]` (101), at most `context_length - 2` tokens, `[SEP]` (102), zeros up to the context
//!    length (52 for every Chinese-CLIP model).
//!
//! The vocabulary is read as cn_clip reads `vocab.txt`: one token per `\n`-terminated line, with
//! Python's `str.strip()` applied (so the line holding U+2028 becomes the empty token, which never
//! matches), ids in line order.
//!
//! Unicode versions: the reference's `unicodedata` is Unicode 14 (Python 3.11). Lower-casing uses
//! Rust's `char::to_lowercase`, identical to Python's on every code point assigned in Unicode 14
//! (checked by the OpenAI tokenizer's tests); the general categories come from the
//! `unicode-properties` crate and NFD from `unicode-normalization` (both newer Unicode versions),
//! and the unit tests compare every code point assigned in Unicode 14 with Python's classes
//! (control, white space, punctuation, CJK, non-spacing mark, `str.isspace`) and NFD: identical.
//! Characters assigned after Unicode 14 are unassigned (`Cn`) to the reference and may be
//! classified differently here (for example new punctuation splits a word here and not there).

use std::collections::HashMap;
use std::io::Read;

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, GeneralCategoryGroup, UnicodeGeneralCategory};

use super::{TokenBatch, Truncation, frame_row};
use crate::{Error, Result};

/// Id of `[PAD]` (also the padding value of a batch).
pub const CN_PAD: u32 = 0;
/// Id of `[UNK]`.
pub const CN_UNK: u32 = 100;
/// Id of `[CLS]`, the first token of every row (the text embedding is read there).
pub const CN_CLS: u32 = 101;
/// Id of `[SEP]`, the last token of every row.
pub const CN_SEP: u32 = 102;
/// Tokens in cn_clip's vocabulary.
pub const CN_VOCAB_SIZE: usize = 21128;
/// The context length of every Chinese-CLIP model (cn_clip's `tokenize` default).
pub const CN_CONTEXT_LENGTH: usize = 52;

/// A word longer than this many characters becomes `[UNK]` (`max_input_chars_per_word`).
const MAX_WORD_CHARS: usize = 200;

static CN_VOCAB_GZ: &[u8] = include_bytes!("../../assets/cn_clip_vocab.txt.gz");

/// The WordPiece model: the vocabulary and its inverse.
#[derive(Debug)]
pub(crate) struct WordPiece {
    vocab: HashMap<String, u32>,
    tokens: Vec<String>,
}

impl WordPiece {
    /// cn_clip's vocabulary, embedded in the crate.
    pub(crate) fn cn_clip() -> Result<Self> {
        let mut text = String::new();
        flate2::read::GzDecoder::new(CN_VOCAB_GZ)
            .read_to_string(&mut text)
            .map_err(|e| Error::Tokenizer(format!("cannot read the gzipped vocabulary: {e}")))?;
        let wp = Self::from_vocab_text(&text)?;
        let want = [
            ("[PAD]", CN_PAD),
            ("[UNK]", CN_UNK),
            ("[CLS]", CN_CLS),
            ("[SEP]", CN_SEP),
        ];
        if wp.tokens.len() != CN_VOCAB_SIZE || want.iter().any(|(t, id)| wp.id(t) != Some(*id)) {
            return Err(Error::Tokenizer(format!(
                "the vocabulary has {} tokens or misplaced special tokens, expected {CN_VOCAB_SIZE} \
                 with [PAD] 0, [UNK] 100, [CLS] 101, [SEP] 102",
                wp.tokens.len()
            )));
        }
        Ok(wp)
    }

    /// A vocabulary in the format of BERT's `vocab.txt` (one token per line).
    pub(crate) fn from_vocab_text(text: &str) -> Result<Self> {
        let mut vocab = HashMap::new();
        let mut tokens = Vec::new();
        // Python's `readline` ends lines at '\n' (and a lone '\r'); the file has neither inside tokens.
        let body = text.strip_suffix('\n').unwrap_or(text);
        for (i, line) in body.split('\n').enumerate() {
            let token = line.trim_matches(is_python_space).to_owned();
            let id = u32::try_from(i)
                .map_err(|_| Error::Tokenizer("the vocabulary has too many lines".into()))?;
            // As `vocab[token] = index` in an OrderedDict: a repeated token keeps its last id.
            vocab.insert(token.clone(), id);
            tokens.push(token);
        }
        if tokens.is_empty() {
            return Err(Error::Tokenizer("the vocabulary is empty".into()));
        }
        Ok(Self { vocab, tokens })
    }

    fn id(&self, token: &str) -> Option<u32> {
        self.vocab.get(token).copied()
    }

    /// Number of ids.
    pub(crate) fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// The token ids of `text`, without `[CLS]` / `[SEP]`.
    pub(crate) fn tokenize(&self, text: &str) -> Vec<u32> {
        let unk = self.id("[UNK]").unwrap_or(CN_UNK);
        let mut ids = Vec::new();
        let mut piece = String::new();
        for word in basic_tokenize(text) {
            let chars: Vec<char> = word.chars().collect();
            if chars.len() > MAX_WORD_CHARS {
                ids.push(unk);
                continue;
            }
            let start_len = ids.len();
            let mut start = 0;
            let mut bad = false;
            while start < chars.len() {
                let mut end = chars.len();
                let mut found = None;
                while start < end {
                    piece.clear();
                    if start > 0 {
                        piece.push_str("##");
                    }
                    piece.extend(&chars[start..end]);
                    if let Some(id) = self.id(&piece) {
                        found = Some(id);
                        break;
                    }
                    end -= 1;
                }
                match found {
                    Some(id) => ids.push(id),
                    None => {
                        bad = true;
                        break;
                    }
                }
                start = end;
            }
            if bad {
                ids.truncate(start_len);
                ids.push(unk);
            }
        }
        ids
    }

    /// Text from ids, as cn_clip's `convert_tokens_to_string`: tokens joined by spaces, `" ##"`
    /// removed, the English clean-up of spaces before punctuation applied.
    pub(crate) fn decode(&self, ids: &[u32]) -> Result<String> {
        let mut tokens = Vec::with_capacity(ids.len());
        for &id in ids {
            let t = self.tokens.get(id as usize).ok_or_else(|| {
                Error::InvalidInput(format!(
                    "token id {id} is outside the vocabulary (size {})",
                    self.tokens.len()
                ))
            })?;
            tokens.push(t.as_str());
        }
        let text = tokens.join(" ").replace(" ##", "");
        let text = text.trim_matches(is_python_space);
        Ok([
            (" .", "."),
            (" ?", "?"),
            (" !", "!"),
            (" ,", ","),
            (" ' ", "'"),
            (" n't", "n't"),
            (" 'm", "'m"),
            (" 's", "'s"),
            (" 've", "'ve"),
            (" 're", "'re"),
        ]
        .iter()
        .fold(text.to_owned(), |t, (a, b)| t.replace(a, b)))
    }

    /// `[CLS]`, tokens, `[SEP]`, zero padding, as `cn_clip.clip.tokenize`.
    pub(crate) fn encode_batch<S: AsRef<str>>(
        &self,
        texts: &[S],
        context_length: usize,
        truncation: Truncation,
    ) -> Result<TokenBatch> {
        let total = texts
            .len()
            .checked_mul(context_length)
            .ok_or(Error::InvalidContextLength { context_length })?;
        let (cls, sep) = (
            self.id("[CLS]").unwrap_or(CN_CLS),
            self.id("[SEP]").unwrap_or(CN_SEP),
        );
        let encoded: Vec<Vec<u32>> = texts.iter().map(|t| self.tokenize(t.as_ref())).collect();
        let mut ids = vec![CN_PAD; total];
        let mut eot_positions = Vec::with_capacity(texts.len());
        for ((row, tokens), text) in ids
            .chunks_exact_mut(context_length)
            .zip(&encoded)
            .zip(texts)
        {
            let end = frame_row(row, tokens, (cls, sep), text.as_ref(), truncation)?;
            eot_positions.push(end);
        }
        Ok(TokenBatch {
            ids,
            context_length,
            eot_positions,
        })
    }
}

/// Python's `str.isspace()`: Unicode `White_Space` plus the information separators U+001C..U+001F.
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `_is_whitespace`: space, tab, line feed, carriage return, category `Zs`.
pub(crate) fn is_bert_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r') || c.general_category() == GeneralCategory::SpaceSeparator
}

/// `_is_control`: categories `Cc` and `Cf`, except tab, line feed and carriage return.
pub(crate) fn is_bert_control(c: char) -> bool {
    !matches!(c, '\t' | '\n' | '\r')
        && matches!(
            c.general_category(),
            GeneralCategory::Control | GeneralCategory::Format
        )
}

/// `_is_punctuation`: ASCII non-alphanumerics (33–47, 58–64, 91–96, 123–126) and categories `P*`.
pub(crate) fn is_bert_punctuation(c: char) -> bool {
    matches!(c as u32, 33..=47 | 58..=64 | 91..=96 | 123..=126)
        || c.general_category_group() == GeneralCategoryGroup::Punctuation
}

/// `_is_chinese_char`: the CJK ideograph blocks as cn_clip lists them.
pub(crate) fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF
        | 0x3400..=0x4DBF
        | 0x20000..=0x2A6DF
        | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F
        | 0x2B820..=0x2CEAF
        | 0xF900..=0xFAFF
        | 0x2F800..=0x2FA1F)
}

/// Category `Mn` in the reference's Unicode 14, which `_run_strip_accents` removes after NFD.
/// U+1171E (Ahom consonant sign medial ra) was `Mn` there and is `Mc` since Unicode 16.
fn is_nonspacing_mark(c: char) -> bool {
    c.general_category() == GeneralCategory::NonspacingMark || c == '\u{1171E}'
}

/// Lower case, NFD, non-spacing marks removed (`token.lower()` then `_run_strip_accents`).
fn lower_strip_accents(word: &str) -> String {
    let lower = word.to_lowercase();
    if lower.is_ascii() {
        return lower;
    }
    lower.nfd().filter(|c| !is_nonspacing_mark(*c)).collect()
}

/// BERT's `BasicTokenizer.tokenize` with `do_lower_case=True`: the words WordPiece then splits.
pub(crate) fn basic_tokenize(text: &str) -> Vec<String> {
    let mut cleaned = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if c == '\0' || c == '\u{fffd}' || is_bert_control(c) {
            continue;
        }
        if is_bert_whitespace(c) {
            cleaned.push(' ');
        } else if is_cjk(c) {
            cleaned.push(' ');
            cleaned.push(c);
            cleaned.push(' ');
        } else {
            cleaned.push(c);
        }
    }
    let mut out = Vec::new();
    for token in cleaned.split(is_python_space).filter(|t| !t.is_empty()) {
        let token = lower_strip_accents(token);
        // `_run_split_on_punc`, then `whitespace_tokenize(" ".join(...))`: the accent-stripped text
        // can hold white space again (NFD never makes any, but a mark-only token becomes empty).
        let mut word = String::new();
        for c in token.chars() {
            if is_bert_punctuation(c) {
                if !word.is_empty() {
                    out.extend(
                        word.split(is_python_space)
                            .filter(|w| !w.is_empty())
                            .map(str::to_owned),
                    );
                    word.clear();
                }
                out.push(c.to_string());
            } else {
                word.push(c);
            }
        }
        if !word.is_empty() {
            out.extend(
                word.split(is_python_space)
                    .filter(|w| !w.is_empty())
                    .map(str::to_owned),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_tokenizer_splits_cjk_and_punctuation() {
        assert_eq!(
            basic_tokenize("一张Café的照片，ok?"),
            ["一", "张", "cafe", "的", "照", "片", "，", "ok", "?"]
        );
        assert_eq!(basic_tokenize("  \t\u{200b}\n "), Vec::<String>::new());
    }

    #[test]
    fn vocabulary_lines_are_stripped_like_python() {
        let wp = WordPiece::from_vocab_text("[PAD]\n a \n\u{2028}\n##b\n").unwrap();
        assert_eq!(wp.vocab_size(), 4);
        assert_eq!(
            (wp.id("a"), wp.id(""), wp.id("##b")),
            (Some(1), Some(2), Some(3))
        );
        assert_eq!(wp.tokenize("ab"), [1, 3]);
    }

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        let bytes = std::fs::read(&path).unwrap();
        if name.ends_with(".gz") {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(bytes.as_slice())
                .read_to_end(&mut out)
                .unwrap();
            out
        } else {
            bytes
        }
    }

    /// `(start, classes)` runs of `cn_tokenizer_char_classes.txt` (see `tools/reference/cn_clip_parity.py`).
    fn python_classes() -> Vec<(u32, u32)> {
        String::from_utf8(fixture("cn_tokenizer_char_classes.txt"))
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let (a, b) = l.split_once(' ').unwrap();
                (u32::from_str_radix(a, 16).unwrap(), b.parse().unwrap())
            })
            .collect()
    }

    /// The classes of every code point assigned in the reference's Unicode version (14.0) against
    /// Python's `bert_tokenizer` functions.
    #[test]
    fn character_classes_match_python_on_assigned_code_points() {
        let runs = python_classes();
        let (mut compared, mut differences) = (0, Vec::new());
        for (i, &(start, want)) in runs.iter().enumerate() {
            let end = runs.get(i + 1).map_or(0x110000, |r| r.0);
            if want & 64 != 0 {
                continue; // unassigned in Unicode 14
            }
            for c in (start..end).filter_map(char::from_u32) {
                compared += 1;
                let ours = u32::from(c == '\0' || c == '\u{fffd}' || is_bert_control(c))
                    | u32::from(is_bert_whitespace(c)) << 1
                    | u32::from(is_bert_punctuation(c)) << 2
                    | u32::from(is_cjk(c)) << 3
                    | u32::from(is_nonspacing_mark(c)) << 4
                    | u32::from(is_python_space(c)) << 5;
                if ours != want {
                    differences.push(format!(
                        "U+{:04X}: ours {ours:07b}, Python {want:07b}",
                        c as u32
                    ));
                }
            }
        }
        println!(
            "{compared} assigned code points classified, {} differ",
            differences.len()
        );
        for d in differences.iter().take(40) {
            println!("{d}");
        }
        assert!(compared > 280_000);
        assert!(
            differences.is_empty(),
            "{} code points differ",
            differences.len()
        );
    }

    /// NFD of every assigned code point against Python's `unicodedata.normalize("NFD", c)`.
    #[test]
    fn nfd_matches_python_on_assigned_code_points() {
        let text = String::from_utf8(fixture("cn_tokenizer_nfd.txt.gz")).unwrap();
        let hex = |h: &str| char::from_u32(u32::from_str_radix(h, 16).unwrap()).unwrap();
        let python: HashMap<char, String> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let mut parts = l.split(' ');
                let c = hex(parts.next().unwrap());
                (c, parts.map(hex).collect())
            })
            .collect();
        let runs = python_classes();
        let (mut compared, mut differences) = (0, Vec::new());
        for (i, &(start, classes)) in runs.iter().enumerate() {
            let end = runs.get(i + 1).map_or(0x110000, |r| r.0);
            if classes & 64 != 0 {
                continue;
            }
            for c in (start..end).filter_map(char::from_u32) {
                compared += 1;
                let ours: String = c.nfd().collect();
                let want = python.get(&c).cloned().unwrap_or_else(|| c.to_string());
                if ours != want {
                    differences.push(format!("U+{:04X}", c as u32));
                }
            }
        }
        println!(
            "{compared} assigned code points decomposed, {} differ",
            differences.len()
        );
        assert!(differences.is_empty(), "{}", differences.join(" "));
    }
}
