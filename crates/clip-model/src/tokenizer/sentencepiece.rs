//! SigLIP's SentencePiece tokenizers, loaded from the model repository's `tokenizer.json`.
//!
//! SigLIP uses a 32k SentencePiece vocabulary (T5's), multilingual SigLIP and SigLIP 2 the 256k
//! Gemma vocabulary. Both are far too large to embed, so they are read from the `tokenizer.json`
//! beside the weights (the Hugging Face `tokenizers` format, which the repositories ship and
//! transformers writes when it converts a SentencePiece model). [`SentencePieceTokenizer`] runs
//! it through the `tokenizers` crate, after the text cleaning the model was trained with
//! ([`TextCleaning`]), then pads every row to the context length (64) and cuts longer texts
//! (keeping the end-of-sequence token the file's post-processor appends).
//!
//! What is verified here (`tests/sentencepiece_parity.rs`, fixtures from
//! `tools/reference/sentencepiece_tokenizer.py`): on SentencePiece models trained by the
//! `sentencepiece` package on a small multilingual corpus (English, Chinese, Japanese, Russian,
//! Arabic, Greek, emoji, punctuation and whitespace runs) and converted to `tokenizer.json` by
//! transformers' converters, the ids equal transformers' `SiglipTokenizer` (the SentencePiece
//! library itself, T5-style unigram model, [`TextCleaning::Siglip`]) and the SentencePiece library
//! directly for a Gemma-style byte-fallback BPE model with lower-casing ([`TextCleaning::Lowercase`]),
//! on thousands of strings. What is not verified: the released 32k and 256k vocabularies
//! themselves (they cannot be fetched here), and which special tokens the released
//! `tokenizer.json` files add (their post-processors are followed as they are).

use std::path::Path;

use crate::error::{Error, Result};
use crate::tokenizer::{TokenBatch, Truncation};

/// SigLIP's text length.
pub const SIGLIP_CONTEXT_LENGTH: usize = 64;

/// The text cleaning applied before the SentencePiece model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TextCleaning {
    /// None: the text goes to the tokenizer as it is.
    None,
    /// Lower-case only, character by character (SigLIP 2, trained on lower-cased text;
    /// transformers' `Siglip2Tokenizer` puts the `tokenizers` `Lowercase` normaliser in front of
    /// Gemma's).
    #[default]
    Lowercase,
    /// transformers' `SiglipTokenizer.canonicalize_text` (big_vision's): lower-case (Python's
    /// `str.lower()`, final sigma included), remove
    /// ASCII punctuation (Python's `string.punctuation`), collapse whitespace runs to one space,
    /// strip.
    Siglip,
    /// open_clip's `canonicalize` cleaning of its SigLIP tokenizers: `_` → space, remove ASCII
    /// punctuation, lower-case, collapse whitespace, strip.
    OpenClipCanonicalize,
}

