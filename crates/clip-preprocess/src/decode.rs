//! Decoding bytes into a [`Raster`] in the mode Pillow would open the file in.
//!
//! - JPEG: libjpeg-turbo's decoder (the copy bundled in mozjpeg, built from source), with the
//!   settings Pillow uses (islow IDCT, fancy upsampling): 1 component → `L`, 3 → `RGB`,
//!   4 → `CMYK` stored inverted ("Adobe" convention, Pillow's `CMYK;I` raw mode).
//! - PNG: the `png` crate without transformations, unpacked like Pillow's PNG plugin
//!   (`1`, `L` from 2/4-bit scaled ×85/×17, `I;16`, `RGB`/`RGBA` from 16-bit keep the high byte,
//!   16-bit grey+alpha opens as `RGBA`, palettes as `P`).
//! - GIF, WebP, BMP, TIFF: the `image` crate, with its output brought to what Pillow opens:
//!   palette images (GIF first frame, BMP of 1/4/8 bits), which `image` expands to RGB(A), are
//!   mapped back onto the file's palette and open as `P` (resized with nearest), or as `L` / `1`
//!   where Pillow drops a plain grey ramp / black-and-white table; GIF pixels outside the first
//!   frame or transparent take the transparent index (else 0); 16-bit BMP channels are widened
//!   by truncation (`v * 255 / 31`) instead of `image`'s rounding; 16-bit TIFF grey opens as
//!   `I;16`, 16-bit RGB(A) keeps the high bytes.
//!
//!   Proven identical to Pillow 13 (whole decoded image: mode, size, sha256 of the pixels; and
//!   the CLIP crop) by `tests/goldens.rs` on: BMP 24-bit, 32-bit without bitfields (4th byte
//!   ignored), 16-bit 5-5-5 and 5-6-5 bitfields, 8-bit palette, RLE8, 4-bit top-down, grey
//!   ramp, 1-bit; TIFF RGB uncompressed, LZW and deflate, 8-bit grey, 16-bit grey and RGB
//!   (little-endian); GIF with a global palette, with a transparent index, grey, and a first
//!   frame smaller than the screen (with and without transparency); WebP lossless RGB and RGBA
//!   (RGB under alpha 0 kept) and one lossy RGB file (quality 90: `image-webp` and libwebp gave
//!   identical pixels). Not proven: lossy WebP in general (decoders may legitimately differ),
//!   animated WebP, big-endian 16-bit TIFF (Pillow: `I;16B`), CMYK/YCbCr/JPEG-compressed or
//!   multi-page TIFF, BMP 32-bit bitfields with alpha, BMP RLE4, 4-bit BMP with a grey-ramp
//!   palette (Pillow opens it as `L`, here `P`), GIF frames reaching past the screen (Pillow
//!   grows the image, `image` clips it), pixel values past the end of a palette.
//!
//! Image dimensions are checked against the pixel limit from the header, before decoding.

use std::cell::Cell;
use std::io::Cursor;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use crate::Error;
use crate::raster::{Mode, Raster};

/// A decoded image and its EXIF orientation tag (1 when absent).
pub(crate) struct Decoded {
    pub raster: Raster,
    pub orientation: u16,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Jpeg,
    Png,
    Other,
}

fn sniff(bytes: &[u8]) -> Option<Format> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(Format::Jpeg)
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(Format::Png)
    } else if bytes.starts_with(b"GIF87a")
        || bytes.starts_with(b"GIF89a")
        || (bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP")
        || bytes.starts_with(b"BM")
        || bytes.starts_with(b"II*\0")
        || bytes.starts_with(b"MM\0*")
    {
        Some(Format::Other)
    } else {
        None
    }
}

