//! Decoding bytes into a [`Raster`] in the mode Pillow would open the file in.
//!
//! - JPEG: libjpeg-turbo's decoder (the copy bundled in mozjpeg, built from source), with the
//!   settings Pillow uses (islow IDCT, fancy upsampling): 1 component → `L`, 3 → `RGB`,
//!   4 → `CMYK` stored inverted ("Adobe" convention, Pillow's `CMYK;I` raw mode).
//! - PNG: the `png` crate without transformations, unpacked like Pillow's PNG plugin
//!   (`1`, `L` from 2/4-bit scaled ×85/×17, `I;16`, `RGB`/`RGBA` from 16-bit keep the high byte,
//!   16-bit grey+alpha opens as `RGBA`, palettes as `P`).
//! - GIF, WebP, BMP, TIFF: the `image` crate (not proven pixel-identical to Pillow).
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

fn check_pixels(path: &Path, width: u64, height: u64, limit: Option<u64>) -> Result<(), Error> {
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
            format: "image",
            detail: format!("{width}x{height}: sides of 2^24 pixels or more"),
        });
    }
    if width == 0 || height == 0 {
        return Err(Error::Unsupported {
            path: path.to_owned(),
            format: "image",
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
        if check_pixels(path, w, h, max_pixels).is_err() {
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
        Ok(Ok(JpegOutcome::TooLarge(w, h))) => Err(check_pixels(path, w, h, max_pixels)
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
    check_pixels(path, w, h, max_pixels)?;
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

fn decode_other(bytes: &[u8], path: &Path, max_pixels: Option<u64>) -> Result<Decoded, Error> {
    let err = |e: image::ImageError| Error::Decode {
        path: path.to_owned(),
        format: "image",
        message: e.to_string(),
    };
    let reader = || {
        image::ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|cause| Error::Io {
                path: path.to_owned(),
                cause,
            })
    };
    let (w, h) = reader()?.into_dimensions().map_err(err)?;
    check_pixels(path, w as u64, h as u64, max_pixels)?;
    let mut r = reader()?;
    r.no_limits();
    let img = r.decode().map_err(err)?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let raster = match img {
        image::DynamicImage::ImageLuma8(b) => Raster::new_u8(Mode::L, w, h, b.into_raw()),
        image::DynamicImage::ImageLumaA8(b) => Raster::new_u8(Mode::La, w, h, b.into_raw()),
        image::DynamicImage::ImageRgba8(b) => Raster::new_u8(Mode::Rgba, w, h, b.into_raw()),
        other => Raster::new_u8(Mode::Rgb, w, h, other.into_rgb8().into_raw()),
    };
    Ok(Decoded {
        raster,
        orientation: 1,
    })
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
    fn unpacks_msb_first() {
        let v: Vec<u8> = unpack_bits(&[0b1011_0001], 2, 4).collect();
        assert_eq!(v, vec![2, 3, 0, 1]);
        let v: Vec<u8> = unpack_bits(&[0b1010_0000], 1, 3).collect();
        assert_eq!(v, vec![1, 0, 1]);
    }
}
