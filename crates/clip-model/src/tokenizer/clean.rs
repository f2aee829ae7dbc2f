//! The text clean-up OpenAI's tokenizer runs before BPE:
//! `whitespace_clean(basic_clean(text)).lower()` with
//! `basic_clean = ftfy.fix_text → html.unescape → html.unescape → strip`.
//!
//! ftfy is a Python library; this module reproduces every step of `ftfy.fix_text` (version 6, default
//! configuration) except mojibake detection (`fix_encoding`, with its sub-steps `restore_byte_a0`,
//! `replace_lossy_sequences` and `decode_inconsistent_utf8`): that step is heuristic (it scores text
//! against a model of likely encodings) and only changes text that looks mis-decoded, such as `cafÃ©`.
//! Reproduced: HTML entities (ftfy's own pass, disabled from the first line that contains `<`), C1
//! controls read as Windows-1252, Latin ligatures, full/half-width forms, curly quotes, line breaks,
//! terminal escapes, control characters, NFC — repeated until nothing changes, line by line — and
//! Python's `html.unescape` exactly (all 2,231 HTML5 references, legacy prefixes, numeric references
//! with the Windows-1252 and invalid code point rules).

use std::collections::HashMap;
use std::sync::OnceLock;

use tokenizers::NormalizedString;

/// `whitespace_clean(basic_clean(text)).lower()` of OpenAI's `simple_tokenizer.py` (see the module docs
/// for the one ftfy step not reproduced).
pub(crate) fn clean(text: &str) -> String {
    let fixed = fix_text(text);
    let unescaped = html_unescape(&html_unescape(&fixed));
    let stripped = unescaped.trim_matches(is_python_space);
    collapse_whitespace(stripped).to_lowercase()
}

/// Python's `str.isspace()`: Unicode `White_Space` plus the information separators U+001C..U+001F.
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `re.sub(r'\s+', ' ', text).strip()` with the `regex` module, whose `\s` is Unicode `White_Space`
/// (= `char::is_whitespace`).
fn collapse_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            if !in_space {
                out.push(' ');
                in_space = true;
            }
        } else {
            out.push(c);
            in_space = false;
        }
    }
    out.trim_matches(is_python_space).to_owned()
}

/// `ftfy.fix_text` without mojibake repair: fixed line by line (segments end after `\n`); ftfy's own HTML
/// unescaping stays off from the first segment containing `<` on.
fn fix_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut unescape = true;
    for segment in text.split_inclusive('\n') {
        if unescape && segment.contains('<') {
            unescape = false;
        }
        out.push_str(&fix_segment(segment, unescape));
    }
    out
}

/// One `ftfy.fix_and_explain` segment: all fixers in ftfy's order, repeated until the text is stable.
fn fix_segment(segment: &str, unescape: bool) -> String {
    if is_plain(segment) {
        return segment.to_owned();
    }
    let mut text = segment.to_owned();
    loop {
        let mut next = if unescape {
            ftfy_unescape_html(&text)
        } else {
            text.clone()
        };
        next = map_chars(&next, |c, out| match c {
            '\u{80}'..='\u{9f}' => out.push(windows_1252(c as u32).unwrap_or(c)),
            _ => out.push(c),
        });
        next = map_chars(&next, |c, out| match ligature(c) {
            Some(s) => out.push_str(s),
            None => out.push(c),
        });
        next = map_chars(&next, |c, out| match width_map().get(&c) {
            Some(s) => out.push_str(s),
            None => out.push(c),
        });
        next = map_chars(&next, |c, out| match c {
            '\u{2bc}' | '\u{2018}'..='\u{201b}' => out.push('\''),
            '\u{201c}'..='\u{201f}' => out.push('"'),
            _ => out.push(c),
        });
        next = next
            .replace("\r\n", "\n")
            .replace(['\r', '\u{2028}', '\u{2029}', '\u{85}'], "\n");
        next = remove_terminal_escapes(&next);
        next = map_chars(&next, |c, out| {
            if !is_removed_control(c) {
                out.push(c)
            }
        });
        next = nfc(next);
        if next == text {
            return next;
        }
        text = next;
    }
}

/// Text no ftfy fixer changes: printable ASCII (plus tab, line feed, form feed) without `&`.
fn is_plain(text: &str) -> bool {
    text.bytes()
        .all(|b| ((b' '..=b'~').contains(&b) && b != b'&') || matches!(b, b'\t' | b'\n' | b'\x0c'))
}

fn map_chars(text: &str, mut f: impl FnMut(char, &mut String)) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        f(c, &mut out);
    }
    out
}

