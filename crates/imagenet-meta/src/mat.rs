//! A small, defensive reader for MATLAB v5 MAT-files (the format of the devkit's `meta.mat`).
//!
//! Supported: the 128-byte header in either byte order (`IM` / `MI`, version `0x0100`), data
//! elements in the full and the small (4-byte) format, `miCOMPRESSED` (zlib), and `miMATRIX`
//! arrays of class struct, cell, char and every numeric class, real or complex, including empty
//! matrices. Sparse, object, function and opaque arrays are skipped and reported as
//! [`Data::Unsupported`]. MAT v7.3 files (HDF5) are rejected with a clear error.
//!
//! Numeric data may be stored in any integer or floating `mi` type; it is converted to the
//! array's class the way MATLAB converts between numeric types: float to integer rounds half away
//! from zero and saturates (NaN becomes 0), integer to integer saturates, anything to float is the
//! nearest value.
//!
//! Cells and structs may nest at most [`MAX_DEPTH`] levels deep, so a crafted file cannot
//! exhaust the stack. Every length is checked against the bytes actually present before anything is allocated or
//! sliced, products of dimensions use checked arithmetic, and a malformed or truncated file yields
//! an [`Error`] naming the element (e.g. `synsets(12).gloss`) and what was expected — never a panic.

use std::fmt;
use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// Deepest nesting of cells and structs accepted (bounds the reader's recursion).
pub const MAX_DEPTH: usize = 64;

/// Default cap on the total number of bytes inflated from `miCOMPRESSED` elements of one file.
pub const DEFAULT_DECOMPRESS_LIMIT: usize = 1 << 30;

// Data types (miTYPE).
const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT16: u32 = 3;
const MI_UINT16: u32 = 4;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_SINGLE: u32 = 7;
const MI_DOUBLE: u32 = 9;
const MI_INT64: u32 = 12;
const MI_UINT64: u32 = 13;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;
const MI_UTF8: u32 = 16;
const MI_UTF16: u32 = 17;
const MI_UTF32: u32 = 18;

/// MATLAB array classes (mxCLASS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Class {
    /// `cell`.
    Cell,
    /// `struct`.
    Struct,
    /// `char`.
    Char,
    /// `double`.
    Double,
    /// `single`.
    Single,
    /// `int8`.
    Int8,
    /// `uint8` (also `logical`).
    UInt8,
    /// `int16`.
    Int16,
    /// `uint16`.
    UInt16,
    /// `int32`.
    Int32,
    /// `uint32`.
    UInt32,
    /// `int64`.
    Int64,
    /// `uint64`.
    UInt64,
    /// Any class this reader skips (object, sparse, function, opaque), with its class number.
    Other(u8),
}

impl Class {
    fn from_u8(c: u8) -> Self {
        match c {
            1 => Class::Cell,
            2 => Class::Struct,
            4 => Class::Char,
            6 => Class::Double,
            7 => Class::Single,
            8 => Class::Int8,
            9 => Class::UInt8,
            10 => Class::Int16,
            11 => Class::UInt16,
            12 => Class::Int32,
            13 => Class::UInt32,
            14 => Class::Int64,
            15 => Class::UInt64,
            other => Class::Other(other),
        }
    }
}

/// Numeric array data in the array's class, column-major.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum NumericData {
    Double(Vec<f64>),
    Single(Vec<f32>),
    Int8(Vec<i8>),
    UInt8(Vec<u8>),
    Int16(Vec<i16>),
    UInt16(Vec<u16>),
    Int32(Vec<i32>),
    UInt32(Vec<u32>),
    Int64(Vec<i64>),
    UInt64(Vec<u64>),
}

macro_rules! numeric_dispatch {
    ($self:expr, $v:ident => $body:expr) => {
        match $self {
            NumericData::Double($v) => $body,
            NumericData::Single($v) => $body,
            NumericData::Int8($v) => $body,
            NumericData::UInt8($v) => $body,
            NumericData::Int16($v) => $body,
            NumericData::UInt16($v) => $body,
            NumericData::Int32($v) => $body,
            NumericData::UInt32($v) => $body,
            NumericData::Int64($v) => $body,
            NumericData::UInt64($v) => $body,
        }
    };
}

impl NumericData {
    /// Number of elements.
    pub fn len(&self) -> usize {
        numeric_dispatch!(self, v => v.len())
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[allow(clippy::unnecessary_cast)]
    /// Element `i` as `f64` (64-bit integers above 2^53 round to the nearest double).
    pub fn get_f64(&self, i: usize) -> Option<f64> {
        numeric_dispatch!(self, v => v.get(i).map(|&x| x as f64))
    }

    #[allow(clippy::unnecessary_cast)]
    /// All elements as `f64`, column-major.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        numeric_dispatch!(self, v => v.iter().map(|&x| x as f64).collect())
    }

