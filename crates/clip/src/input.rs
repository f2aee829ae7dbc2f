//! Images as the facade takes them: a path, encoded bytes, or decoded RGB pixels.

use std::path::{Path, PathBuf};

/// One image to embed or classify. Made from `&str` / `&Path` / `&PathBuf` (a file), `&[u8]` /
/// `&Vec<u8>` (an encoded JPEG, PNG, GIF, WebP, BMP or TIFF) or `&image::RgbImage` (decoded
/// pixels), so every method taking `impl Into<ImageInput>` accepts all of these.
#[derive(Debug, Clone, Copy)]
pub enum ImageInput<'a> {
    /// An image file.
    Path(&'a Path),
    /// An encoded image in memory.
    Bytes(&'a [u8]),
    /// An encoded image in memory that came from somewhere with a name (a path, a URL, an
    /// upload's file name): errors name it.
    Named {
        /// The encoded bytes.
        bytes: &'a [u8],
        /// Its name.
        name: &'a Path,
    },
    /// Decoded 8-bit RGB pixels, `height` rows of `width × 3` bytes.
    Rgb {
        /// The pixels.
        data: &'a [u8],
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
}

impl ImageInput<'_> {
    /// How errors name this input: its path, or `what` (e.g. `image #3 (bytes)`).
    pub(crate) fn describe(&self, index: usize) -> String {
        match self {
            Self::Path(p) => p.display().to_string(),
            Self::Bytes(b) => format!("image #{index} ({} bytes in memory)", b.len()),
            Self::Named { name, .. } => name.display().to_string(),
            Self::Rgb { width, height, .. } => {
                format!("image #{index} ({width}x{height} RGB pixels)")
            }
        }
    }
}

impl<'a> From<&'a Path> for ImageInput<'a> {
    fn from(p: &'a Path) -> Self {
        Self::Path(p)
    }
}

impl<'a> From<&'a PathBuf> for ImageInput<'a> {
    fn from(p: &'a PathBuf) -> Self {
        Self::Path(p)
    }
}

impl<'a> From<&'a str> for ImageInput<'a> {
    fn from(p: &'a str) -> Self {
        Self::Path(Path::new(p))
    }
}

impl<'a> From<&'a String> for ImageInput<'a> {
    fn from(p: &'a String) -> Self {
        Self::Path(Path::new(p))
    }
}

impl<'a> From<&'a [u8]> for ImageInput<'a> {
    fn from(b: &'a [u8]) -> Self {
        Self::Bytes(b)
    }
}

impl<'a> From<&'a Vec<u8>> for ImageInput<'a> {
    fn from(b: &'a Vec<u8>) -> Self {
        Self::Bytes(b)
    }
}

impl<'a> From<&'a image::RgbImage> for ImageInput<'a> {
    fn from(img: &'a image::RgbImage) -> Self {
        Self::Rgb {
            data: img.as_raw(),
            width: img.width(),
            height: img.height(),
        }
    }
}

impl<'a, 'b> From<&'b ImageInput<'a>> for ImageInput<'a> {
    fn from(i: &'b ImageInput<'a>) -> Self {
        *i
    }
}
