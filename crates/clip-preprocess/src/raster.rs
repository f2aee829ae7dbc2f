//! Decoded images in Pillow's modes, EXIF transposition, and the resize → crop → RGB steps.

use crate::resample::{self, Interpolation, Window};

/// Pixel layout of a decoded image, named after the Pillow mode it corresponds to.
///
/// Images are resized in their own mode and converted to RGB afterwards, as Pillow does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mode {
    /// Pillow `"1"`: bilevel, one byte per pixel holding 0 or 255 (resized with nearest).
    Bilevel,
    /// Pillow `"L"`: 8-bit grey.
    L,
    /// Pillow `"LA"`: 8-bit grey + alpha (resized premultiplied).
    La,
    /// Pillow `"RGB"`.
    Rgb,
    /// Pillow `"RGBA"` (resized premultiplied).
    Rgba,
    /// Pillow `"P"`: 8-bit palette indices (resized with nearest).
    P,
    /// Pillow `"CMYK"` (as Pillow stores JPEG CMYK: Adobe-inverted on load).
    Cmyk,
    /// Pillow `"I;16"`: 16-bit grey.
    I16,
}

impl Mode {
    /// Samples per pixel.
    pub fn channels(self) -> usize {
        match self {
            Mode::Bilevel | Mode::L | Mode::P | Mode::I16 => 1,
            Mode::La => 2,
            Mode::Rgb => 3,
            Mode::Rgba | Mode::Cmyk => 4,
        }
    }
}

/// A decoded image in its own mode.
#[derive(Debug, Clone)]
pub(crate) struct Raster {
    pub mode: Mode,
    pub width: usize,
    pub height: usize,
    /// Interleaved 8-bit samples (all modes but `I16`).
    pub data: Vec<u8>,
    /// 16-bit samples (`I16` only).
    pub data16: Vec<u16>,
    /// RGB palette (`P` only); indices past its end read as black.
    pub palette: Vec<[u8; 3]>,
}

impl Raster {
    pub fn new_u8(mode: Mode, width: usize, height: usize, data: Vec<u8>) -> Self {
        debug_assert_eq!(data.len(), width * height * mode.channels());
        Self {
            mode,
            width,
            height,
            data,
            data16: Vec::new(),
            palette: Vec::new(),
        }
    }

    pub fn new_u16(width: usize, height: usize, data16: Vec<u16>) -> Self {
        debug_assert_eq!(data16.len(), width * height);
        Self {
            mode: Mode::I16,
            width,
            height,
            data: Vec::new(),
            data16,
            palette: Vec::new(),
        }
    }

    /// Applies an EXIF orientation (1–8) the way `ImageOps.exif_transpose` does.
    pub fn apply_orientation(self, orientation: u16) -> Self {
        let (w, h) = (self.width, self.height);
        // Maps an output (x, y) to the input (x, y), plus the output size.
        let (ow, oh): (usize, usize) = match orientation {
            2..=4 => (w, h),
            5..=8 => (h, w),
            _ => return self,
        };
        let map = |x: usize, y: usize| -> (usize, usize) {
            match orientation {
                2 => (w - 1 - x, y),         // FLIP_LEFT_RIGHT
                3 => (w - 1 - x, h - 1 - y), // ROTATE_180
                4 => (x, h - 1 - y),         // FLIP_TOP_BOTTOM
                5 => (y, x),                 // TRANSPOSE
                6 => (y, h - 1 - x),         // ROTATE_270 (clockwise)
                7 => (w - 1 - y, h - 1 - x), // TRANSVERSE
                _ => (w - 1 - y, x),         // 8: ROTATE_90 (counter-clockwise)
            }
        };
        let c = self.mode.channels();
        let mut out = Raster {
            mode: self.mode,
            width: ow,
            height: oh,
            data: Vec::new(),
            data16: Vec::new(),
            palette: self.palette,
        };
        if self.mode == Mode::I16 {
            out.data16 = Vec::with_capacity(ow * oh);
            for y in 0..oh {
                for x in 0..ow {
                    let (ix, iy) = map(x, y);
                    out.data16.push(self.data16[iy * w + ix]);
                }
            }
        } else {
            out.data = Vec::with_capacity(ow * oh * c);
            for y in 0..oh {
                for x in 0..ow {
                    let (ix, iy) = map(x, y);
                    let i = (iy * w + ix) * c;
                    out.data.extend_from_slice(&self.data[i..i + c]);
                }
            }
        }
        out
    }

