//! Bit-exact OpenAI CLIP image preprocessing: decode, EXIF orientation, Pillow bicubic resize,
//! centre crop, normalise.
//!
//! The target is the transform of OpenAI's `clip.load` applied to the image as Pillow decodes
//! it: torchvision `Resize(size, BICUBIC)` (shorter side to `size`, longer side `int()`-truncated)
//! → `CenterCrop(size)` (offsets `round((L - size) / 2)`, Python rounding) → `convert("RGB")` →
//! `ToTensor` (`/255`) → `Normalize(mean, std)`, as a CHW `f32` tensor. Every step reproduces
//! Pillow's integer arithmetic, so the 8-bit pixels are identical and the tensor is equal to the
//! float32 one PyTorch computes:
//!
//! - images are resized in their own mode and converted to RGB afterwards: grey, CMYK and 16-bit
//!   grey stay as they are, RGBA and LA are resized premultiplied, palette and bilevel images with
//!   nearest neighbour (see [`Mode`]);
//! - JPEG is decoded by libjpeg-turbo's decoder (Pillow's), PNG without any transformation and
//!   unpacked the way Pillow's PNG plugin does; GIF, BMP, TIFF and WebP by the `image` crate,
//!   with palettes, 16-bit channels and GIF transparency brought to what Pillow opens (the
//!   layouts proven identical are listed in the `decode` module's source).
//!
//! Building: the JPEG decoder is compiled from the C source bundled in `mozjpeg-sys`; with `nasm`
//! on the `PATH` its SIMD code is built too (about 2× faster decoding, identical pixels),
//! without it the build falls back to plain C with a warning.
//!
//! Main types: [`PreprocessConfig`] (with the [`PreprocessConfig::openai`] preset, EXIF
//! orientation off, and [`PreprocessConfig::application`], EXIF on; [`PreprocessConfig::chinese_clip`]
//! squashes both sides to the size instead of cropping, as Chinese-CLIP does), [`Preprocessor`], and its
//! outputs [`Tensor3`] (normalised CHW) and [`RgbImage`] (the 8-bit crop). Errors are [`Error`].
//!
//! ```
//! use clip_preprocess::{PreprocessConfig, Preprocessor};
//! // A 2x1 PNG: one red and one blue pixel.
//! let png: &[u8] = &[
//!     0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44,
//!     0x52, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x01, 0x08, 0x02, 0x00, 0x00, 0x00, 0x7b,
//!     0x40, 0xe8, 0xdd, 0x00, 0x00, 0x00, 0x0f, 0x49, 0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0xf8,
//!     0xcf, 0xc0, 0xc0, 0xc0, 0xf0, 0x1f, 0x00, 0x07, 0x00, 0x01, 0xff, 0xc7, 0x73, 0x0d, 0x97,
//!     0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
//! ];
//! let pre = Preprocessor::new(PreprocessConfig::openai(224))?;
//! let t = pre.preprocess_bytes(png)?;
//! assert_eq!((t.channels, t.height, t.width), (3, 224, 224));
//! assert_eq!(t.data.len(), 3 * 224 * 224);
//! // Top-left pixel is pure red: channel 0 is (1 - mean) / std, channel 2 is (0 - mean) / std.
//! let c = PreprocessConfig::openai(224);
//! assert_eq!(t.data[0], (1.0 - c.mean[0]) / c.std[0]);
//! assert_eq!(t.data[2 * 224 * 224], (0.0 - c.mean[2]) / c.std[2]);
//! # Ok::<(), clip_preprocess::Error>(())
//! ```
#![deny(missing_docs)]

mod decode;
mod error;
mod raster;
mod resample;

use std::path::{Path, PathBuf};

use rayon::prelude::*;

pub use error::Error;
pub use raster::Mode;
pub use resample::Interpolation;

/// OpenAI CLIP's normalisation mean (RGB), as written in `clip.py`.
pub const OPENAI_MEAN: [f64; 3] = [0.48145466, 0.4578275, 0.40821073];
/// OpenAI CLIP's normalisation standard deviation (RGB), as written in `clip.py`.
pub const OPENAI_STD: [f64; 3] = [0.26862954, 0.26130258, 0.27577711];

/// Pillow's `Image.MAX_IMAGE_PIXELS` × 2, the size above which Pillow refuses to open an image.
pub const DEFAULT_MAX_PIXELS: u64 = 2 * (1024 * 1024 * 1024 / 4 / 3);