    /// Element `i` as an exact integer, if it is one (integral and within `i64`/`u64` range).
    pub fn get_i128(&self, i: usize) -> Option<i128> {
        match self {
            NumericData::Double(v) => v.get(i).and_then(|&x| float_to_i128_exact(x)),
            NumericData::Single(v) => v.get(i).and_then(|&x| float_to_i128_exact(f64::from(x))),
            NumericData::Int8(v) => v.get(i).map(|&x| i128::from(x)),
            NumericData::UInt8(v) => v.get(i).map(|&x| i128::from(x)),
            NumericData::Int16(v) => v.get(i).map(|&x| i128::from(x)),
            NumericData::UInt16(v) => v.get(i).map(|&x| i128::from(x)),
            NumericData::Int32(v) => v.get(i).map(|&x| i128::from(x)),
            NumericData::UInt32(v) => v.get(i).map(|&x| i128::from(x)),
            NumericData::Int64(v) => v.get(i).map(|&x| i128::from(x)),
            NumericData::UInt64(v) => v.get(i).map(|&x| i128::from(x)),
        }
    }

    /// The class name as MATLAB spells it.
    pub fn class_name(&self) -> &'static str {
        match self {
            NumericData::Double(_) => "double",
            NumericData::Single(_) => "single",
            NumericData::Int8(_) => "int8",
            NumericData::UInt8(_) => "uint8",
            NumericData::Int16(_) => "int16",
            NumericData::UInt16(_) => "uint16",
            NumericData::Int32(_) => "int32",
            NumericData::UInt32(_) => "uint32",
            NumericData::Int64(_) => "int64",
            NumericData::UInt64(_) => "uint64",
        }
    }
}

fn float_to_i128_exact(x: f64) -> Option<i128> {
    if x.is_finite() && x.fract() == 0.0 && x.abs() < 1.9e19 {
        Some(x as i128)
    } else {
        None
    }
}

/// A struct array: field names and, for each element (column-major), one array per field.
#[derive(Debug, Clone, PartialEq)]
pub struct StructArray {
    /// Field names in file order.
    pub field_names: Vec<String>,
    /// `values[e * field_names.len() + f]` is field `f` of element `e`.
    pub values: Vec<Array>,
}

impl StructArray {
    /// Number of struct elements.
    pub fn len(&self) -> usize {
        if self.field_names.is_empty() {
            0
        } else {
            self.values.len() / self.field_names.len()
        }
    }

    /// Whether there are no elements (or no fields).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Field `name` of element `element` (0-based, column-major).
    pub fn get(&self, element: usize, name: &str) -> Option<&Array> {
        let f = self.field_names.iter().position(|n| n == name)?;
        let i = element
            .checked_mul(self.field_names.len())?
            .checked_add(f)?;
        self.values.get(i)
    }
}

/// The contents of an array.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Data {
    /// A numeric array (any numeric class), possibly complex; `logical` marks MATLAB logicals.
    Numeric {
        /// Real part.
        real: NumericData,
        /// Imaginary part of a complex array.
        imag: Option<NumericData>,
        /// The logical flag (class `uint8` holding 0/1).
        logical: bool,
    },
    /// A char array as UTF-16 code units, column-major (see [`Array::char_rows`]).
    Char(Vec<u16>),
    /// A cell array, column-major.
    Cell(Vec<Array>),
    /// A struct array.
    Struct(StructArray),
    /// A class this reader skips (sparse, object, function, opaque); its bytes were not decoded.
    Unsupported {
        /// The MATLAB class number.
        class: u8,
    },
}

/// One MATLAB array: a top-level variable, a cell, or a struct field value.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    /// The variable name (empty inside cells and structs).
    pub name: String,
    /// Dimensions (at least two for arrays MATLAB writes; an empty `miMATRIX` is `[0, 0]`).
    pub dims: Vec<usize>,
    /// The global flag.
    pub global: bool,
    /// The contents.
    pub data: Data,
}

impl Array {
    /// Number of elements (product of the dimensions).
    pub fn numel(&self) -> usize {
        self.dims.iter().product()
    }