    /// Resizes to `out_w`×`out_h` in the image's own mode (Pillow `Image.resize`) and returns the
    /// RGB pixels of `win` (row-major, 3 bytes per pixel; `win` lies inside the resized image),
    /// converted like `Image.convert("RGB")`.
    pub fn resize_crop_rgb(
        &self,
        out_w: usize,
        out_h: usize,
        win: Window,
        filter: Interpolation,
    ) -> Vec<u8> {
        let same = out_w == self.width && out_h == self.height;
        self.resize_window(out_w, out_h, win, filter, same).to_rgb()
    }

    /// The `win` part of the resized image, still in the image's own mode.
    fn resize_window(
        &self,
        out_w: usize,
        out_h: usize,
        win: Window,
        filter: Interpolation,
        same: bool,
    ) -> Raster {
        let (w, h) = (self.width, self.height);
        let (ww, wh) = (win.x1 - win.x0, win.y1 - win.y0);
        let c = self.mode.channels();
        let mut out = Raster {
            mode: self.mode,
            width: ww,
            height: wh,
            data: Vec::new(),
            data16: Vec::new(),
            palette: self.palette.clone(),
        };
        if same {
            // torchvision returns the image untouched when the size already matches.
            if self.mode == Mode::I16 {
                for y in win.y0..win.y1 {
                    out.data16
                        .extend_from_slice(&self.data16[y * w + win.x0..y * w + win.x1]);
                }
            } else {
                for y in win.y0..win.y1 {
                    out.data
                        .extend_from_slice(&self.data[(y * w + win.x0) * c..(y * w + win.x1) * c]);
                }
            }
            return out;
        }
        match self.mode {
            Mode::P | Mode::Bilevel => {
                // Pillow forces NEAREST for these modes; unmapped positions stay 0.
                let xs = resample::nearest_indices(w, out_w, win.x0..win.x1);
                let ys = resample::nearest_indices(h, out_h, win.y0..win.y1);
                out.data = vec![0u8; ww * wh];
                for (oy, &y) in ys.iter().enumerate() {
                    let Some(iy) = y else { continue };
                    for (ox, &x) in xs.iter().enumerate() {
                        if let Some(ix) = x {
                            out.data[oy * ww + ox] = self.data[iy * w + ix];
                        }
                    }
                }
            }
            Mode::L => {
                out.data = resample::resample_u8::<1>(&self.data, w, h, out_w, out_h, win, filter)
            }
            Mode::Rgb => {
                out.data = resample::resample_u8::<3>(&self.data, w, h, out_w, out_h, win, filter)
            }
            Mode::Cmyk => {
                out.data = resample::resample_u8::<4>(&self.data, w, h, out_w, out_h, win, filter)
            }
            Mode::La => {
                let pre = premultiply::<2>(&self.data);
                let r = resample::resample_u8::<2>(&pre, w, h, out_w, out_h, win, filter);
                out.data = unpremultiply::<2>(r);
            }
            Mode::Rgba => {
                let pre = premultiply::<4>(&self.data);
                let r = resample::resample_u8::<4>(&pre, w, h, out_w, out_h, win, filter);
                out.data = unpremultiply::<4>(r);
            }
            Mode::I16 => {
                out.data16 = resample::resample_u16(&self.data16, w, h, out_w, out_h, win, filter)
            }
        }
        out
    }