/// ftfy's `fix_latin_ligatures` table.
fn ligature(c: char) -> Option<&'static str> {
    Some(match c {
        'Ĳ' => "IJ",
        'ĳ' => "ij",
        'ŉ' => "ʼn",
        'Ǳ' => "DZ",
        'ǲ' => "Dz",
        'ǳ' => "dz",
        'Ǆ' => "DŽ",
        'ǅ' => "Dž",
        'ǆ' => "dž",
        'Ǉ' => "LJ",
        'ǈ' => "Lj",
        'ǉ' => "lj",
        'Ǌ' => "NJ",
        'ǋ' => "Nj",
        'ǌ' => "nj",
        'ﬀ' => "ff",
        'ﬁ' => "fi",
        'ﬂ' => "fl",
        'ﬃ' => "ffi",
        'ﬄ' => "ffl",
        'ﬅ' => "ſt",
        'ﬆ' => "st",
        _ => return None,
    })
}

/// ftfy's `fix_character_width` table: U+3000 → space, and U+FF01..U+FFEF → their NFKC form where it
/// differs.
fn width_map() -> &'static HashMap<char, String> {
    static MAP: OnceLock<HashMap<char, String>> = OnceLock::new();
    MAP.get_or_init(|| {
        let mut map = HashMap::new();
        map.insert('\u{3000}', " ".to_owned());
        for c in '\u{ff01}'..'\u{fff0}' {
            let mut n = NormalizedString::from(c.to_string());
            n.nfkc();
            if n.get() != c.to_string() {
                map.insert(c, n.get().to_owned());
            }
        }
        map
    })
}

/// ftfy's `remove_control_chars` set.
fn is_removed_control(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{8}' | '\u{b}' | '\u{e}'..='\u{1f}' | '\u{7f}' | '\u{206a}'..='\u{206f}'
        | '\u{feff}' | '\u{fff9}'..='\u{fffc}')
}

/// ftfy's `remove_terminal_escapes`: `\x1b[` + digits and `;` + one ASCII letter. (ftfy's `\d` also takes
/// non-ASCII decimal digits; such escapes lose only their ESC here, which `remove_control_chars` drops.)
fn remove_terminal_escapes(text: &str) -> String {
    if !text.contains('\u{1b}') {
        return text.to_owned();
    }
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        if bytes[i] == 0x1b && bytes.get(i + 1) == Some(&b'[') {
            let mut j = i + 2;
            while j < bytes.len() && (bytes[j].is_ascii_digit() || bytes[j] == b';') {
                j += 1;
            }
            if j < bytes.len() && bytes[j].is_ascii_alphabetic() {
                out.push_str(&text[copied..i]);
                i = j + 1;
                copied = i;
                continue;
            }
        }
        i += 1;
    }
    out.push_str(&text[copied..]);
    out
}

fn nfc(text: String) -> String {
    // Every character below U+0300 is NFC-stable and starts no composition with what precedes it.
    if text.chars().all(|c| c < '\u{300}') {
        return text;
    }
    let mut n = NormalizedString::from(text);
    n.nfc();
    n.get().to_owned()
}

/// Windows-1252 as Python's `html` module and ftfy's `sloppy-windows-1252` read bytes 0x80..0x9F (the
/// five undefined bytes map to the same code point).
fn windows_1252(b: u32) -> Option<char> {
    const TABLE: [char; 32] = [
        '€', '\u{81}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{8d}', 'Ž',
        '\u{8f}', '\u{90}', '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\u{9d}',
        'ž', 'Ÿ',
    ];
    (0x80..=0x9f)
        .contains(&b)
        .then(|| TABLE[(b - 0x80) as usize])
}

/// HTML5 named references without the `&`, with and without `;` (`"amp;"`, `"amp"`), as Python's
/// `html.entities.html5`.
fn html5() -> &'static HashMap<&'static str, &'static str> {
    static MAP: OnceLock<HashMap<&'static str, &'static str>> = OnceLock::new();
    MAP.get_or_init(|| {
        entities::ENTITIES
            .iter()
            .map(|e| (e.entity.trim_start_matches('&'), e.characters))
            .collect()
    })
}