    /// A short description of the array's kind and size, for error messages (e.g. `uint8 1x1`).
    pub fn describe(&self) -> String {
        let kind = match &self.data {
            Data::Numeric { real, .. } => real.class_name().to_string(),
            Data::Char(_) => "char".to_string(),
            Data::Cell(_) => "cell".to_string(),
            Data::Struct(_) => "struct".to_string(),
            Data::Unsupported { class } => format!("unsupported class {class}"),
        };
        let dims: Vec<String> = self.dims.iter().map(|d| d.to_string()).collect();
        format!("{kind} {}", dims.join("x"))
    }

    /// The rows of a char array as strings (an `r x c` array gives `r` strings of `c` chars;
    /// dimensions after the second are folded into the columns). `None` unless this is a char
    /// array holding valid UTF-16.
    pub fn char_rows(&self) -> Option<Vec<String>> {
        let Data::Char(units) = &self.data else {
            return None;
        };
        if units.is_empty() {
            return Some(Vec::new());
        }
        let rows = *self.dims.first()?;
        if rows == 0 || units.len() % rows != 0 {
            return None;
        }
        let cols = units.len() / rows;
        let mut out = Vec::with_capacity(rows);
        for r in 0..rows {
            let row: Vec<u16> = (0..cols)
                .filter_map(|c| units.get(r + rows * c).copied())
                .collect();
            out.push(String::from_utf16(&row).ok()?);
        }
        Some(out)
    }

    /// A char array with at most one row as a string (`""` for an empty char array).
    pub fn as_string(&self) -> Option<String> {
        let mut rows = self.char_rows()?;
        match rows.len() {
            0 => Some(String::new()),
            1 => rows.pop(),
            _ => None,
        }
    }

    /// The numeric data of a real numeric array.
    pub fn numeric(&self) -> Option<&NumericData> {
        match &self.data {
            Data::Numeric {
                real, imag: None, ..
            } => Some(real),
            _ => None,
        }
    }
}

/// A parsed MAT-file: the header text and the variables in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct MatFile {
    /// The descriptive header text (trailing spaces and NULs removed).
    pub header_text: String,
    /// Whether the file is big-endian (`MI`).
    pub big_endian: bool,
    /// The variables.
    pub variables: Vec<Array>,
}

impl MatFile {
    /// Reads and parses a file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        // The devkit's meta.mat is 2.5 MB; only a regular file is read.
        let bytes = safe_file::read(path, 256 << 20)?;
        Self::from_bytes(&bytes)
    }

    /// Parses the bytes of a file with the default decompression limit.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Self::from_bytes_with_limit(bytes, DEFAULT_DECOMPRESS_LIMIT)
    }

    /// Parses the bytes of a file, inflating at most `decompress_limit` bytes in total.
    pub fn from_bytes_with_limit(bytes: &[u8], decompress_limit: usize) -> Result<Self> {
        let header = bytes.get(..128).ok_or_else(|| Error::Header {
            reason: format!("file has {} bytes, the header alone needs 128", bytes.len()),
        })?;
        let big_endian = match header.get(126..128) {
            Some(b"IM") => false,
            Some(b"MI") => true,
            other => {
                return Err(Error::Header {
                    reason: format!(
                        "endian indicator at byte 126 is {:?}, expected \"IM\" or \"MI\"",
                        other.map(String::from_utf8_lossy)
                    ),
                });
            }
        };
        let v = [header[124], header[125]];
        let version = if big_endian {
            u16::from_be_bytes(v)
        } else {
            u16::from_le_bytes(v)
        };
        if version != 0x0100 {
            let hint = if version == 0x0200 {
                " (MAT v7.3 / HDF5 files are not supported; save with -v7 or -v6)"
            } else {
                ""
            };
            return Err(Error::Header {
                reason: format!("version 0x{version:04x}, expected 0x0100{hint}"),
            });
        }
        let text_end = header[..116]
            .iter()
            .rposition(|&b| b != b' ' && b != 0)
            .map_or(0, |p| p + 1);
        let header_text = String::from_utf8_lossy(&header[..text_end]).into_owned();

        let mut reader = Reader {
            big: big_endian,
            budget: decompress_limit,
            limit: decompress_limit,
        };
        let body = bytes.get(128..).unwrap_or_default();
        let mut cur = Cursor::new(body, big_endian);
        let mut variables = Vec::new();
        while cur.remaining() > 0 {
            if cur.remaining() < 8 && cur.rest().iter().all(|&b| b == 0) {
                break; // trailing alignment padding
            }
            let index = variables.len();
            let ctx = Ctx::Variable { index };
            let ty = cur.u32(&ctx, "variable tag")?;
            let n = cur.u32(&ctx, "variable tag")? as usize;
            let data = cur.take(n, &ctx, "variable data")?;
            let array = match ty {
                MI_MATRIX => reader.matrix(data, &ctx, 0)?,
                MI_COMPRESSED => {
                    let inflated = reader.inflate(data, &ctx)?;
                    let mut inner = Cursor::new(&inflated, big_endian);
                    let tag = inner.element(&ctx, "compressed variable")?;
                    if tag.ty != MI_MATRIX {
                        return Err(malformed(
                            &ctx,
                            "compressed variable",
                            "miMATRIX (14)",
                            tag.ty,
                        ));
                    }
                    reader.matrix(tag.data, &ctx, 0)?
                }
                other => {
                    return Err(malformed(
                        &ctx,
                        "variable tag",
                        "miMATRIX (14) or miCOMPRESSED (15)",
                        other,
                    ));
                }
            };
            variables.push(array);
        }
        Ok(MatFile {
            header_text,
            big_endian,
            variables,
        })
    }

    /// The variable named `name`.
    pub fn variable(&self, name: &str) -> Option<&Array> {
        self.variables.iter().find(|v| v.name == name)
    }
}