/// Python's `string.punctuation`.
const PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// Python's `str.isspace` (Unicode White_Space plus the information separators U+001C–U+001F).
fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Whitespace runs collapsed to one space, ends stripped (Python's `" ".join(s.split())`, which
/// for `re.sub(r"\s+", " ", s).strip()` gives the same string).
fn collapse_whitespace(s: &str) -> String {
    s.split(py_isspace)
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

impl TextCleaning {
    /// Applies the cleaning to one text.
    pub fn apply(&self, text: &str) -> String {
        let strip_punct = |s: &str| s.chars().filter(|c| !PUNCTUATION.contains(*c)).collect();
        match self {
            TextCleaning::None => text.to_string(),
            // Character by character, as the `tokenizers` Lowercase normaliser does (a final
            // capital sigma becomes σ, where Python's `str.lower()` writes ς).
            TextCleaning::Lowercase => text.chars().flat_map(char::to_lowercase).collect(),
            TextCleaning::Siglip => {
                let s: String = strip_punct(&text.to_lowercase());
                collapse_whitespace(&s)
            }
            TextCleaning::OpenClipCanonicalize => {
                let s: String = strip_punct(&text.replace('_', " "));
                collapse_whitespace(&s.to_lowercase())
            }
        }
    }
}

/// Options of [`SentencePieceTokenizer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentencePieceOptions {
    /// Tokens per row, padding included (64 for SigLIP).
    pub context_length: usize,
    /// Text cleaning before tokenizing.
    pub cleaning: TextCleaning,
    /// What to do with texts longer than `context_length`. SigLIP's references cut them
    /// (transformers' `truncation=True`), which is the default here.
    pub truncation: Truncation,
    /// The padding id; `None`: the file's padding id, else its `<pad>` token, else `</s>`.
    pub pad_id: Option<u32>,
}

impl SentencePieceOptions {
    /// SigLIP as transformers' `SiglipTokenizer` runs it: its canonicalisation, padding with
    /// `</s>` (id 1, the text config's `pad_token_id`), 64 tokens, longer texts cut.
    pub fn siglip() -> Self {
        Self {
            cleaning: TextCleaning::Siglip,
            pad_id: Some(1),
            ..Self::default()
        }
    }

    /// SigLIP 2 as transformers' `Siglip2Tokenizer` runs it: lower-cased, padded on the right
    /// with the file's `<pad>` (id 0 in Gemma's vocabulary), 64 tokens, longer texts cut.
    pub fn siglip2() -> Self {
        Self::default()
    }
}

impl Default for SentencePieceOptions {
    fn default() -> Self {
        Self {
            context_length: SIGLIP_CONTEXT_LENGTH,
            cleaning: TextCleaning::Lowercase,
            truncation: Truncation::Truncate,
            pad_id: None,
        }
    }
}

/// A SentencePiece tokenizer from a `tokenizer.json` (see the module docs).
#[derive(Debug, Clone)]
pub struct SentencePieceTokenizer {
    inner: tokenizers::Tokenizer,
    options: SentencePieceOptions,
    pad_id: u32,
}

impl SentencePieceTokenizer {
    /// Loads `tokenizer.json`.
    pub fn from_file(path: impl AsRef<Path>, options: SentencePieceOptions) -> Result<Self> {
        let path = path.as_ref();
        let bytes = safe_file::read(path, 256 << 20)?;
        Self::from_file_bytes(path, &bytes, options)
    }

    /// [`Self::from_bytes`] for the contents of the file at `path`, named in its errors.
    fn from_file_bytes(path: &Path, bytes: &[u8], options: SentencePieceOptions) -> Result<Self> {
        Self::from_bytes(bytes, options).map_err(|e| match e {
            Error::Tokenizer(reason) => Error::Config {
                path: path.to_path_buf(),
                reason: format!("not a usable tokenizer.json: {reason}"),
            },
            other => other,
        })
    }

    /// A SigLIP repository's `tokenizer.json` with the options of its generation, told apart by
    /// the file's model: a byte-fallback BPE (Gemma's vocabulary: SigLIP 2) gets
    /// [`SentencePieceOptions::siglip2`], a unigram model (T5-style: SigLIP) gets
    /// [`SentencePieceOptions::siglip`].
    pub fn siglip_from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = safe_file::read(path, 256 << 20)?;
        let kind = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.pointer("/model/type")?.as_str().map(str::to_owned));
        let options = match kind.as_deref() {
            Some("BPE") => SentencePieceOptions::siglip2(),
            Some("Unigram") => SentencePieceOptions::siglip(),
            other => {
                return Err(Error::Config {
                    path: path.to_path_buf(),
                    reason: format!(
                        "model.type is {other:?}; a SigLIP tokenizer.json holds a `Unigram` \
                         (SigLIP) or `BPE` (SigLIP 2) model"
                    ),
                });
            }
        };
        Self::from_file_bytes(path, &bytes, options)
    }

    /// Reads the contents of a `tokenizer.json`.
    pub fn from_bytes(json: &[u8], options: SentencePieceOptions) -> Result<Self> {
        if options.context_length < 1 || options.context_length > 65536 {
            return Err(Error::InvalidContextLength {
                context_length: options.context_length,
            });
        }
        let mut inner =
            tokenizers::Tokenizer::from_bytes(json).map_err(|e| Error::Tokenizer(e.to_string()))?;
        let pad_id = match options.pad_id {
            Some(id) => id,
            None => inner
                .get_padding()
                .map(|p| p.pad_id)
                .or_else(|| inner.token_to_id("<pad>"))
                .or_else(|| inner.token_to_id("</s>"))
                .ok_or_else(|| {
                    Error::Tokenizer(
                        "no padding id: the file has no padding settings, `<pad>` or `</s>`".into(),
                    )
                })?,
        };
        // Padding and truncation are done here, the same way for every file.
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(Self {
            inner,
            options,
            pad_id,
        })
    }

    /// The options.
    pub fn options(&self) -> &SentencePieceOptions {
        &self.options
    }

    /// The padding id.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Vocabulary size, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The ids of one text, special tokens included, without padding or truncation.
    pub fn encode_unpadded(&self, text: &str) -> Result<Vec<u32>> {
        let cleaned = self.options.cleaning.apply(text);
        let enc = self
            .inner
            .encode(cleaned.as_str(), true)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// One row of exactly `context_length` ids: the text's ids (cut to fit, the file's last
    /// special token kept), then padding.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.encode_row(text, self.options.truncation)
    }

    /// [`SentencePieceTokenizer::encode`] with another choice of truncation.
    fn encode_row(&self, text: &str, truncation: Truncation) -> Result<Vec<u32>> {
        let n = self.options.context_length;
        let mut ids = self.encode_unpadded(text)?;
        if ids.len() > n {
            if truncation == Truncation::Error {
                return Err(Error::TextTooLong {
                    start: text.chars().take(40).collect(),
                    tokens: ids.len(),
                    context_length: n,
                });
            }
            ids = self.truncate(text, ids)?;
        }
        ids.resize(n, self.pad_id);
        Ok(ids)
    }

    /// transformers' truncation: the text's own tokens are cut so that they and the special
    /// tokens fit, the special tokens stay.
    fn truncate(&self, text: &str, ids: Vec<u32>) -> Result<Vec<u32>> {
        let n = self.options.context_length;
        let cleaned = self.options.cleaning.apply(text);
        let plain = self
            .inner
            .encode(cleaned.as_str(), false)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        let plain = plain.get_ids();
        let specials = ids.len().saturating_sub(plain.len());
        let keep = n.saturating_sub(specials);
        // The special tokens around the text, found by aligning the plain ids inside `ids`.
        let start = (0..=ids.len().saturating_sub(plain.len()))
            .find(|&s| ids[s..].starts_with(plain))
            .unwrap_or(0);
        let mut out = ids[..start].to_vec();
        out.extend_from_slice(&plain[..keep.min(plain.len())]);
        out.extend_from_slice(&ids[start + plain.len()..]);
        out.truncate(n);
        Ok(out)
    }

    /// Rows for many texts, in parallel, as a [`TokenBatch`] (its end-of-text positions are the
    /// last non-padding position of each row).
    pub fn encode_batch<S: AsRef<str> + Sync>(&self, texts: &[S]) -> Result<TokenBatch> {
        use rayon::prelude::*;
        let rows = texts
            .par_iter()
            .map(|t| self.encode(t.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        Ok(self.batch(rows))
    }

    /// [`SentencePieceTokenizer::encode_batch`] with another choice of truncation.
    pub fn encode_batch_with<S: AsRef<str>>(
        &self,
        texts: &[S],
        truncation: Truncation,
    ) -> Result<TokenBatch> {
        let rows = texts
            .iter()
            .map(|t| self.encode_row(t.as_ref(), truncation))
            .collect::<Result<Vec<_>>>()?;
        Ok(self.batch(rows))
    }

    fn batch(&self, rows: Vec<Vec<u32>>) -> TokenBatch {
        let eot_positions = rows
            .iter()
            .map(|r| r.iter().rposition(|&id| id != self.pad_id).unwrap_or(0))
            .collect();
        TokenBatch {
            ids: rows.concat(),
            context_length: self.options.context_length,
            eot_positions,
        }
    }

    /// The text of `ids` (special tokens skipped).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, true)
            .map_err(|e| Error::Tokenizer(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleanings_follow_their_python_definitions() {
        let t = "  A photo_of a CAT!\u{3000}(big)\t\u{1f}ΟΔΟΣ  ";
        // transformers SiglipTokenizer: lower, punctuation removed, whitespace collapsed.
        assert_eq!(TextCleaning::Siglip.apply(t), "a photoof a cat big οδος");
        // open_clip canonicalize: '_' becomes a space first.
        assert_eq!(
            TextCleaning::OpenClipCanonicalize.apply(t),
            "a photo of a cat big οδος"
        );
        assert_eq!(TextCleaning::Lowercase.apply("Ab Ç ΟΔΟΣ"), "ab ç οδοσ");
        assert_eq!(TextCleaning::None.apply("Ab"), "Ab");
    }
}