/// Largest image file read from a path by default: 1 GiB, above any photo (an uncompressed
/// TIFF at [`DEFAULT_MAX_PIXELS`] is about 540 MB) and below what would exhaust memory.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 1 << 30;

/// How the image is brought to `size` before the centre crop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResizeMode {
    /// torchvision `Resize(size)`: the shorter side becomes `size`, the longer one
    /// `int(size * long / short)`; then `CenterCrop(size)`. What CLIP uses.
    ShorterSide,
    /// torchvision `Resize((size, size))`: both sides become `size` (aspect ratio lost; the crop
    /// is then a no-op). Chinese-CLIP's preprocessing ([`PreprocessConfig::chinese_clip`]).
    Squash,
}

/// Preprocessing settings.
#[derive(Debug, Clone, PartialEq)]
pub struct PreprocessConfig {
    /// Output side length in pixels (224 for ViT-B/32, 448 for RN50x64, ...).
    pub size: u32,
    /// Per-channel mean subtracted after scaling to `[0, 1]` (float32, like torchvision).
    pub mean: [f32; 3],
    /// Per-channel standard deviation divided by after subtracting the mean.
    pub std: [f32; 3],
    /// Resampling filter.
    pub interpolation: Interpolation,
    /// How the image is resized before cropping.
    pub resize_mode: ResizeMode,
    /// Rotate/flip the image upright according to its EXIF orientation tag before anything else
    /// (Pillow's `ImageOps.exif_transpose`). OpenAI's reference ignores the tag.
    pub apply_exif: bool,
    /// Refuse images with more pixels than this, checked from the header before decoding
    /// (`None`: no limit beyond 2^24 per side).
    pub max_pixels: Option<u64>,
    /// Largest image file read from a path, in bytes ([`DEFAULT_MAX_FILE_BYTES`] by default).
    /// Whatever the limit, only regular files are read: a FIFO, device or folder given as a path
    /// is refused at once (see `safe-file`).
    pub max_file_bytes: u64,
}

impl PreprocessConfig {
    /// OpenAI's `clip.load` transform at `size`: bicubic shorter-side resize, centre crop, CLIP
    /// mean/std, EXIF orientation ignored (as the reference does). Use it for evaluation and parity.
    pub fn openai(size: u32) -> Self {
        // torch.as_tensor(mean, dtype=float32): Python float (f64) rounded to f32.
        let f = |a: [f64; 3]| [a[0] as f32, a[1] as f32, a[2] as f32];
        Self {
            size,
            mean: f(OPENAI_MEAN),
            std: f(OPENAI_STD),
            interpolation: Interpolation::Bicubic,
            resize_mode: ResizeMode::ShorterSide,
            apply_exif: false,
            max_pixels: Some(DEFAULT_MAX_PIXELS),
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
        }
    }

    /// Chinese-CLIP's transform (cn_clip's `image_transform(size)`): bicubic `Resize((size, size))`
    /// of both sides (no crop), then `convert("RGB")`, OpenAI's mean and std; EXIF orientation
    /// ignored as the reference does (set `apply_exif` for applications). 224 for every published
    /// model except ViT-L/14@336 (336).
    pub fn chinese_clip(size: u32) -> Self {
        Self {
            resize_mode: ResizeMode::Squash,
            ..Self::openai(size)
        }
    }

    /// SigLIP / SigLIP 2's transform at `size` (transformers' `SiglipImageProcessor`, open_clip's
    /// SigLIP configs): bicubic resize of both sides to `size` (no crop, aspect ratio not kept),
    /// mean = std = 0.5 (pixels to `[-1, 1]`), EXIF orientation ignored as the references do.
    pub fn siglip(size: u32) -> Self {
        Self {
            mean: [0.5; 3],
            std: [0.5; 3],
            resize_mode: ResizeMode::Squash,
            ..Self::openai(size)
        }
    }

    /// [`PreprocessConfig::openai`] with EXIF orientation applied, so that a rotated phone photo
    /// is classified upright. Use it in applications.
    pub fn application(size: u32) -> Self {
        Self {
            apply_exif: true,
            ..Self::openai(size)
        }
    }
}

/// A `channels × height × width` `f32` tensor in row-major (CHW) order.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor3 {
    /// The values, CHW.
    pub data: Vec<f32>,
    /// Number of channels (3).
    pub channels: usize,
    /// Height.
    pub height: usize,
    /// Width.
    pub width: usize,
}