/// Where an element sits in the file, rendered only when an error is reported.
enum Ctx<'a> {
    Variable {
        index: usize,
    },
    Named {
        name: &'a str,
        parent: &'a Ctx<'a>,
    },
    Cell {
        index: usize,
        parent: &'a Ctx<'a>,
    },
    Field {
        element: usize,
        name: &'a str,
        parent: &'a Ctx<'a>,
    },
}

impl fmt::Display for Ctx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ctx::Variable { index, .. } => write!(f, "variable #{}", index + 1),
            Ctx::Named { name, parent } => match parent {
                Ctx::Variable { .. } if !name.is_empty() => write!(f, "{name}"),
                _ => write!(f, "{parent}"),
            },
            Ctx::Cell { index, parent } => write!(f, "{parent}{{{}}}", index + 1),
            Ctx::Field {
                element,
                name,
                parent,
            } => write!(f, "{parent}({}).{name}", element + 1),
        }
    }
}

fn malformed(ctx: &Ctx<'_>, what: &'static str, expected: &str, found: impl fmt::Display) -> Error {
    Error::Malformed {
        context: ctx.to_string(),
        what,
        expected: expected.to_string(),
        found: found.to_string(),
    }
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
    big: bool,
}

struct Tag<'a> {
    ty: u32,
    data: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn new(data: &'a [u8], big: bool) -> Self {
        Cursor { data, pos: 0, big }
    }

    fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    fn rest(&self) -> &'a [u8] {
        self.data.get(self.pos..).unwrap_or_default()
    }

    fn take(&mut self, n: usize, ctx: &Ctx<'_>, what: &'static str) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        match end.and_then(|e| self.data.get(self.pos..e).map(|s| (e, s))) {
            Some((e, s)) => {
                self.pos = e;
                Ok(s)
            }
            None => Err(Error::Truncated {
                context: ctx.to_string(),
                what,
                offset: self.pos,
                needed: n,
                available: self.remaining(),
            }),
        }
    }

    fn u32(&mut self, ctx: &Ctx<'_>, what: &'static str) -> Result<u32> {
        let b = self.take(4, ctx, what)?;
        let arr = [b[0], b[1], b[2], b[3]];
        Ok(if self.big {
            u32::from_be_bytes(arr)
        } else {
            u32::from_le_bytes(arr)
        })
    }

    /// Reads one data element (full or small format) and skips its padding.
    fn element(&mut self, ctx: &Ctx<'_>, what: &'static str) -> Result<Tag<'a>> {
        let first = self.u32(ctx, what)?;
        let small_len = (first >> 16) as usize;
        if small_len != 0 {
            let ty = first & 0xffff;
            let payload = self.take(4, ctx, what)?;
            if small_len > 4 {
                return Err(malformed(
                    ctx,
                    what,
                    "a small data element of at most 4 bytes",
                    format!("{small_len} bytes"),
                ));
            }
            return Ok(Tag {
                ty,
                data: &payload[..small_len],
            });
        }
        let n = self.u32(ctx, what)? as usize;
        let data = self.take(n, ctx, what)?;
        // Elements are padded to a multiple of 8 bytes; tolerate missing padding at the very end.
        let pad = (8 - n % 8) % 8;
        self.pos = self.pos.saturating_add(pad.min(self.remaining()));
        Ok(Tag { ty: first, data })
    }
}

struct Reader {
    big: bool,
    budget: usize,
    limit: usize,
}