/// Python's `html.unescape`.
pub(crate) fn html_unescape(text: &str) -> String {
    if !text.contains('&') {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        match charref(after) {
            Some(len) => {
                out.push_str(&replace_charref(&after[..len]));
                rest = &after[len..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Length in bytes of the match of `#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?` at the start
/// of `s` (the text after `&`), if any.
fn charref(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let with_semicolon = |end: usize| {
        if b.get(end) == Some(&b';') {
            end + 1
        } else {
            end
        }
    };
    if b.first() == Some(&b'#') {
        let digits = b[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits > 0 {
            return Some(with_semicolon(1 + digits));
        }
        if matches!(b.get(1), Some(b'x' | b'X')) {
            let hex = b[2..].iter().take_while(|c| c.is_ascii_hexdigit()).count();
            if hex > 0 {
                return Some(with_semicolon(2 + hex));
            }
        }
        return None;
    }
    let end = s
        .char_indices()
        .take(32)
        .find(|&(_, c)| matches!(c, '\t' | '\n' | '\x0c' | ' ' | '<' | '&' | '#' | ';'))
        .map(|(i, _)| i)
        .unwrap_or_else(|| s.char_indices().nth(32).map_or(s.len(), |(i, _)| i));
    (end > 0).then(|| with_semicolon(end))
}

/// Python's `html._replace_charref` (`s` is the reference without the `&`).
fn replace_charref(s: &str) -> String {
    if let Some(num) = s.strip_prefix('#') {
        let num = num.trim_end_matches(';');
        let value = match num.strip_prefix(['x', 'X']) {
            Some(hex) => parse_saturating(hex, 16),
            None => parse_saturating(num, 10),
        };
        if value == 0 {
            return '\u{fffd}'.to_string();
        }
        if value == 0x0d {
            return '\r'.to_string();
        }
        if let Some(c) = u32::try_from(value).ok().and_then(windows_1252) {
            return c.to_string();
        }
        if (0xd800..=0xdfff).contains(&value) || value > 0x10ffff {
            return '\u{fffd}'.to_string();
        }
        let invalid = matches!(value, 0x1..=0x8 | 0xb | 0xe..=0x1f | 0x7f..=0x9f | 0xfdd0..=0xfdef)
            || value & 0xfffe == 0xfffe;
        if invalid {
            return String::new();
        }
        return char::from_u32(value as u32).map_or_else(String::new, String::from);
    }
    let html5 = html5();
    if let Some(v) = html5.get(s) {
        return (*v).to_owned();
    }
    // The longest prefix (at least two characters, shorter than `s`) that is a reference.
    let bounds: Vec<usize> = s.char_indices().map(|(i, _)| i).skip(2).collect();
    for &end in bounds.iter().rev() {
        if let Some(v) = html5.get(&s[..end]) {
            return format!("{v}{}", &s[end..]);
        }
    }
    format!("&{s}")
}

fn parse_saturating(digits: &str, radix: u32) -> u64 {
    digits.chars().fold(0u64, |acc, c| {
        let d = u64::from(c.to_digit(radix).unwrap_or(0));
        acc.saturating_mul(u64::from(radix)).saturating_add(d)
    })
}

/// ftfy's entity table: HTML5 references ending in `;`, plus the upper-cased form of each lower-case
/// name when that form is not itself a reference (`&EACUTE;` → `É`).
fn ftfy_entities() -> &'static HashMap<String, String> {
    static MAP: OnceLock<HashMap<String, String>> = OnceLock::new();
    MAP.get_or_init(|| {
        let mut map = HashMap::new();
        for e in entities::ENTITIES
            .iter()
            .filter(|e| e.entity.ends_with(';'))
        {
            map.insert(e.entity.to_owned(), e.characters.to_owned());
            let name = e.entity;
            if name == name.to_lowercase() {
                let upper = name.to_uppercase();
                if html_unescape(&upper) == upper {
                    map.insert(upper, e.characters.to_uppercase());
                }
            }
        }
        map
    })
}

/// ftfy's `unescape_html`: replaces matches of `&#?[0-9A-Za-z]{1,24};` that are known references.
fn ftfy_unescape_html(text: &str) -> String {
    if !text.contains('&') {
        return text.to_owned();
    }
    let entities = ftfy_entities();
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let candidate = &rest[at..];
        let b = candidate.as_bytes();
        let start = if b.get(1) == Some(&b'#') { 2 } else { 1 };
        let run = b[start..]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric())
            .count();
        if (1..=24).contains(&run) && b.get(start + run) == Some(&b';') {
            let entity = &candidate[..start + run + 1];
            let replaced = if let Some(v) = entities.get(entity) {
                v.clone()
            } else if start == 2 {
                let u = html_unescape(entity);
                if u.contains(';') {
                    entity.to_owned()
                } else {
                    u
                }
            } else {
                entity.to_owned()
            };
            out.push_str(&replaced);
            rest = &candidate[entity.len()..];
        } else {
            out.push('&');
            rest = &candidate[1..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_is_the_regex_module_set() {
        // `[hex(c) for c in range(0x110000) if regex.match(r'\s', chr(c))]` (regex 2026.11.19).
        let python: [u32; 25] = [
            0x9, 0xa, 0xb, 0xc, 0xd, 0x20, 0x85, 0xa0, 0x1680, 0x2000, 0x2001, 0x2002, 0x2003,
            0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a, 0x2028, 0x2029, 0x202f, 0x205f,
            0x3000,
        ];
        let ours: Vec<u32> = (0..=0x10ffffu32)
            .filter_map(char::from_u32)
            .filter(|c| c.is_whitespace())
            .map(|c| c as u32)
            .collect();
        assert_eq!(ours, python);
    }

    /// Rust's `to_lowercase` against Python's `str.lower` on every code point assigned in the
    /// reference's Unicode version (`tokenizer_char_classes.txt` marks the unassigned ones `U`).
    #[test]
    fn lowercase_matches_python_on_assigned_code_points() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");
        let read = |name: &str| std::fs::read_to_string(format!("{dir}{name}")).unwrap();
        let hex = |h: &str| char::from_u32(u32::from_str_radix(h, 16).unwrap()).unwrap();
        let classes = read("tokenizer_char_classes.txt");
        let runs: Vec<(u32, &str)> = classes
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split_once(' ').unwrap())
            .map(|(start, kind)| (u32::from_str_radix(start, 16).unwrap(), kind))
            .collect();
        let lower_text = read("tokenizer_lowercase.txt");
        let python: HashMap<char, String> = lower_text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let mut parts = l.split(' ');
                let c = hex(parts.next().unwrap());
                (c, parts.map(hex).collect())
            })
            .collect();
        let mut compared = 0;
        let mut differences = Vec::new();
        for (i, &(start, kind)) in runs.iter().enumerate() {
            let end = runs.get(i + 1).map_or(0x110000, |r| r.0);
            if kind == "U" {
                continue;
            }
            for c in (start..end).filter_map(char::from_u32) {
                compared += 1;
                let ours: String = c.to_lowercase().collect();
                let want = python.get(&c).cloned().unwrap_or_else(|| c.to_string());
                if ours != want {
                    differences.push(format!(
                        "U+{:04X}: ours {ours:?}, Python {want:?}",
                        c as u32
                    ));
                }
            }
        }
        println!(
            "{compared} code points lower-cased, {} differ",
            differences.len()
        );
        assert!(differences.is_empty(), "{}", differences.join("\n"));
    }

    #[test]
    fn html_unescape_follows_python() {
        // Values from Python 3.11 `html.unescape`.
        assert_eq!(html_unescape("a &amp; b"), "a & b");
        assert_eq!(html_unescape("&amp"), "&");
        assert_eq!(html_unescape("&ampx"), "&x");
        assert_eq!(html_unescape("&notit;"), "¬it;");
        assert_eq!(html_unescape("&#39;"), "'");
        assert_eq!(html_unescape("&#x27"), "'");
        assert_eq!(html_unescape("&#128;"), "€");
        assert_eq!(html_unescape("&#0;"), "\u{fffd}");
        assert_eq!(html_unescape("&#1;x"), "x");
        assert_eq!(html_unescape("&#99999999999999999999;"), "\u{fffd}");
        assert_eq!(html_unescape("&bogus;"), "&bogus;");
        assert_eq!(html_unescape("&"), "&");
        assert_eq!(html_unescape("&#;"), "&#;");
    }

    #[test]
    fn ftfy_subset() {
        // Values from ftfy 6.3.1 `fix_text`.
        assert_eq!(
            fix_text("it\u{2019}s \u{fb02}ubberi\u{fb01}c"),
            "it's flubberific"
        );
        assert_eq!(
            fix_text("\u{ff2c}\u{ff2f}\u{ff35}\u{ff24}\u{3000}NOISES"),
            "LOUD NOISES"
        );
        assert_eq!(fix_text("&EACUTE;t&eacute;"), "Été");
        assert_eq!(fix_text("&amp;amp;amp;"), "&");
        assert_eq!(fix_text("<b>&amp;amp;</b>"), "<b>&amp;amp;</b>");
        assert_eq!(fix_text("\u{1b}[31mred\u{1b}[0m"), "red");
        assert_eq!(fix_text("e\u{301}"), "\u{e9}");
    }
}