/// An 8-bit RGB image, row-major, 3 bytes per pixel: the centre crop before normalisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    /// Interleaved RGB bytes.
    pub data: Vec<u8>,
    /// Height.
    pub height: usize,
    /// Width.
    pub width: usize,
}

/// Turns image files or bytes into CLIP input tensors. Cheap to share across threads.
#[derive(Debug, Clone)]
pub struct Preprocessor {
    cfg: PreprocessConfig,
}

const MEMORY: &str = "<memory>";

impl Preprocessor {
    /// Checks the config (size ≥ 1, finite mean, finite non-zero std).
    pub fn new(cfg: PreprocessConfig) -> Result<Self, Error> {
        if cfg.size == 0 || cfg.size >= 1 << 24 {
            return Err(Error::InvalidConfig {
                field: "size",
                value: cfg.size.to_string(),
                reason: "must be between 1 and 2^24 - 1",
            });
        }
        if cfg.std.iter().any(|s| *s == 0.0 || !s.is_finite()) {
            return Err(Error::InvalidConfig {
                field: "std",
                value: format!("{:?}", cfg.std),
                reason: "must be finite and non-zero",
            });
        }
        if cfg.mean.iter().any(|m| !m.is_finite()) {
            return Err(Error::InvalidConfig {
                field: "mean",
                value: format!("{:?}", cfg.mean),
                reason: "must be finite",
            });
        }
        Ok(Self { cfg })
    }

    /// The configuration.
    pub fn config(&self) -> &PreprocessConfig {
        &self.cfg
    }

    /// Reads, decodes and preprocesses an image file.
    pub fn preprocess_path(&self, path: impl AsRef<Path>) -> Result<Tensor3, Error> {
        Ok(self.normalize(&self.rgb_path(path)?))
    }

    /// Decodes and preprocesses an encoded image (JPEG, PNG, GIF, WebP, BMP, TIFF).
    pub fn preprocess_bytes(&self, bytes: &[u8]) -> Result<Tensor3, Error> {
        Ok(self.normalize(&self.rgb_bytes(bytes)?))
    }

    /// [`Preprocessor::preprocess_bytes`] for bytes read from elsewhere: errors name `name`
    /// (a path, a URL, `upload #3`) instead of `<memory>`.
    pub fn preprocess_bytes_named(&self, bytes: &[u8], name: &Path) -> Result<Tensor3, Error> {
        Ok(self.normalize(&self.rgb_named(bytes, name)?))
    }

    /// Preprocesses an already-decoded 8-bit RGB image: `data` holds `height` rows of
    /// `width × 3` interleaved bytes (the layout of `image::RgbImage`). No EXIF tag applies; the
    /// pixel limit does.
    pub fn preprocess_rgb8(
        &self,
        data: &[u8],
        width: usize,
        height: usize,
    ) -> Result<Tensor3, Error> {
        let expected = width.checked_mul(height).and_then(|n| n.checked_mul(3));
        if expected != Some(data.len()) || width == 0 || height == 0 {
            return Err(Error::BadBuffer {
                width,
                height,
                expected: expected.unwrap_or(usize::MAX),
                found: data.len(),
            });
        }
        let pixels = width as u64 * height as u64;
        if let Some(limit) = self.cfg.max_pixels.filter(|l| pixels > *l) {
            return Err(Error::TooManyPixels {
                path: PathBuf::from("<rgb buffer>"),
                width: u32::try_from(width).unwrap_or(u32::MAX),
                height: u32::try_from(height).unwrap_or(u32::MAX),
                limit,
            });
        }
        let raster = raster::Raster::new_u8(Mode::Rgb, width, height, data.to_vec());
        Ok(self.normalize(&self.resize_crop(raster)))
    }

    /// The 8-bit RGB centre crop of an image file, before normalisation. Only a regular file
    /// of at most [`PreprocessConfig::max_file_bytes`] is read; a FIFO or device is refused
    /// without waiting ([`Error::File`]).
    pub fn rgb_path(&self, path: impl AsRef<Path>) -> Result<RgbImage, Error> {
        let path = path.as_ref();
        let bytes = safe_file::read(path, self.cfg.max_file_bytes).map_err(Error::from)?;
        self.rgb_named(&bytes, path)
    }