/// Size in bytes of one value of a numeric storage type.
fn storage_size(ty: u32) -> Option<usize> {
    match ty {
        MI_INT8 | MI_UINT8 => Some(1),
        MI_INT16 | MI_UINT16 => Some(2),
        MI_INT32 | MI_UINT32 | MI_SINGLE => Some(4),
        MI_DOUBLE | MI_INT64 | MI_UINT64 => Some(8),
        _ => None,
    }
}

fn type_name(ty: u32) -> String {
    let name = match ty {
        MI_INT8 => "miINT8",
        MI_UINT8 => "miUINT8",
        MI_INT16 => "miINT16",
        MI_UINT16 => "miUINT16",
        MI_INT32 => "miINT32",
        MI_UINT32 => "miUINT32",
        MI_SINGLE => "miSINGLE",
        MI_DOUBLE => "miDOUBLE",
        MI_INT64 => "miINT64",
        MI_UINT64 => "miUINT64",
        MI_MATRIX => "miMATRIX",
        MI_COMPRESSED => "miCOMPRESSED",
        MI_UTF8 => "miUTF8",
        MI_UTF16 => "miUTF16",
        MI_UTF32 => "miUTF32",
        _ => return format!("data type {ty}"),
    };
    format!("{name} ({ty})")
}

/// A value decoded from storage, before conversion to the array's class.
#[derive(Clone, Copy)]
enum Raw {
    Int(i128),
    Float(f64),
}

trait FromRaw: Copy {
    fn from_raw(r: Raw) -> Self;
}

macro_rules! int_from_raw {
    ($($t:ty),*) => {$(
        impl FromRaw for $t {
            fn from_raw(r: Raw) -> Self {
                match r {
                    Raw::Int(v) => v.clamp(<$t>::MIN as i128, <$t>::MAX as i128) as $t,
                    // `as` saturates and maps NaN to 0, as MATLAB does after rounding.
                    Raw::Float(v) => v.round() as $t,
                }
            }
        }
    )*};
}
int_from_raw!(i8, u8, i16, u16, i32, u32, i64, u64);

impl FromRaw for f64 {
    fn from_raw(r: Raw) -> Self {
        match r {
            Raw::Int(v) => v as f64,
            Raw::Float(v) => v,
        }
    }
}

impl FromRaw for f32 {
    fn from_raw(r: Raw) -> Self {
        match r {
            Raw::Int(v) => v as f32,
            Raw::Float(v) => v as f32,
        }
    }
}

impl Reader {
    fn inflate(&mut self, data: &[u8], ctx: &Ctx<'_>) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let cap = u64::try_from(self.budget)
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        flate2::read::ZlibDecoder::new(data)
            .take(cap)
            .read_to_end(&mut out)
            .map_err(|e| Error::Decompress {
                context: ctx.to_string(),
                message: e.to_string(),
            })?;
        if out.len() > self.budget {
            return Err(Error::DecompressLimit {
                context: ctx.to_string(),
                limit: self.limit,
            });
        }
        self.budget -= out.len();
        Ok(out)
    }

    fn read_u16(&self, b: &[u8]) -> u16 {
        let a = [b[0], b[1]];
        if self.big {
            u16::from_be_bytes(a)
        } else {
            u16::from_le_bytes(a)
        }
    }

