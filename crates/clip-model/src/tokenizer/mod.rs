//! OpenAI's CLIP tokenizer (byte-level BPE, 49,408 tokens), with the vocabulary embedded in the crate.
//!
//! [`Tokenizer::openai`] gives the ids of OpenAI's `simple_tokenizer.py`: clean-up (ftfy, HTML
//! unescaping, whitespace collapsing, lower-casing), the pre-tokenizer regex
//! `<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`
//! (case-insensitive, in Python's `regex` module), bytes mapped to printable characters, and BPE with the `</w>` end-of-word suffix.
//! [`Tokenizer::encode_batch`] adds `<|startoftext|>` ([`SOT`]) and `<|endoftext|>` ([`EOT`]) and pads
//! with 0 to the context length, like `clip.tokenize`.
//!
//! The BPE itself runs in the `tokenizers` crate: a pipeline built here from the embedded vocabulary (a
//! `Split` pre-tokenizer with OpenAI's regex, the byte-level mapping, a BPE model with the `</w>` suffix,
//! a byte-level decoder). Two things sit outside that pipeline, because `tokenizers` has no equivalent:
//!
//! * The clean-up, done in Rust before the pipeline. ftfy is Python-only; every ftfy step except mojibake
//!   repair is reproduced (see below).
//! * The special token names: OpenAI's regex matches `<|startoftext|>` / `<|endoftext|>` written in the
//!   text only where a match can start (not in `!<|endoftext|>`, where `!<|` is one punctuation run).
//!   `tokenizers`' added tokens are found anywhere, so instead the regex keeps them as words and the BPE
//!   model maps those two words to their ids, as OpenAI's BPE cache does.
//!
//! # Known differences from OpenAI's tokenizer
//!
//! * Mojibake: ftfy's `fix_encoding` repairs text that was decoded with the wrong encoding
//!   (`cafÃ©` → `café`, `â€œ` → `"`). That repair is a heuristic and is not reproduced: such text is
//!   tokenized as written. Correctly encoded text is not affected.
//! * Unicode versions: the reference's `str.lower` and NFC (Python 3.11) are Unicode 14, its regex
//!   classes (`regex` 2026.11.19) Unicode 17; Rust's and Oniguruma's tables are other versions. On all
//!   282,230 code points assigned in Unicode 14, lower-casing and the regex classes (letter, number,
//!   other, skipped) are checked identical (unit tests with fixtures). Characters assigned later
//!   differ: 55 lower-case differently, about 17,500 letters / numbers (Unicode 16/17 scripts and
//!   ideographs) are punctuation-like to Oniguruma. NFC of assigned characters is stable across
//!   versions by Unicode policy.
//! * ftfy cuts text longer than 1,000,000 characters without line breaks into pieces; this is not done.
//!
//! The parity tests (`tests/tokenizer_parity.rs`) compare with OpenAI's tokenizer on the 80,000 ImageNet
//! prompts and on tricky strings (accents, CJK, emoji, entities, curly quotes, control characters, …).

mod clean;
pub mod sentencepiece;
mod wordpiece;

pub use wordpiece::{CN_CLS, CN_CONTEXT_LENGTH, CN_PAD, CN_SEP, CN_UNK, CN_VOCAB_SIZE};

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainer, Merges, Vocab};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{
    Model, NormalizerWrapper, PostProcessorWrapper, SplitDelimiterBehavior, Token, TokenizerImpl,
};

use crate::{Error, Result};

/// Id of `<|startoftext|>`.
pub const SOT: u32 = 49406;
/// Id of `<|endoftext|>`.
pub const EOT: u32 = 49407;
/// Number of tokens in OpenAI's vocabulary.
pub const VOCAB_SIZE: usize = 49408;
/// The context length of all OpenAI CLIP models.
pub const DEFAULT_CONTEXT_LENGTH: usize = 77;