    /// The 8-bit RGB centre crop of an encoded image, before normalisation.
    pub fn rgb_bytes(&self, bytes: &[u8]) -> Result<RgbImage, Error> {
        self.rgb_named(bytes, Path::new(MEMORY))
    }

    /// Decodes and preprocesses many files in parallel (rayon), one result per path, in order.
    /// A bad file yields its error without affecting the others.
    pub fn load_batch<P: AsRef<Path> + Sync>(&self, paths: &[P]) -> Vec<Result<Tensor3, Error>> {
        paths.par_iter().map(|p| self.preprocess_path(p)).collect()
    }

    /// `ToTensor` + `Normalize`: `(v / 255 - mean) / std` per channel in `f32`, CHW.
    pub fn normalize(&self, img: &RgbImage) -> Tensor3 {
        let n = img.width * img.height;
        let mut data = vec![0f32; 3 * n];
        let (plane0, rest) = data.split_at_mut(n);
        let (plane1, plane2) = rest.split_at_mut(n);
        let [m0, m1, m2] = self.cfg.mean;
        let [s0, s1, s2] = self.cfg.std;
        for (i, p) in img.data.chunks_exact(3).enumerate() {
            plane0[i] = (p[0] as f32 / 255.0 - m0) / s0;
            plane1[i] = (p[1] as f32 / 255.0 - m1) / s1;
            plane2[i] = (p[2] as f32 / 255.0 - m2) / s2;
        }
        Tensor3 {
            data,
            channels: 3,
            height: img.height,
            width: img.width,
        }
    }

    fn rgb_named(&self, bytes: &[u8], path: &Path) -> Result<RgbImage, Error> {
        let decoded = decode::decode(bytes, path, self.cfg.max_pixels)?;
        let mut raster = decoded.raster;
        if self.cfg.apply_exif {
            raster = raster.apply_orientation(decoded.orientation);
        }
        Ok(self.resize_crop(raster))
    }

    /// Resize (per the mode) and centre crop to the configured size, zero-padded like torchvision.
    fn resize_crop(&self, raster: raster::Raster) -> RgbImage {
        let size = self.cfg.size as usize;
        let (rw, rh) = resized_size(raster.width, raster.height, size, self.cfg.resize_mode);
        let (x0, pad_x, cw) = crop_axis(rw, size);
        let (y0, pad_y, ch) = crop_axis(rh, size);
        let win = resample::Window {
            x0,
            x1: x0 + cw,
            y0,
            y1: y0 + ch,
        };
        let rgb = raster.resize_crop_rgb(rw, rh, win, self.cfg.interpolation);
        let data = if cw == size && ch == size {
            rgb
        } else {
            // torchvision pads with zeros when the image is smaller than the crop.
            let mut out = vec![0u8; size * size * 3];
            for y in 0..ch {
                let dst = ((y + pad_y) * size + pad_x) * 3;
                out[dst..dst + cw * 3].copy_from_slice(&rgb[y * cw * 3..(y + 1) * cw * 3]);
            }
            out
        };
        RgbImage {
            data,
            height: size,
            width: size,
        }
    }
}

/// An image as decoded, in the mode Pillow opens it in (before any resize or conversion).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedImage {
    /// Pillow's mode for this image.
    pub mode: Mode,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// The samples as Pillow's `Image.tobytes()` returns them: interleaved 8-bit channels, or
    /// little-endian 16-bit values for [`Mode::I16`].
    pub bytes: Vec<u8>,
    /// The EXIF orientation tag (1 when absent).
    pub orientation: u16,
}

/// Decodes an encoded image without resizing it (`max_pixels` as in [`PreprocessConfig`]).
pub fn decode_bytes(bytes: &[u8], max_pixels: Option<u64>) -> Result<DecodedImage, Error> {
    let d = decode::decode(bytes, Path::new(MEMORY), max_pixels)?;
    let r = d.raster;
    let bytes = if r.mode == Mode::I16 {
        r.data16.iter().flat_map(|v| v.to_le_bytes()).collect()
    } else {
        r.data
    };
    Ok(DecodedImage {
        mode: r.mode,
        width: r.width,
        height: r.height,
        bytes,
        orientation: d.orientation,
    })
}