/// Decodes `bytes` (named `path` in errors).
pub(crate) fn decode(bytes: &[u8], path: &Path, max_pixels: Option<u64>) -> Result<Decoded, Error> {
    if bytes.is_empty() {
        return Err(Error::Empty {
            path: path.to_owned(),
        });
    }
    match sniff(bytes) {
        Some(Format::Jpeg) => decode_jpeg(bytes, path, max_pixels),
        Some(Format::Png) => decode_png(bytes, path, max_pixels),
        Some(Format::Other) => decode_other(bytes, path, max_pixels),
        None => Err(Error::UnknownFormat {
            path: path.to_owned(),
            found: bytes
                .iter()
                .take(8)
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" "),
        }),
    }
}

fn check_pixels(
    path: &Path,
    format: &'static str,
    width: u64,
    height: u64,
    limit: Option<u64>,
) -> Result<(), Error> {
    if let Some(limit) = limit.filter(|&l| width.max(1) * height.max(1) > l) {
        return Err(Error::TooManyPixels {
            path: path.to_owned(),
            width: width.min(u32::MAX as u64) as u32,
            height: height.min(u32::MAX as u64) as u32,
            limit,
        });
    }
    // Pillow holds sizes in C floats while resizing: exact only below 2^24.
    if width >= 1 << 24 || height >= 1 << 24 {
        return Err(Error::Unsupported {
            path: path.to_owned(),
            format,
            detail: format!("{width}x{height}: sides of 2^24 pixels or more"),
        });
    }
    if width == 0 || height == 0 {
        return Err(Error::Unsupported {
            path: path.to_owned(),
            format,
            detail: format!("zero-sized image {width}x{height}"),
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// JPEG

thread_local! {
    /// Set by the libjpeg warning hook when the data ran out (libjpeg then fakes an EOI marker).
    static JPEG_HIT_EOF: Cell<bool> = const { Cell::new(false) };
}

unsafe extern "C-unwind" fn jpeg_emit_message(
    cinfo: &mut mozjpeg_sys::jpeg_common_struct,
    level: std::os::raw::c_int,
) {
    // SAFETY: libjpeg passes the struct whose `err` points at our live error manager.
    let code = unsafe { cinfo.err.as_ref() }.map(|e| e.msg_code);
    if level < 0 && code == Some(mozjpeg_sys::JWRN_JPEG_EOF as std::os::raw::c_int) {
        JPEG_HIT_EOF.with(|f| f.set(true));
    }
}

unsafe extern "C-unwind" fn jpeg_error_exit(cinfo: &mut mozjpeg_sys::jpeg_common_struct) {
    let mut message = String::from("libjpeg error");
    // SAFETY: as above; `format_message` writes at most JMSG_LENGTH_MAX (80) bytes.
    unsafe {
        if let Some(fmt) = cinfo.err.as_ref().and_then(|e| e.format_message) {
            let buffer = [0u8; 80];
            fmt(cinfo, &buffer);
            let end = buffer.iter().position(|&c| c == 0).unwrap_or(buffer.len());
            message = String::from_utf8_lossy(&buffer[..end]).into_owned();
        }
    }
    // Unwinds through libjpeg (built with unwinding support) to the catch_unwind in decode_jpeg;
    // resume_unwind does not run the panic hook.
    std::panic::resume_unwind(Box::new(message));
}

fn jpeg_error_mgr() -> mozjpeg_sys::jpeg_error_mgr {
    // SAFETY: jpeg_error_mgr is a plain C struct; jpeg_std_error fills every field.
    let mut err: mozjpeg_sys::jpeg_error_mgr = unsafe { std::mem::zeroed() };
    unsafe { mozjpeg_sys::jpeg_std_error(&mut err) };
    err.error_exit = Some(jpeg_error_exit);
    err.emit_message = Some(jpeg_emit_message);
    err
}

enum JpegOutcome {
    Ok(Decoded),
    TooLarge(u64, u64),
    BadLayers(usize),
}

fn decode_jpeg(bytes: &[u8], path: &Path, max_pixels: Option<u64>) -> Result<Decoded, Error> {
    JPEG_HIT_EOF.with(|f| f.set(false));
    let markers = [mozjpeg::Marker::APP(1)];
    let run = || -> std::io::Result<JpegOutcome> {
        let d = mozjpeg::decompress::DecompressBuilder::new()
            .with_err(jpeg_error_mgr())
            .with_markers(&markers)
            .from_mem(bytes)?;
        let (w, h) = (d.width() as u64, d.height() as u64);
        if check_pixels(path, "JPEG", w, h, max_pixels).is_err() {
            return Ok(JpegOutcome::TooLarge(w, h));
        }
        let orientation = d
            .markers()
            .filter(|m| m.marker == mozjpeg::Marker::APP(1))
            .find_map(|m| m.data.strip_prefix(b"Exif\0\0").map(exif_orientation))
            .unwrap_or(1);
        let layers = d.components().len();
        let (mode, space) = match layers {
            1 => (Mode::L, mozjpeg_sys::J_COLOR_SPACE::JCS_GRAYSCALE),
            3 => (Mode::Rgb, mozjpeg_sys::J_COLOR_SPACE::JCS_RGB),
            4 => (Mode::Cmyk, mozjpeg_sys::J_COLOR_SPACE::JCS_CMYK),
            n => return Ok(JpegOutcome::BadLayers(n)),
        };
        let mut started = d.to_colorspace(space)?;
        let (ow, oh) = (started.width(), started.height());
        let mut data: Vec<u8> = started.read_scanlines()?;
        started.finish()?;
        if mode == Mode::Cmyk {
            // Pillow reads every CMYK JPEG with raw mode "CMYK;I" (Adobe's inverted convention).
            data.iter_mut().for_each(|v| *v = 255 - *v);
        }
        Ok(JpegOutcome::Ok(Decoded {
            raster: Raster::new_u8(mode, ow, oh, data),
            orientation,
        }))
    };
    let result = catch_unwind(AssertUnwindSafe(run));
    let hit_eof = JPEG_HIT_EOF.with(|f| f.replace(false));
    let decode_err = |message: String| Error::Decode {
        path: path.to_owned(),
        format: "JPEG",
        message,
    };
    match result {
        _ if hit_eof => Err(Error::Truncated {
            path: path.to_owned(),
            format: "JPEG",
        }),
        Ok(Ok(JpegOutcome::Ok(d))) => Ok(d),
        Ok(Ok(JpegOutcome::TooLarge(w, h))) => Err(check_pixels(path, "JPEG", w, h, max_pixels)
            .err()
            .unwrap_or_else(|| decode_err("image size rejected".into()))),
        Ok(Ok(JpegOutcome::BadLayers(n))) => Err(Error::Unsupported {
            path: path.to_owned(),
            format: "JPEG",
            detail: format!("{n} colour components (1, 3 or 4 are supported)"),
        }),
        Ok(Err(e)) => Err(decode_err(e.to_string())),
        Err(payload) => Err(decode_err(
            payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "libjpeg error".into()),
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// EXIF

/// The Orientation tag (0x0112) of IFD0 in a TIFF-structured EXIF block; 1 when absent or invalid.
pub(crate) fn exif_orientation(tiff: &[u8]) -> u16 {
    fn parse(t: &[u8]) -> Option<u16> {
        let le = match t.get(..4)? {
            b"II*\0" => true,
            b"MM\0*" => false,
            _ => return None,
        };
        let u16_at = |o: usize| -> Option<u16> {
            let b = t.get(o..o + 2)?;
            Some(if le {
                u16::from_le_bytes([b[0], b[1]])
            } else {
                u16::from_be_bytes([b[0], b[1]])
            })
        };
        let u32_at = |o: usize| -> Option<u32> {
            let b = t.get(o..o + 4)?;
            let a = [b[0], b[1], b[2], b[3]];
            Some(if le {
                u32::from_le_bytes(a)
            } else {
                u32::from_be_bytes(a)
            })
        };
        let ifd = u32_at(4)? as usize;
        let count = u16_at(ifd)? as usize;
        for i in 0..count {
            let e = ifd.checked_add(2 + 12 * i)?;
            if u16_at(e)? == 0x0112 {
                return match u16_at(e + 2)? {
                    3 => u16_at(e + 8),                   // SHORT
                    4 => u32_at(e + 8).map(|v| v as u16), // LONG (seen in the wild)
                    _ => None,
                };
            }
        }
        None
    }
    parse(tiff).filter(|o| (1..=8).contains(o)).unwrap_or(1)
}

// ---------------------------------------------------------------------------------------------
// PNG

fn decode_png(bytes: &[u8], path: &Path, max_pixels: Option<u64>) -> Result<Decoded, Error> {
    let err = |e: png::DecodingError| match e {
        png::DecodingError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            Error::Truncated {
                path: path.to_owned(),
                format: "PNG",
            }
        }
        other => Error::Decode {
            path: path.to_owned(),
            format: "PNG",
            message: other.to_string(),
        },
    };
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::IDENTITY);
    decoder.set_limits(png::Limits { bytes: usize::MAX });
    let header = decoder.read_header_info().map_err(err)?;
    let (w, h) = (header.width as u64, header.height as u64);
    check_pixels(path, "PNG", w, h, max_pixels)?;
    let mut reader = decoder.read_info().map_err(err)?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| Error::TooManyPixels {
            path: path.to_owned(),
            width: w as u32,
            height: h as u32,
            limit: max_pixels.unwrap_or(u64::MAX),
        })?;
    let mut buf = vec![0u8; size];
    let frame = reader.next_frame(&mut buf).map_err(err)?;
    let (w, h) = (frame.width as usize, frame.height as usize);
    let line = frame.line_size;
    let info = reader.info();
    let orientation = info
        .exif_metadata
        .as_deref()
        .map(exif_orientation)
        .unwrap_or(1);
    use png::{BitDepth as B, ColorType as C};
    let rows = buf.chunks_exact(line).take(h);
    let mut raster = match (frame.color_type, frame.bit_depth) {
        (C::Grayscale, B::One) => Raster::new_u8(
            Mode::Bilevel,
            w,
            h,
            rows.flat_map(|r| unpack_bits(r, 1, w).map(|v| v * 255))
                .collect(),
        ),
        (C::Grayscale, B::Two) => Raster::new_u8(
            Mode::L,
            w,
            h,
            rows.flat_map(|r| unpack_bits(r, 2, w).map(|v| v * 0x55))
                .collect(),
        ),
        (C::Grayscale, B::Four) => Raster::new_u8(
            Mode::L,
            w,
            h,
            rows.flat_map(|r| unpack_bits(r, 4, w).map(|v| v * 0x11))
                .collect(),
        ),
        (C::Indexed, d @ (B::One | B::Two | B::Four)) => Raster::new_u8(
            Mode::P,
            w,
            h,
            rows.flat_map(|r| unpack_bits(r, d as u8, w)).collect(),
        ),
        (C::Grayscale | C::Indexed, B::Eight) => Raster::new_u8(
            if frame.color_type == C::Indexed {
                Mode::P
            } else {
                Mode::L
            },
            w,
            h,
            rows.flat_map(|r| r[..w].iter().copied()).collect(),
        ),
        (C::Grayscale, B::Sixteen) => {
            let data16 = rows
                .flat_map(|r| {
                    r[..2 * w]
                        .chunks_exact(2)
                        .map(|b| u16::from_be_bytes([b[0], b[1]]))
                })
                .collect();
            Raster::new_u16(w, h, data16)
        }
        (C::Rgb, B::Eight) => Raster::new_u8(
            Mode::Rgb,
            w,
            h,
            rows.flat_map(|r| r[..3 * w].iter().copied()).collect(),
        ),
        (C::Rgb, B::Sixteen) => Raster::new_u8(
            Mode::Rgb,
            w,
            h,
            rows.flat_map(|r| r[..6 * w].iter().step_by(2).copied())
                .collect(),
        ),
        (C::GrayscaleAlpha, B::Eight) => Raster::new_u8(
            Mode::La,
            w,
            h,
            rows.flat_map(|r| r[..2 * w].iter().copied()).collect(),
        ),
        (C::GrayscaleAlpha, B::Sixteen) => Raster::new_u8(
            Mode::Rgba,
            w,
            h,
            // Pillow's "LA;16B" unpacker: high bytes, grey replicated into R, G, B.
            rows.flat_map(|r| {
                r[..4 * w]
                    .chunks_exact(4)
                    .flat_map(|p| [p[0], p[0], p[0], p[2]])
            })
            .collect(),
        ),
        (C::Rgba, B::Eight) => Raster::new_u8(
            Mode::Rgba,
            w,
            h,
            rows.flat_map(|r| r[..4 * w].iter().copied()).collect(),
        ),
        (C::Rgba, B::Sixteen) => Raster::new_u8(
            Mode::Rgba,
            w,
            h,
            rows.flat_map(|r| r[..8 * w].iter().step_by(2).copied())
                .collect(),
        ),
        (c, d) => {
            return Err(Error::Unsupported {
                path: path.to_owned(),
                format: "PNG",
                detail: format!("colour type {c:?} with bit depth {d:?}"),
            });
        }
    };
    if raster.mode == Mode::P {
        raster.palette = info
            .palette
            .as_deref()
            .unwrap_or(&[])
            .chunks_exact(3)
            .map(|c| [c[0], c[1], c[2]])
            .collect();
    }
    Ok(Decoded {
        raster,
        orientation,
    })
}

/// The first `n` samples of a row packed `bits` per sample, most significant bits first.
fn unpack_bits(row: &[u8], bits: u8, n: usize) -> impl Iterator<Item = u8> + '_ {
    let per_byte = 8 / bits as usize;
    let mask = (1u16 << bits) as u8 - 1;
    (0..n).map(move |i| {
        let byte = row[i / per_byte];
        let shift = 8 - bits as usize * (i % per_byte + 1);
        (byte >> shift) & mask
    })
}

// ---------------------------------------------------------------------------------------------
// Other formats

/// The name of a format the `image` crate guessed, for messages.
fn format_name(format: Option<image::ImageFormat>) -> &'static str {
    match format {
        Some(image::ImageFormat::Gif) => "GIF",
        Some(image::ImageFormat::WebP) => "WebP",
        Some(image::ImageFormat::Bmp) => "BMP",
        Some(image::ImageFormat::Tiff) => "TIFF",
        _ => "image",
    }
}

fn decode_other(bytes: &[u8], path: &Path, max_pixels: Option<u64>) -> Result<Decoded, Error> {
    let reader = || {
        image::ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|cause| Error::Io {
                path: path.to_owned(),
                cause,
            })
    };
    let first = reader()?;
    let format = format_name(first.format());
    let err = |e: image::ImageError| Error::Decode {
        path: path.to_owned(),
        format,
        message: e.to_string(),
    };
    let (w, h) = first.into_dimensions().map_err(err)?;
    check_pixels(path, format, w as u64, h as u64, max_pixels)?;
    let mut r = reader()?;
    r.no_limits();
    let img = r.decode().map_err(err)?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    // `image` expands palettes to RGB(A); Pillow keeps the indices (`P`, resized with nearest)
    // or, for a grey ramp, opens as `L` / `1`. Map the colours back to the file's palette.
    let indexed = if bytes.starts_with(b"GIF") {
        gif_palette(bytes)
    } else if bytes.starts_with(b"BM") {
        bmp_palette(bytes)
    } else {
        None
    };
    if let Some(raster) = indexed.and_then(|p| reindex(&img, w, h, p)) {
        return Ok(Decoded {
            raster,
            orientation: 1,
        });
    }
    let mut img = img;
    if let (Some(bits), image::DynamicImage::ImageRgb8(b)) = (bmp16_bits(bytes), &mut img) {
        rescale_bmp16(b.as_mut(), bits);
    }
    let raster = match img {
        image::DynamicImage::ImageLuma8(b) => Raster::new_u8(Mode::L, w, h, b.into_raw()),
        image::DynamicImage::ImageLumaA8(b) => Raster::new_u8(Mode::La, w, h, b.into_raw()),
        image::DynamicImage::ImageRgba8(b) => Raster::new_u8(Mode::Rgba, w, h, b.into_raw()),
        // 16-bit (TIFF): grey opens as `I;16`; RGB(A) as 8-bit from the high bytes, like Pillow's
        // `RGB;16L` / `RGBA;16L` unpackers (not `image`'s rounding division by 257).
        image::DynamicImage::ImageLuma16(b) => Raster::new_u16(w, h, b.into_raw()),
        image::DynamicImage::ImageRgb16(b) => Raster::new_u8(
            Mode::Rgb,
            w,
            h,
            b.as_raw().iter().map(|v| (v >> 8) as u8).collect(),
        ),
        image::DynamicImage::ImageRgba16(b) => Raster::new_u8(
            Mode::Rgba,
            w,
            h,
            b.as_raw().iter().map(|v| (v >> 8) as u8).collect(),
        ),
        other => Raster::new_u8(Mode::Rgb, w, h, other.into_rgb8().into_raw()),
    };
    Ok(Decoded {
        raster,
        orientation: 1,
    })
}

/// The palette of a GIF's first frame or of a BMP of at most 8 bits per pixel, and the mode
/// Pillow opens the image in (`P`, or `L` / `1` when the palette is a plain grey ramp).
struct FilePalette {
    colours: Vec<[u8; 3]>,
    /// GIF transparent index: where `image` yields alpha 0 (also outside the first frame,
    /// which Pillow fills with this index, or with 0 when there is none).
    transparent: Option<u8>,
    mode: Mode,
}

/// Pillow's `GifImagePlugin`: the first frame's local colour table, else the global one; a
/// table holding exactly entries `(i, i, i)` is dropped and the image opens as `L`.
fn gif_palette(b: &[u8]) -> Option<FilePalette> {
    let table = |at: usize, flags: u8| -> Option<&[u8]> {
        (flags & 0x80 != 0).then(|| b.get(at..at + (3 << ((flags & 7) + 1))))?
    };
    let needed = |t: &[u8]| {
        t.chunks_exact(3)
            .enumerate()
            .any(|(i, c)| !(c[0] as usize == i && c[1] == c[0] && c[2] == c[0]))
    };
    let flags = *b.get(10)?;
    let global = table(13, flags);
    let mut pos = 13 + global.map_or(0, <[u8]>::len);
    let mut transparent = None;
    loop {
        match *b.get(pos)? {
            0x21 => {
                let label = *b.get(pos + 1)?;
                if label == 0xF9 && *b.get(pos + 2)? >= 4 {
                    // Graphic Control Extension; Pillow keeps the last transparent index set.
                    if *b.get(pos + 3)? & 1 != 0 {
                        transparent = Some(*b.get(pos + 6)?);
                    }
                }
                pos += 2;
                loop {
                    let n = *b.get(pos)? as usize;
                    pos += 1 + n;
                    if n == 0 {
                        break;
                    }
                }
            }
            0x2C => {
                let local = table(pos + 10, *b.get(pos + 9)?);
                let frame = match local {
                    Some(t) => needed(t).then_some(t),
                    None => global.filter(|t| needed(t)),
                };
                let (mode, t) = match frame {
                    Some(t) => (Mode::P, t),
                    // Pixel values are the indices; `image` looks them up in the ramp.
                    None => (Mode::L, local.or(global)?),
                };
                return Some(FilePalette {
                    colours: t.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect(),
                    transparent,
                    mode,
                });
            }
            _ => return None,
        }
    }
}

/// Pillow's `BmpImagePlugin` for 1, 4 and 8 bits per pixel: `colors` entries (the header's
/// count, else `2^bits`) of BGRX (BGR for the 12-byte core header); black + white opens as
/// `1`, an 8-bit table of exactly `(i, i, i)` as `L`, anything else as `P`.
fn bmp_palette(b: &[u8]) -> Option<FilePalette> {
    let u16_at = |o: usize| b.get(o..o + 2).map(|v| u16::from_le_bytes([v[0], v[1]]));
    let u32_at = |o: usize| {
        b.get(o..o + 4)
            .map(|v| u32::from_le_bytes([v[0], v[1], v[2], v[3]]))
    };
    let header = u32_at(14)? as usize;
    let (bits, stride, colors) = match header {
        12 => (u16_at(24)?, 3, 0),
        40 | 52 | 56 | 64 | 108 | 124 => (u16_at(28)?, 4, u32_at(46)? as usize),
        _ => return None,
    };
    if !matches!(bits, 1 | 4 | 8) {
        return None;
    }
    let colors = if colors == 0 { 1 << bits } else { colors };
    let table = b.get(14 + header..14 + header + stride * colors.min(256))?;
    let colours: Vec<[u8; 3]> = table
        .chunks_exact(stride)
        .map(|c| [c[2], c[1], c[0]])
        .collect();
    let grey = |i: usize, v: u8| colours.get(i) == Some(&[v, v, v]);
    let mode = if colors == 2 && grey(0, 0) && grey(1, 255) {
        Mode::Bilevel
    } else if bits == 8 && colors <= 256 && (0..colors).all(|i| grey(i, i as u8)) {
        Mode::L
    } else {
        Mode::P
    };
    Some(FilePalette {
        colours,
        transparent: None,
        mode,
    })
}

/// Bits of red, green and blue in a 16-bit BMP in one of the layouts Pillow reads: 5-5-5
/// (no compression, or bitfields `7C00 3E0 1F`) or 5-6-5 (bitfields `F800 7E0 1F`).
fn bmp16_bits(b: &[u8]) -> Option<[u32; 3]> {
    let u32_at = |o: usize| {
        b.get(o..o + 4)
            .map(|v| u32::from_le_bytes([v[0], v[1], v[2], v[3]]))
    };
    let header = u32_at(14)?;
    if !matches!(header, 40 | 52 | 56 | 64 | 108 | 124) || b.get(28..30)? != [16, 0] {
        return None;
    }
    match u32_at(30)? {
        0 => Some([5, 5, 5]),
        3 => {
            // The masks follow a 40-byte header, or are part of a longer one.
            let masks = [u32_at(54)?, u32_at(58)?, u32_at(62)?];
            match masks {
                [0x7C00, 0x3E0, 0x1F] => Some([5, 5, 5]),
                [0xF800, 0x7E0, 0x1F] => Some([5, 6, 5]),
                _ => None,
            }
        }
        _ => None,
    }
}

/// `image` widens n-bit BMP channels with rounding (`(v * 255 + (2^n - 1) / 2) / (2^n - 1)`);
/// Pillow's `BGR;15` / `BGR;16` unpackers truncate (`v * 255 / (2^n - 1)`). Both are
/// one-to-one on the n-bit values, so the rounded value is mapped back and widened like Pillow.
fn rescale_bmp16(rgb: &mut [u8], bits: [u32; 3]) {
    let table = |n: u32| {
        let max = (1u32 << n) - 1;
        let mut t: [u8; 256] = std::array::from_fn(|v| v as u8);
        for v in 0..=max {
            t[((v * 255 + max / 2) / max) as usize] = (v * 255 / max) as u8;
        }
        t
    };
    let tables = bits.map(table);
    for px in rgb.chunks_exact_mut(3) {
        for (c, t) in px.iter_mut().zip(&tables) {
            *c = t[*c as usize];
        }
    }
}

/// The decoded RGB(A) pixels as indices into `p` (the first entry of each colour: duplicates
/// convert to the same RGB), in `p.mode`. `None` when a colour is not in the palette.
fn reindex(img: &image::DynamicImage, w: usize, h: usize, p: FilePalette) -> Option<Raster> {
    let mut lookup = std::collections::HashMap::with_capacity(p.colours.len());
    for (i, c) in p.colours.iter().enumerate().take(256) {
        lookup.entry(*c).or_insert(i as u8);
    }
    let index = |rgb: [u8; 3], alpha: u8| match (alpha, p.transparent) {
        (0, t) => Some(t.unwrap_or(0)),
        _ => lookup.get(&rgb).copied(),
    };
    let data: Option<Vec<u8>> = match img {
        image::DynamicImage::ImageRgb8(b) => b
            .as_raw()
            .chunks_exact(3)
            .map(|c| index([c[0], c[1], c[2]], 255))
            .collect(),
        image::DynamicImage::ImageRgba8(b) => b
            .as_raw()
            .chunks_exact(4)
            .map(|c| index([c[0], c[1], c[2]], c[3]))
            .collect(),
        _ => None,
    };
    let mut data = data?;
    if p.mode == Mode::Bilevel {
        data.iter_mut()
            .for_each(|v| *v = if *v == 0 { 0 } else { 255 });
    }
    let mut raster = Raster::new_u8(p.mode, w, h, data);
    if p.mode == Mode::P {
        raster.palette = p.colours;
    }
    Some(raster)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exif_orientation_both_byte_orders() {
        let mut le = b"II*\0\x08\0\0\0\x01\0".to_vec();
        le.extend_from_slice(&[0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0]);
        assert_eq!(exif_orientation(&le), 6);
        let mut be = b"MM\0*\0\0\0\x08\0\x01".to_vec();
        be.extend_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 8, 0, 0]);
        assert_eq!(exif_orientation(&be), 8);
        assert_eq!(exif_orientation(&le[..12]), 1, "truncated block");
        assert_eq!(exif_orientation(b"garbage"), 1);
    }

    #[test]
    fn bmp16_widening_truncates_like_pillow() {
        // image's 5-bit table rounds (1 -> 8, 3 -> 25, 30 -> 247); Pillow truncates (8, 24, 246).
        let mut px = [8, 25, 247, 0, 255, 45];
        rescale_bmp16(&mut px, [5, 5, 5]);
        assert_eq!(px, [8, 24, 246, 0, 255, 45]);
        // 6-bit green: image's 11 -> 45 (round), Pillow 11 * 255 / 63 = 44.
        let mut px = [0, 45, 0];
        rescale_bmp16(&mut px, [5, 6, 5]);
        assert_eq!(px, [0, 44, 0]);
    }

    #[test]
    fn palette_parsers_reject_truncated_headers() {
        let mut gif = b"GIF89a\x02\0\x01\0\x80\0\0".to_vec();
        gif.extend_from_slice(&[0, 0, 0, 255, 0, 0]); // global table of 2 entries
        assert!(gif_palette(&gif).is_none(), "no image descriptor");
        gif.extend_from_slice(&[0x2C, 0, 0, 0, 0, 2, 0, 1, 0, 0]);
        let p = gif_palette(&gif).unwrap();
        assert_eq!(p.colours, vec![[0, 0, 0], [255, 0, 0]]);
        assert!(p.mode == Mode::P && p.transparent.is_none());
        for n in 0..gif.len() {
            assert!(gif_palette(&gif[..n]).is_none());
        }
        for n in 0..60 {
            assert!(bmp_palette(&[b'B'; 60][..n]).is_none());
            assert!(bmp16_bits(&[b'B'; 60][..n]).is_none());
        }
    }

    #[test]
    fn unpacks_msb_first() {
        let v: Vec<u8> = unpack_bits(&[0b1011_0001], 2, 4).collect();
        assert_eq!(v, vec![2, 3, 0, 1]);
        let v: Vec<u8> = unpack_bits(&[0b1010_0000], 1, 3).collect();
        assert_eq!(v, vec![1, 0, 1]);
    }
}