    /// Decodes the values of a numeric element into `T` (MATLAB's conversion rules).
    fn numbers<T: FromRaw>(
        &self,
        tag: &Tag<'_>,
        ctx: &Ctx<'_>,
        what: &'static str,
    ) -> Result<Vec<T>> {
        let size = storage_size(tag.ty)
            .ok_or_else(|| malformed(ctx, what, "a numeric data type", type_name(tag.ty)))?;
        if !tag.data.len().is_multiple_of(size) {
            return Err(malformed(
                ctx,
                what,
                &format!("a multiple of {size} bytes for {}", type_name(tag.ty)),
                format!("{} bytes", tag.data.len()),
            ));
        }
        let big = self.big;
        let out = tag
            .data
            .chunks_exact(size)
            .map(|c| {
                let raw = match (tag.ty, c) {
                    (MI_INT8, [a]) => Raw::Int(i128::from(*a as i8)),
                    (MI_UINT8, [a]) => Raw::Int(i128::from(*a)),
                    (MI_INT16, &[a, b]) => {
                        let v = if big {
                            i16::from_be_bytes([a, b])
                        } else {
                            i16::from_le_bytes([a, b])
                        };
                        Raw::Int(i128::from(v))
                    }
                    (MI_UINT16, &[a, b]) => {
                        let v = if big {
                            u16::from_be_bytes([a, b])
                        } else {
                            u16::from_le_bytes([a, b])
                        };
                        Raw::Int(i128::from(v))
                    }
                    (MI_INT32, &[a, b, c, d]) => {
                        let v = if big {
                            i32::from_be_bytes([a, b, c, d])
                        } else {
                            i32::from_le_bytes([a, b, c, d])
                        };
                        Raw::Int(i128::from(v))
                    }
                    (MI_UINT32, &[a, b, c, d]) => {
                        let v = if big {
                            u32::from_be_bytes([a, b, c, d])
                        } else {
                            u32::from_le_bytes([a, b, c, d])
                        };
                        Raw::Int(i128::from(v))
                    }
                    (MI_SINGLE, &[a, b, c, d]) => {
                        let v = if big {
                            f32::from_be_bytes([a, b, c, d])
                        } else {
                            f32::from_le_bytes([a, b, c, d])
                        };
                        Raw::Float(f64::from(v))
                    }
                    (MI_INT64, c) => {
                        let a: [u8; 8] = c.try_into().unwrap_or_default();
                        let v = if big {
                            i64::from_be_bytes(a)
                        } else {
                            i64::from_le_bytes(a)
                        };
                        Raw::Int(i128::from(v))
                    }
                    (MI_UINT64, c) => {
                        let a: [u8; 8] = c.try_into().unwrap_or_default();
                        let v = if big {
                            u64::from_be_bytes(a)
                        } else {
                            u64::from_le_bytes(a)
                        };
                        Raw::Int(i128::from(v))
                    }
                    (_, c) => {
                        let a: [u8; 8] = c.try_into().unwrap_or_default();
                        Raw::Float(if big {
                            f64::from_be_bytes(a)
                        } else {
                            f64::from_le_bytes(a)
                        })
                    }
                };
                T::from_raw(raw)
            })
            .collect();
        Ok(out)
    }

    fn numeric(
        &self,
        class: Class,
        tag: &Tag<'_>,
        ctx: &Ctx<'_>,
        what: &'static str,
    ) -> Result<NumericData> {
        Ok(match class {
            Class::Double => NumericData::Double(self.numbers(tag, ctx, what)?),
            Class::Single => NumericData::Single(self.numbers(tag, ctx, what)?),
            Class::Int8 => NumericData::Int8(self.numbers(tag, ctx, what)?),
            Class::UInt8 => NumericData::UInt8(self.numbers(tag, ctx, what)?),
            Class::Int16 => NumericData::Int16(self.numbers(tag, ctx, what)?),
            Class::UInt16 => NumericData::UInt16(self.numbers(tag, ctx, what)?),
            Class::Int32 => NumericData::Int32(self.numbers(tag, ctx, what)?),
            Class::UInt32 => NumericData::UInt32(self.numbers(tag, ctx, what)?),
            Class::Int64 => NumericData::Int64(self.numbers(tag, ctx, what)?),
            Class::UInt64 => NumericData::UInt64(self.numbers(tag, ctx, what)?),
            Class::Cell | Class::Struct | Class::Char | Class::Other(_) => {
                return Err(malformed(
                    ctx,
                    what,
                    "a numeric class",
                    format!("{class:?}"),
                ));
            }
        })
    }

    /// Decodes char data into UTF-16 code units.
    fn chars(&self, tag: &Tag<'_>, ctx: &Ctx<'_>) -> Result<Vec<u16>> {
        const WHAT: &str = "char data";
        let bad_text =
            |enc: &str| malformed(ctx, WHAT, &format!("valid {enc}"), "invalid code units");
        match tag.ty {
            MI_UINT16 | MI_UTF16 | MI_INT16 => {
                if !tag.data.len().is_multiple_of(2) {
                    return Err(malformed(
                        ctx,
                        WHAT,
                        "an even number of bytes",
                        tag.data.len(),
                    ));
                }
                Ok(tag.data.chunks_exact(2).map(|c| self.read_u16(c)).collect())
            }
            MI_UTF8 => {
                let s = std::str::from_utf8(tag.data).map_err(|_| bad_text("UTF-8"))?;
                Ok(s.encode_utf16().collect())
            }
            // One byte per character (Latin-1 / ASCII), as MATLAB and scipy read it.
            MI_UINT8 | MI_INT8 => Ok(tag.data.iter().map(|&b| u16::from(b)).collect()),
            MI_UTF32 | MI_UINT32 | MI_INT32 => {
                if !tag.data.len().is_multiple_of(4) {
                    return Err(malformed(
                        ctx,
                        WHAT,
                        "a multiple of 4 bytes",
                        tag.data.len(),
                    ));
                }
                let mut out = Vec::with_capacity(tag.data.len() / 4);
                for c in tag.data.chunks_exact(4) {
                    let a = [c[0], c[1], c[2], c[3]];
                    let cp = if self.big {
                        u32::from_be_bytes(a)
                    } else {
                        u32::from_le_bytes(a)
                    };
                    let ch = char::from_u32(cp).ok_or_else(|| bad_text("UTF-32"))?;
                    let mut buf = [0u16; 2];
                    out.extend_from_slice(ch.encode_utf16(&mut buf));
                }
                Ok(out)
            }
            other => Err(malformed(
                ctx,
                WHAT,
                "a character data type",
                type_name(other),
            )),
        }
    }