/// torchvision `CenterCrop(size)` of an RGB image: offsets `round((L - size) / 2)`, zero padding
/// where the image is smaller than the crop.
pub fn center_crop(img: &RgbImage, size: usize) -> RgbImage {
    let (x0, pad_x, cw) = crop_axis(img.width, size);
    let (y0, pad_y, ch) = crop_axis(img.height, size);
    let mut data = vec![0u8; size * size * 3];
    for y in 0..ch {
        let src = ((y0 + y) * img.width + x0) * 3;
        let dst = ((y + pad_y) * size + pad_x) * 3;
        data[dst..dst + cw * 3].copy_from_slice(&img.data[src..src + cw * 3]);
    }
    RgbImage {
        data,
        height: size,
        width: size,
    }
}

/// Size after the resize step (torchvision's `_compute_resized_output_size` for an int size).
pub fn resized_size(w: usize, h: usize, size: usize, mode: ResizeMode) -> (usize, usize) {
    match mode {
        ResizeMode::Squash => (size, size),
        ResizeMode::ShorterSide => {
            let (short, long) = if w <= h { (w, h) } else { (h, w) };
            // Python: int(size * long / short), an exact product then a rounded f64 division.
            let new_long = ((size as u64 * long as u64) as f64 / short as f64) as usize;
            if w <= h {
                (size, new_long)
            } else {
                (new_long, size)
            }
        }
    }
}

/// For one axis of length `len` and crop `size`: (first kept index, zero padding before, kept
/// length), as torchvision's `center_crop` computes them.
pub fn crop_axis(len: usize, size: usize) -> (usize, usize, usize) {
    if size > len {
        (0, (size - len) / 2, len)
    } else {
        // int(round((len - size) / 2.0)) with Python's round-half-to-even.
        let d = len - size;
        let q = d / 2;
        let off = if d.is_multiple_of(2) || q.is_multiple_of(2) {
            q
        } else {
            q + 1
        };
        (off, 0, size)
    }
}

/// The path an in-memory input is reported under in errors.
pub fn memory_path() -> PathBuf {
    PathBuf::from(MEMORY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rgb_buffers_are_checked() {
        let pre = Preprocessor::new(PreprocessConfig {
            max_pixels: Some(100),
            ..PreprocessConfig::openai(8)
        })
        .unwrap();
        let e = pre.preprocess_rgb8(&[0u8; 11], 2, 2).unwrap_err();
        assert!(
            matches!(
                e,
                Error::BadBuffer {
                    expected: 12,
                    found: 11,
                    ..
                }
            ),
            "{e}"
        );
        assert!(pre.preprocess_rgb8(&[], 0, 0).is_err());
        assert!(pre.preprocess_rgb8(&[0u8; 3], usize::MAX, 3).is_err());
        let e = pre
            .preprocess_rgb8(&vec![0u8; 11 * 10 * 3], 11, 10)
            .unwrap_err();
        assert!(matches!(e, Error::TooManyPixels { .. }), "{e}");
        let t = pre.preprocess_rgb8(&[255u8; 4 * 3 * 3], 4, 3).unwrap();
        assert_eq!((t.channels, t.height, t.width), (3, 8, 8));
    }

    #[test]
    fn crop_offsets_round_half_to_even() {
        // round(0.5) = 0, round(1.5) = 2, round(2.5) = 2, round(3.5) = 4.
        assert_eq!(crop_axis(225, 224), (0, 0, 224));
        assert_eq!(crop_axis(227, 224), (2, 0, 224));
        assert_eq!(crop_axis(229, 224), (2, 0, 224));
        assert_eq!(crop_axis(231, 224), (4, 0, 224));
        assert_eq!(crop_axis(230, 224), (3, 0, 224));
        assert_eq!(crop_axis(221, 224), (0, 1, 221));
    }

    #[test]
    fn shorter_side_truncates() {
        assert_eq!(
            resized_size(500, 375, 224, ResizeMode::ShorterSide),
            (298, 224)
        );
        assert_eq!(
            resized_size(375, 500, 224, ResizeMode::ShorterSide),
            (224, 298)
        );
        assert_eq!(
            resized_size(2000, 20, 224, ResizeMode::ShorterSide),
            (22400, 224)
        );
        assert_eq!(resized_size(1, 1, 224, ResizeMode::ShorterSide), (224, 224));
    }

    #[test]
    fn config_is_checked() {
        assert!(Preprocessor::new(PreprocessConfig::openai(0)).is_err());
        let mut c = PreprocessConfig::openai(224);
        c.std[1] = 0.0;
        assert!(matches!(
            Preprocessor::new(c),
            Err(Error::InvalidConfig { field: "std", .. })
        ));
    }
}