const SOT_TEXT: &str = "<|startoftext|>";
const EOT_TEXT: &str = "<|endoftext|>";
/// OpenAI's pattern as the `regex` module runs it on cleaned (lower-cased) text, written without the
/// case-insensitive flag, which only shows through three quirks (all code points checked in Python):
/// `ſ` (U+017F) matches `s`; U+0345 (combining ypogegrammeni, which folds to the letter ι) matches
/// neither `[\p{L}]` nor `[^\s\p{L}\p{N}]`, so it is skipped like white space; and nothing else
/// changes. The cleaned text's only white space is U+0020, so `[^ ...]` here is `[^\s ...]` there.
const PATTERN: &str = r"<\|[sſ]tartoftext\|>|<\|endoftext\|>|'[sſ]|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^ \p{L}\p{N}\x{345}]+";
/// Lines 1..=48894 of the vocabulary file are the merges used (`merges[1:49152-256-2+1]`).
const MERGES: usize = 49152 - 256 - 2;
/// Characters of a text an error message quotes.
const QUOTED_CHARS: usize = 40;

static OPENAI_VOCAB_GZ: &[u8] = include_bytes!("../../assets/bpe_simple_vocab_16e6.txt.gz");

type Pipeline = TokenizerImpl<
    ClipBpe,
    NormalizerWrapper,
    PreTokenizerWrapper,
    PostProcessorWrapper,
    DecoderWrapper,
>;

/// What to do with a text that has more tokens than the context length.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Truncation {
    /// Fail with [`Error::TextTooLong`] (the default).
    #[default]
    Error,
    /// Keep the first `context_length - 1` tokens and end with `<|endoftext|>`, as
    /// `clip.tokenize(..., truncate=True)` does.
    Truncate,
}

/// Token ids of a batch of texts: `len()` rows of `context_length()` ids, zero-padded, row-major.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenBatch {
    ids: Vec<u32>,
    context_length: usize,
    eot_positions: Vec<usize>,
}

impl TokenBatch {
    /// All ids, row after row (`len() * context_length()` values).
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// The ids, row after row, by value.
    pub fn into_ids(self) -> Vec<u32> {
        self.ids
    }

    /// Number of texts.
    pub fn len(&self) -> usize {
        self.eot_positions.len()
    }

    /// Whether the batch holds no text.
    pub fn is_empty(&self) -> bool {
        self.eot_positions.is_empty()
    }

    /// Ids per row.
    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// `[len(), context_length()]`.
    pub fn shape(&self) -> [usize; 2] {
        [self.len(), self.context_length]
    }

    /// The ids of text `i`, if there is one.
    pub fn row(&self, i: usize) -> Option<&[u32]> {
        let start = i.checked_mul(self.context_length)?;
        self.ids.get(start..start + self.context_length)
    }

    /// The rows in input order.
    pub fn rows(&self) -> impl Iterator<Item = &[u32]> {
        self.ids.chunks_exact(self.context_length)
    }

    /// Per row, the position of the first `<|endoftext|>`: the position whose output the text tower
    /// projects (OpenAI takes `argmax` of the ids, and [`EOT`] is the largest id).
    pub fn eot_positions(&self) -> &[usize] {
        &self.eot_positions
    }
}

/// The longest context [`Tokenizer::encode_batch`] accepts (OpenAI's models use 77).
pub const MAX_CONTEXT_LENGTH: usize = 1 << 16;

/// OpenAI's CLIP tokenizer. Cheap to clone (the BPE tables are shared).
///
/// ```
/// use clip_model::tokenizer::{Tokenizer, Truncation};
///
/// let tokenizer = Tokenizer::openai()?;
/// assert_eq!(tokenizer.encode("Hello World!")?, [49406, 3306, 1002, 256, 49407]);
/// let batch = tokenizer.encode_batch(&["a photo of a cat."], 77, Truncation::Error)?;
/// assert_eq!(batch.shape(), [1, 77]);
/// assert_eq!(batch.eot_positions(), [7]);
/// # Ok::<(), clip_model::Error>(())
/// ```
#[derive(Clone)]
pub struct Tokenizer {
    backend: Backend,
}

/// The tokenizer behind a [`Tokenizer`].
#[derive(Clone)]
enum Backend {
    /// OpenAI's byte-level BPE.
    Bpe(Arc<Pipeline>),
    /// BERT's basic tokenizer + WordPiece (Chinese-CLIP).
    WordPiece(Arc<wordpiece::WordPiece>),
    /// SentencePiece from a `tokenizer.json` (SigLIP, SigLIP 2).
    SentencePiece(Arc<sentencepiece::SentencePieceTokenizer>),
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("family", &self.family())
            .field("vocab_size", &self.vocab_size())
            .finish_non_exhaustive()
    }
}