    fn matrix(&mut self, data: &[u8], ctx: &Ctx<'_>, depth: usize) -> Result<Array> {
        if depth > MAX_DEPTH {
            return Err(malformed(
                ctx,
                "nesting",
                &format!("cells and structs nested at most {MAX_DEPTH} deep"),
                "deeper nesting",
            ));
        }
        if data.is_empty() {
            // MATLAB writes an empty miMATRIX for `[]` inside cells and structs.
            return Ok(Array {
                name: String::new(),
                dims: vec![0, 0],
                global: false,
                data: Data::Numeric {
                    real: NumericData::Double(Vec::new()),
                    imag: None,
                    logical: false,
                },
            });
        }
        let mut cur = Cursor::new(data, self.big);
        let flags = cur.element(ctx, "array flags")?;
        if flags.ty != MI_UINT32 || flags.data.len() != 8 {
            return Err(malformed(
                ctx,
                "array flags",
                "miUINT32 (6) with 8 bytes",
                format!("{} with {} bytes", type_name(flags.ty), flags.data.len()),
            ));
        }
        let word = {
            let b = &flags.data[..4];
            let a = [b[0], b[1], b[2], b[3]];
            if self.big {
                u32::from_be_bytes(a)
            } else {
                u32::from_le_bytes(a)
            }
        };
        let class = Class::from_u8((word & 0xff) as u8);
        let complex = word & 0x0800 != 0;
        let global = word & 0x0400 != 0;
        let logical = word & 0x0200 != 0;
        if let Class::Other(c) = class
            && !matches!(c, 3 | 5)
        {
            // Function and opaque arrays have a different layout: skip them whole.
            return Ok(Array {
                name: String::new(),
                dims: Vec::new(),
                global,
                data: Data::Unsupported { class: c },
            });
        }

        let dims_tag = cur.element(ctx, "dimensions")?;
        if dims_tag.ty != MI_INT32 && dims_tag.ty != MI_UINT32 {
            return Err(malformed(
                ctx,
                "dimensions",
                "miINT32 (5)",
                type_name(dims_tag.ty),
            ));
        }
        let raw_dims: Vec<i64> = self.numbers(&dims_tag, ctx, "dimensions")?;
        let mut dims = Vec::with_capacity(raw_dims.len());
        for d in raw_dims {
            let d = usize::try_from(d)
                .map_err(|_| malformed(ctx, "dimensions", "non-negative sizes", d))?;
            dims.push(d);
        }
        let numel = dims
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| {
                malformed(
                    ctx,
                    "dimensions",
                    "a product that fits in memory",
                    format!("{dims:?}"),
                )
            })?;

        let name_tag = cur.element(ctx, "array name")?;
        if !matches!(name_tag.ty, MI_INT8 | MI_UINT8 | MI_UTF8) {
            return Err(malformed(
                ctx,
                "array name",
                "miINT8 (1)",
                type_name(name_tag.ty),
            ));
        }
        let name = std::str::from_utf8(name_tag.data)
            .map_err(|_| malformed(ctx, "array name", "ASCII text", "invalid UTF-8"))?
            .trim_end_matches('\0')
            .to_string();
        let named = Ctx::Named {
            name: &name,
            parent: ctx,
        };
        let ctx = &named;