    /// `Image.convert("RGB")`: 3 bytes per pixel.
    pub fn to_rgb(&self) -> Vec<u8> {
        let n = self.width * self.height;
        let mut out = Vec::with_capacity(n * 3);
        match self.mode {
            Mode::Rgb => out.extend_from_slice(&self.data),
            Mode::L | Mode::Bilevel => {
                // l2rgb; bilevel pixels are already 0 or 255 (bit2rgb maps non-zero to 255).
                for &v in &self.data {
                    out.extend_from_slice(&[v, v, v]);
                }
            }
            Mode::La => {
                for p in self.data.chunks_exact(2) {
                    out.extend_from_slice(&[p[0], p[0], p[0]]);
                }
            }
            Mode::Rgba => {
                for p in self.data.chunks_exact(4) {
                    out.extend_from_slice(&p[..3]);
                }
            }
            Mode::P => {
                for &i in &self.data {
                    let rgb = self.palette.get(i as usize).copied().unwrap_or([0, 0, 0]);
                    out.extend_from_slice(&rgb);
                }
            }
            Mode::Cmyk => {
                // cmyk2rgb: nk - nk*c/255 with Pillow's MULDIV255 rounding.
                for p in self.data.chunks_exact(4) {
                    let nk = 255 - p[3] as i32;
                    for &v in &p[..3] {
                        out.push((nk - muldiv255(v as i32, nk)).clamp(0, 255) as u8);
                    }
                }
            }
            Mode::I16 => {
                // I16_RGB: values above 255 saturate to 255 (Pillow does not rescale).
                for &v in &self.data16 {
                    let b = if v > 255 { 255 } else { v as u8 };
                    out.extend_from_slice(&[b, b, b]);
                }
            }
        }
        out
    }
}

/// Pillow's `MULDIV255(a, b)`: `a * b / 255` rounded, in integer arithmetic.
#[inline(always)]
fn muldiv255(a: i32, b: i32) -> i32 {
    let t = a * b + 128;
    ((t >> 8) + t) >> 8
}

/// `RGBA -> RGBa` / `LA -> La` (colour channels multiplied by alpha, MULDIV255).
fn premultiply<const C: usize>(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    for p in data.chunks_exact(C) {
        let a = p[C - 1] as i32;
        for &v in &p[..C - 1] {
            out.push(muldiv255(v as i32, a) as u8);
        }
        out.push(p[C - 1]);
    }
    out
}

/// `RGBa -> RGBA` / `La -> LA`: `CLIP8(255 * v / alpha)` unless alpha is 0 or 255.
fn unpremultiply<const C: usize>(mut data: Vec<u8>) -> Vec<u8> {
    for p in data.chunks_exact_mut(C) {
        let a = p[C - 1] as u32;
        if a != 0 && a != 255 {
            for v in &mut p[..C - 1] {
                *v = ((255 * *v as u32) / a).min(255) as u8;
            }
        }
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn muldiv255_matches_exact_rounding() {
        for a in 0..=255 {
            for b in 0..=255 {
                let exact = ((a * b) as f64 / 255.0).round() as i32;
                assert_eq!(muldiv255(a, b), exact, "{a} * {b}");
            }
        }
    }

    #[test]
    fn orientations_round_trip() {
        let r = Raster::new_u8(Mode::L, 3, 2, vec![1, 2, 3, 4, 5, 6]);
        // 6 = rotate clockwise: the bottom-left pixel goes to the top-left.
        let o6 = r.clone().apply_orientation(6);
        assert_eq!((o6.width, o6.height), (2, 3));
        assert_eq!(o6.data, vec![4, 1, 5, 2, 6, 3]);
        let o8 = r.clone().apply_orientation(8);
        assert_eq!(o8.data, vec![3, 6, 2, 5, 1, 4]);
        assert_eq!(r.clone().apply_orientation(3).data, vec![6, 5, 4, 3, 2, 1]);
    }
}