impl Tokenizer {
    /// OpenAI's tokenizer with the vocabulary embedded in this crate (`bpe_simple_vocab_16e6.txt.gz`).
    /// Built once per process (about 0.1 s), then shared.
    pub fn openai() -> Result<Self> {
        static OPENAI: OnceLock<std::result::Result<Tokenizer, String>> = OnceLock::new();
        OPENAI
            .get_or_init(|| Self::from_vocab_gz(OPENAI_VOCAB_GZ).map_err(|e| e.to_string()))
            .clone()
            .map_err(Error::Tokenizer)
    }

    /// A tokenizer from a gzipped vocabulary in the format of OpenAI's `bpe_simple_vocab_16e6.txt.gz`
    /// (a header line, then one merge per line; the first 48,894 are used).
    pub fn from_vocab_gz(bytes: &[u8]) -> Result<Self> {
        let mut text = String::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_string(&mut text)
            .map_err(|e| Error::Tokenizer(format!("cannot read the gzipped vocabulary: {e}")))?;
        let lines: Vec<&str> = text.split('\n').collect();
        let merge_lines = lines.get(1..=MERGES).ok_or_else(|| {
            Error::Tokenizer(format!(
                "the vocabulary has {} lines, expected at least {}",
                lines.len(),
                MERGES + 1
            ))
        })?;
        let mut merges: Merges = Vec::with_capacity(MERGES);
        for (i, line) in merge_lines.iter().enumerate() {
            let mut parts = line.split_whitespace();
            match (parts.next(), parts.next(), parts.next()) {
                (Some(a), Some(b), None) => merges.push((a.to_owned(), b.to_owned())),
                _ => {
                    return Err(Error::Tokenizer(format!(
                        "vocabulary line {}: expected two symbols, found {line:?}",
                        i + 2
                    )));
                }
            }
        }
        let byte_chars = byte_to_char();
        let mut tokens: Vec<String> = Vec::with_capacity(VOCAB_SIZE);
        tokens.extend(byte_chars.iter().map(|c| c.to_string()));
        tokens.extend(byte_chars.iter().map(|c| format!("{c}</w>")));
        tokens.extend(merges.iter().map(|(a, b)| format!("{a}{b}")));
        tokens.push(SOT_TEXT.to_owned());
        tokens.push(EOT_TEXT.to_owned());
        // As Python's `dict(zip(vocab, range(len(vocab))))`: a repeated token keeps its last id.
        let vocab: Vocab = tokens.into_iter().zip(0u32..).collect();
        if vocab.len() != VOCAB_SIZE || vocab.get(EOT_TEXT) != Some(&EOT) {
            return Err(Error::Tokenizer(format!(
                "the vocabulary gives {} distinct tokens, expected {VOCAB_SIZE}",
                vocab.len()
            )));
        }
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .end_of_word_suffix("</w>".to_owned())
            .build()
            .map_err(|e| Error::Tokenizer(format!("cannot build the BPE model: {e}")))?;
        let split = Split::new(
            SplitPattern::Regex(PATTERN.to_owned()),
            SplitDelimiterBehavior::Removed,
            true,
        )
        .map_err(|e| Error::Tokenizer(format!("cannot compile the pre-tokenizer regex: {e}")))?;
        let mut pipeline = Pipeline::new(ClipBpe { bpe });
        pipeline
            .with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(Sequence::new(vec![
                PreTokenizerWrapper::Split(split),
                PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, false, false)),
            ]))))
            .with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevel::default())));
        Ok(Self {
            backend: Backend::Bpe(Arc::new(pipeline)),
        })
    }

    /// Chinese-CLIP's tokenizer (cn_clip's `tokenize`: BERT basic tokenizer + WordPiece,
    /// `[CLS] … [SEP]`, zero padding; context length [`CN_CONTEXT_LENGTH`]), with cn_clip's
    /// 21,128-token vocabulary embedded in this crate. Built once per process, then shared.
    ///
    /// ```
    /// use clip_model::tokenizer::{CN_CONTEXT_LENGTH, Tokenizer, Truncation};
    ///
    /// let tokenizer = Tokenizer::cn_clip()?;
    /// let batch = tokenizer.encode_batch(&["一只猫的照片。"], CN_CONTEXT_LENGTH, Truncation::Error)?;
    /// assert_eq!(batch.shape(), [1, 52]);
    /// assert_eq!(&batch.row(0).unwrap()[..9], [101, 671, 1372, 4344, 4638, 4212, 4275, 511, 102]);
    /// # Ok::<(), clip_model::Error>(())
    /// ```
    pub fn cn_clip() -> Result<Self> {
        static CN: OnceLock<std::result::Result<Tokenizer, String>> = OnceLock::new();
        CN.get_or_init(|| {
            wordpiece::WordPiece::cn_clip()
                .map(|wp| Tokenizer {
                    backend: Backend::WordPiece(Arc::new(wp)),
                })
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(Error::Tokenizer)
    }

    /// A SigLIP / SigLIP 2 tokenizer (its `tokenizer.json`, see
    /// [`sentencepiece::SentencePieceTokenizer`]) behind the common interface: rows are always
    /// its `context_length` (64) long, padded with its padding id.
    pub fn sentencepiece(tokenizer: sentencepiece::SentencePieceTokenizer) -> Self {
        Tokenizer {
            backend: Backend::SentencePiece(Arc::new(tokenizer)),
        }
    }

    /// The embedded tokenizer a model family was trained with: [`Tokenizer::openai`] or
    /// [`Tokenizer::cn_clip`]. SigLIP's vocabulary is not embedded (it comes with the weights:
    /// [`Tokenizer::sentencepiece`]), so [`crate::ModelFamily::Siglip`] is an error naming
    /// `tokenizer.json`.
    pub fn for_family(family: crate::ModelFamily) -> Result<Self> {
        match family {
            crate::ModelFamily::ChineseClip => Self::cn_clip(),
            crate::ModelFamily::Clip => Self::openai(),
            crate::ModelFamily::Siglip => Err(Error::Tokenizer(
                "SigLIP's tokenizer is not embedded: load the model's tokenizer.json \
                 (Tokenizer::sentencepiece)"
                    .into(),
            )),
        }
    }

    /// The family whose tokenizer this is.
    pub fn family(&self) -> crate::ModelFamily {
        match self.backend {
            Backend::Bpe(_) => crate::ModelFamily::Clip,
            Backend::WordPiece(_) => crate::ModelFamily::ChineseClip,
            Backend::SentencePiece(_) => crate::ModelFamily::Siglip,
        }
    }

    /// Number of token ids (49,408 for OpenAI's, 21,128 for Chinese-CLIP's, the file's for
    /// SentencePiece): a text tower needs at least this many token embeddings.
    pub fn vocab_size(&self) -> usize {
        match &self.backend {
            Backend::Bpe(_) => VOCAB_SIZE,
            Backend::WordPiece(wp) => wp.vocab_size(),
            Backend::SentencePiece(sp) => sp.vocab_size(),
        }
    }

    /// The context length the models of this tokenizer's family use (77, 52, or the
    /// SentencePiece tokenizer's 64).
    pub fn default_context_length(&self) -> usize {
        match &self.backend {
            Backend::SentencePiece(sp) => sp.options().context_length,
            _ => self.family().context_length(),
        }
    }

    fn bpe(&self) -> Result<&Pipeline> {
        match &self.backend {
            Backend::Bpe(p) => Ok(p),
            _ => Err(Error::Tokenizer(format!(
                "the {} tokenizer has no BPE pipeline",
                self.family()
            ))),
        }
    }

    /// The ids of `text`: `<|startoftext|>`, the text's tokens, `<|endoftext|>`; no padding and no
    /// length limit.
    ///
    /// For [`Tokenizer::cn_clip`]: `[CLS]`, the text's tokens, `[SEP]`.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        if let Backend::WordPiece(wp) = &self.backend {
            let mut ids = vec![CN_CLS];
            ids.extend(wp.tokenize(text));
            ids.push(CN_SEP);
            return Ok(ids);
        }
        if let Backend::SentencePiece(sp) = &self.backend {
            return sp.encode_unpadded(text);
        }
        let mut ids = vec![SOT];
        ids.extend(self.encode_cleaned(&clean::clean(text))?);
        ids.push(EOT);
        Ok(ids)
    }

    /// The ids of each text as `clip.tokenize` makes them: `<|startoftext|>`, tokens, `<|endoftext|>`,
    /// zeros up to `context_length` (77 for all OpenAI models). A text with more than `context_length`
    /// ids fails with [`Error::TextTooLong`] unless `truncation` is [`Truncation::Truncate`].
    pub fn encode_batch<S: AsRef<str>>(
        &self,
        texts: &[S],
        context_length: usize,
        truncation: Truncation,
    ) -> Result<TokenBatch> {
        if !(2..=MAX_CONTEXT_LENGTH).contains(&context_length) {
            return Err(Error::InvalidContextLength { context_length });
        }
        match &self.backend {
            Backend::WordPiece(wp) => return wp.encode_batch(texts, context_length, truncation),
            Backend::SentencePiece(sp) => {
                let want = sp.options().context_length;
                if context_length != want {
                    return Err(Error::InvalidInput(format!(
                        "SentencePiece rows are {want} tokens long (the tokenizer's \
                         context length), {context_length} were asked for"
                    )));
                }
                return sp.encode_batch_with(texts, truncation);
            }
            Backend::Bpe(_) => {}
        }
        let total = texts
            .len()
            .checked_mul(context_length)
            .ok_or(Error::InvalidContextLength { context_length })?;
        let cleaned: Vec<String> = texts.iter().map(|t| clean::clean(t.as_ref())).collect();
        let encodings = self
            .bpe()?
            .encode_batch_fast(cleaned, false)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        let mut ids = vec![0u32; total];
        let mut eot_positions = Vec::with_capacity(texts.len());
        for ((row, encoding), text) in ids
            .chunks_exact_mut(context_length)
            .zip(&encodings)
            .zip(texts)
        {
            let end = frame_row(
                row,
                encoding.get_ids(),
                (SOT, EOT),
                text.as_ref(),
                truncation,
            )?;
            let eot = row.iter().position(|&id| id == EOT).unwrap_or(end);
            eot_positions.push(eot);
        }
        Ok(TokenBatch {
            ids,
            context_length,
            eot_positions,
        })
    }

    /// Text from ids as OpenAI's `decode`: the tokens' bytes (invalid UTF-8 replaced by U+FFFD), `</w>`
    /// replaced by a space. Special and padding ids are decoded like any other token.
    ///
    /// For [`Tokenizer::cn_clip`]: cn_clip's `convert_tokens_to_string` of the ids' tokens.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        match &self.backend {
            Backend::WordPiece(wp) => return wp.decode(ids),
            Backend::SentencePiece(sp) => return sp.decode(ids),
            Backend::Bpe(_) => {}
        }
        if let Some(bad) = ids.iter().find(|&&id| id as usize >= VOCAB_SIZE) {
            return Err(Error::InvalidInput(format!(
                "token id {bad} is outside the vocabulary (size {VOCAB_SIZE})"
            )));
        }
        let text = self
            .bpe()?
            .decode(ids, false)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(text.replace("</w>", " "))
    }

    /// The clean-up applied before tokenizing (ftfy subset, HTML unescaping, white space, lower case).
    pub fn clean(text: &str) -> String {
        clean::clean(text)
    }

    fn encode_cleaned(&self, cleaned: &str) -> Result<Vec<u32>> {
        let encoding = self
            .bpe()?
            .encode_fast(cleaned, false)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }
}