        // Every element of a cell or struct needs at least an 8-byte tag: bound counts by bytes.
        let max_children = cur.remaining() / 8;
        let data = match class {
            Class::Other(c) => Data::Unsupported { class: c },
            Class::Cell => {
                if numel > max_children {
                    return Err(Error::Truncated {
                        context: ctx.to_string(),
                        what: "cells",
                        offset: cur.pos,
                        needed: numel.saturating_mul(8),
                        available: cur.remaining(),
                    });
                }
                let mut cells = Vec::with_capacity(numel);
                for index in 0..numel {
                    let cctx = Ctx::Cell { index, parent: ctx };
                    let tag = cur.element(&cctx, "cell")?;
                    if tag.ty != MI_MATRIX {
                        return Err(malformed(&cctx, "cell", "miMATRIX (14)", type_name(tag.ty)));
                    }
                    cells.push(self.matrix(tag.data, &cctx, depth + 1)?);
                }
                Data::Cell(cells)
            }
            Class::Struct => {
                let len_tag = cur.element(ctx, "field name length")?;
                let len: Vec<i64> = self.numbers(&len_tag, ctx, "field name length")?;
                let len = match len.as_slice() {
                    [l] => usize::try_from(*l).ok(),
                    _ => None,
                }
                .ok_or_else(|| {
                    malformed(
                        ctx,
                        "field name length",
                        "one non-negative integer",
                        format!("{len:?}"),
                    )
                })?;
                let names_tag = cur.element(ctx, "field names")?;
                if !matches!(names_tag.ty, MI_INT8 | MI_UINT8 | MI_UTF8) {
                    return Err(malformed(
                        ctx,
                        "field names",
                        "miINT8 (1)",
                        type_name(names_tag.ty),
                    ));
                }
                let raw = names_tag.data;
                let n_fields = match len {
                    0 if raw.is_empty() => 0,
                    0 => return Err(malformed(ctx, "field name length", "a positive length", 0)),
                    l if raw.len() % l == 0 => raw.len() / l,
                    l => {
                        return Err(malformed(
                            ctx,
                            "field names",
                            &format!("a multiple of the field name length {l}"),
                            format!("{} bytes", raw.len()),
                        ));
                    }
                };
                let mut field_names = Vec::with_capacity(n_fields);
                if len > 0 {
                    for chunk in raw.chunks_exact(len) {
                        let end = chunk.iter().position(|&b| b == 0).unwrap_or(chunk.len());
                        let s = std::str::from_utf8(&chunk[..end]).map_err(|_| {
                            malformed(ctx, "field names", "ASCII text", "invalid UTF-8")
                        })?;
                        field_names.push(s.to_string());
                    }
                }
                let total = numel
                    .checked_mul(n_fields)
                    .filter(|&t| t <= max_children)
                    .ok_or_else(|| Error::Truncated {
                        context: ctx.to_string(),
                        what: "struct fields",
                        offset: cur.pos,
                        needed: numel.saturating_mul(n_fields).saturating_mul(8),
                        available: cur.remaining(),
                    })?;
                let mut values = Vec::with_capacity(total);
                for element in 0..numel {
                    for fname in &field_names {
                        let fctx = Ctx::Field {
                            element,
                            name: fname,
                            parent: ctx,
                        };
                        let tag = cur.element(&fctx, "field value")?;
                        if tag.ty != MI_MATRIX {
                            return Err(malformed(
                                &fctx,
                                "field value",
                                "miMATRIX (14)",
                                type_name(tag.ty),
                            ));
                        }
                        values.push(self.matrix(tag.data, &fctx, depth + 1)?);
                    }
                }
                Data::Struct(StructArray {
                    field_names,
                    values,
                })
            }
            Class::Char => {
                let units = if cur.remaining() == 0 && numel == 0 {
                    Vec::new()
                } else {
                    let tag = cur.element(ctx, "char data")?;
                    self.chars(&tag, ctx)?
                };
                if units.len() != numel {
                    return Err(malformed(
                        ctx,
                        "char data",
                        &format!("{numel} UTF-16 code units for dimensions {dims:?}"),
                        units.len(),
                    ));
                }
                Data::Char(units)
            }
            _ => {
                let real_tag = cur.element(ctx, "real part")?;
                let real = self.numeric(class, &real_tag, ctx, "real part")?;
                if real.len() != numel {
                    return Err(malformed(
                        ctx,
                        "real part",
                        &format!("{numel} values for dimensions {dims:?}"),
                        real.len(),
                    ));
                }
                let imag = if complex {
                    let tag = cur.element(ctx, "imaginary part")?;
                    let imag = self.numeric(class, &tag, ctx, "imaginary part")?;
                    if imag.len() != numel {
                        return Err(malformed(
                            ctx,
                            "imaginary part",
                            &format!("{numel} values for dimensions {dims:?}"),
                            imag.len(),
                        ));
                    }
                    Some(imag)
                } else {
                    None
                };
                Data::Numeric {
                    real,
                    imag,
                    logical,
                }
            }
        };
        Ok(Array {
            name,
            dims,
            global,
            data,
        })
    }
}