/// The first characters of `text`, for error messages.
/// Writes `first, tokens…, last` at the start of `row` (the tokens cut to fit when `truncation`
/// allows it, else [`Error::TextTooLong`] quoting `text`); returns the position of `last`.
pub(crate) fn frame_row(
    row: &mut [u32],
    tokens: &[u32],
    (first, last): (u32, u32),
    text: &str,
    truncation: Truncation,
) -> Result<usize> {
    let context_length = row.len();
    let n = tokens.len() + 2;
    if n > context_length && truncation == Truncation::Error {
        return Err(Error::TextTooLong {
            start: quote_start(text),
            tokens: n,
            context_length,
        });
    }
    let kept = tokens.len().min(context_length - 2);
    row[0] = first;
    row[1..=kept].copy_from_slice(&tokens[..kept]);
    row[kept + 1] = last;
    Ok(kept + 1)
}

fn quote_start(text: &str) -> String {
    match text.char_indices().nth(QUOTED_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// OpenAI's `bytes_to_unicode()` values in its order: printable Latin-1 bytes map to themselves, the
/// others to U+0100 onwards. Token `i` (`i < 256`) is `byte_to_char()[i]`.
fn byte_to_char() -> Vec<char> {
    let mut bytes: Vec<u32> = (u32::from(b'!')..=u32::from(b'~'))
        .chain(0xa1..=0xac)
        .chain(0xae..=0xff)
        .collect();
    let mut chars = bytes.clone();
    let mut n = 0;
    for b in 0..256 {
        if !bytes.contains(&b) {
            bytes.push(b);
            chars.push(256 + n);
            n += 1;
        }
    }
    chars.into_iter().filter_map(char::from_u32).collect()
}

/// The BPE model, plus OpenAI's special case: the words `<|startoftext|>` and `<|endoftext|>` (which the
/// regex keeps whole) are single tokens.
struct ClipBpe {
    bpe: BPE,
}

impl Model for ClipBpe {
    type Trainer = BpeTrainer;

    fn tokenize(&self, sequence: &str) -> tokenizers::Result<Vec<Token>> {
        match sequence {
            SOT_TEXT => Ok(vec![Token::new(
                SOT,
                SOT_TEXT.to_owned(),
                (0, SOT_TEXT.len()),
            )]),
            EOT_TEXT => Ok(vec![Token::new(
                EOT,
                EOT_TEXT.to_owned(),
                (0, EOT_TEXT.len()),
            )]),
            _ => self.bpe.tokenize(sequence),
        }
    }

    fn token_to_id(&self, token: &str) -> Option<u32> {
        self.bpe.token_to_id(token)
    }

    fn id_to_token(&self, id: u32) -> Option<String> {
        self.bpe.id_to_token(id)
    }

    fn get_vocab(&self) -> HashMap<String, u32> {
        self.bpe.get_vocab()
    }

    fn get_vocab_size(&self) -> usize {
        self.bpe.get_vocab_size()
    }

    fn save(&self, folder: &Path, prefix: Option<&str>) -> tokenizers::Result<Vec<PathBuf>> {
        self.bpe.save(folder, prefix)
    }

    fn get_trainer(&self) -> BpeTrainer {
        self.bpe.get_trainer()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_mapping_is_a_bijection_onto_printable_characters() {
        let chars = byte_to_char();
        assert_eq!(chars.len(), 256);
        let mut sorted = chars.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 256);
        assert!(chars.iter().all(|c| !c.is_whitespace() && !c.is_control()));
        // OpenAI's table: '!' is token 0, byte 0 maps to U+0100 (token 188), space to U+0120 (Ġ).
        assert_eq!(chars[0], '!');
        assert_eq!(chars[188], '\u{100}');
        assert_eq!(chars[188 + 32], '\u{120}');
    }

    #[test]
    fn readme_example() {
        // From the data README (OpenAI's `clip.tokenize("Hello World!")`).
        let t = Tokenizer::openai().unwrap();
        assert_eq!(
            t.encode("Hello World!").unwrap(),
            [49406, 3306, 1002, 256, 49407]
        );
        let batch = t
            .encode_batch(&["Hello World!"], 77, Truncation::Error)
            .unwrap();
        let mut expected = vec![0u32; 77];
        expected[..5].copy_from_slice(&[49406, 3306, 1002, 256, 49407]);
        assert_eq!(batch.ids(), expected);
        assert_eq!(batch.eot_positions(), [4]);
    }

    #[test]
    fn too_long_is_an_error_unless_truncated() {
        let t = Tokenizer::openai().unwrap();
        let text = "a ".repeat(80);
        let err = t.encode_batch(&[&text], 77, Truncation::Error).unwrap_err();
        match &err {
            Error::TextTooLong {
                start,
                tokens,
                context_length,
            } => {
                assert_eq!((*tokens, *context_length), (82, 77));
                assert!(
                    start.starts_with("a a a") && start.ends_with('…'),
                    "{start}"
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        let batch = t.encode_batch(&[&text], 77, Truncation::Truncate).unwrap();
        let row = batch.row(0).unwrap();
        assert_eq!(row[0], SOT);
        assert_eq!(row[76], EOT);
        assert_eq!(batch.eot_positions(), [76]);
        // Exactly 77 ids fit.
        let fits = "a ".repeat(75);
        let batch = t.encode_batch(&[&fits], 77, Truncation::Error).unwrap();
        assert_eq!(batch.eot_positions(), [76]);
    }

    #[test]
    fn context_length_must_hold_the_special_tokens() {
        let t = Tokenizer::openai().unwrap();
        assert!(matches!(
            t.encode_batch(&["x"], 1, Truncation::Truncate),
            Err(Error::InvalidContextLength { context_length: 1 })
        ));
        let batch = t.encode_batch(&["x"], 2, Truncation::Truncate).unwrap();
        assert_eq!(batch.ids(), [SOT, EOT]);
        // An absurd context length is an error, not an overflowing allocation.
        assert!(matches!(
            t.encode_batch(&["x", "y"], usize::MAX, Truncation::Truncate),
            Err(Error::InvalidContextLength { .. })
        ));
        let empty: [&str; 0] = [];
        assert!(
            t.encode_batch(&empty, 77, Truncation::Error)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn decode_inverts_encode_for_clean_text() {
        let t = Tokenizer::openai().unwrap();
        let ids = t.encode("a photo of a tench, a type of fish.").unwrap();
        assert_eq!(
            t.decode(&ids[1..ids.len() - 1]).unwrap(),
            "a photo of a tench , a type of fish . "
        );
        assert!(matches!(t.decode(&[49408]), Err(Error::InvalidInput(_))));
    }

    /// Each code point assigned in Unicode 14, between two letters and between two `!` under our
    /// regex, classified as `tools/reference/tokenizer.py` classifies it under OpenAI's (Python
    /// `regex` module).
    #[test]
    fn regex_classes_match_the_regex_module() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/tokenizer_char_classes.txt"
        );
        let text = std::fs::read_to_string(path).unwrap();
        let runs: Vec<(u32, &str)> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let (start, kind) = l.split_once(' ').unwrap();
                (u32::from_str_radix(start, 16).unwrap(), kind)
            })
            .collect();
        let regex = tokenizers::utils::SysRegex::new(PATTERN).unwrap();
        let matches = |s: &str| -> Vec<(usize, usize)> { regex.find_iter(s).collect() };
        let mut differences = Vec::new();
        let mut compared = 0;
        for (i, &(start, want)) in runs.iter().enumerate() {
            let end = runs.get(i + 1).map_or(0x110000, |r| r.0);
            // Unassigned in the reference's Unicode version (14): engines' tables differ there.
            if want == "U" {
                continue;
            }
            // White space never reaches the regex: the clean-up turns it into U+0020.
            for c in (start..end)
                .filter_map(char::from_u32)
                .filter(|c| !c.is_whitespace())
            {
                let len = c.len_utf8();
                let ours = match matches(&format!("b{c}b"))[..] {
                    [(0, e)] if e == len + 2 => "L",
                    [(0, 1), (e, _)] if e == len + 1 => "S",
                    [(0, 1), (1, e), _] if e == len + 1 => match matches(&format!("!{c}!"))[..] {
                        [(0, e)] if e == len + 2 => "O",
                        [(0, 1), (1, e), _] if e == len + 1 => "N",
                        _ => "?",
                    },
                    _ => "?",
                };
                compared += 1;
                if ours != want {
                    differences.push(format!("U+{:04X} ours {ours}, OpenAI {want}", c as u32));
                }
            }
        }
        println!(
            "{compared} code points compared, {} classified differently",
            differences.len()
        );
        assert!(differences.is_empty(), "{}", differences.join("\n"));
    }

    #[test]
    fn corrupt_vocabulary_is_an_error() {
        assert!(matches!(
            Tokenizer::from_vocab_gz(b"not gzip"),
            Err(Error::Tokenizer(_))
        ));
    }
}
