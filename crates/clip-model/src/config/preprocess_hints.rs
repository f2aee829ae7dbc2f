//! The image preprocessing a model was trained with, as its files describe it.
//!
//! [`PreprocessHints`] says how to turn a photo into the pixel tensor a model takes: the input
//! size, how the image is brought to that size (shorter side + centre crop, or squashed to a
//! square), the resampling filter and the normalisation mean and standard deviation. This crate
//! does not preprocess images itself; a caller (the facade) builds its image pipeline from these
//! values, so that each model gets its own preprocessing automatically.
//!
//! Sources, in order of precedence:
//! - `open_clip_config.json`'s `preprocess_cfg` (`mean`, `std`, `interpolation`, `resize_mode`)
//!   and `model_cfg.vision_cfg.image_size`, read as open_clip reads them (missing keys take
//!   open_clip's defaults: OpenAI's mean / std, bicubic, `shortest` = shorter side + centre crop);
//! - a transformers `preprocessor_config.json` beside the weights (`image_mean`, `image_std`,
//!   `resample`, `do_center_crop`, `size`);
//! - otherwise the family's default: OpenAI's `clip.load` transform for CLIP, a bicubic squash
//!   with mean = std = 0.5 for SigLIP.

use std::path::Path;

use serde_json::Value;

use super::json::read_json;
use crate::error::{Error, Result};

/// OpenAI CLIP's normalisation mean (RGB).
pub const OPENAI_MEAN: [f32; 3] = [
    0.48145466_f64 as f32,
    0.4578275_f64 as f32,
    0.40821073_f64 as f32,
];
/// OpenAI CLIP's normalisation standard deviation (RGB).
pub const OPENAI_STD: [f32; 3] = [
    0.26862954_f64 as f32,
    0.26130258_f64 as f32,
    0.27577711_f64 as f32,
];

/// The resampling filter of the resize (Pillow's filters, as torchvision and transformers use them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResampleFilter {
    /// Bicubic (Pillow `BICUBIC`, torchvision `InterpolationMode.BICUBIC`).
    Bicubic,
    /// Bilinear (Pillow `BILINEAR`).
    Bilinear,
    /// Nearest neighbour.
    Nearest,
}

/// How an image is brought to the model's square input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResizeKind {
    /// The shorter side becomes `image_size`, then a centre crop (OpenAI, LAION; open_clip's
    /// `shortest`).
    ShorterSideCrop,
    /// Both sides resized to `image_size`, aspect ratio not kept (SigLIP, DFN5B and MetaCLIP 2
    /// at 378 px; open_clip's `squash`).
    Squash,
    /// The longer side becomes `image_size`, then padding to a square with `fill` (open_clip's
    /// `longest`).
    LongerSidePad,
}

/// The preprocessing a model expects.
#[derive(Debug, Clone, PartialEq)]
pub struct PreprocessHints {
    /// Input side in pixels.
    pub image_size: usize,
    /// Per-channel mean subtracted after scaling to `[0, 1]`.
    pub mean: [f32; 3],
    /// Per-channel standard deviation divided by after subtracting the mean.
    pub std: [f32; 3],
    /// Resampling filter.
    pub interpolation: ResampleFilter,
    /// How the image is brought to `image_size`.
    pub resize: ResizeKind,
    /// Where the values came from: a file path, or `default for <family>`.
    pub source: String,
}

impl PreprocessHints {
    /// OpenAI's `clip.load` transform at `image_size`: bicubic shorter side, centre crop, CLIP
    /// mean / std.
    pub fn openai(image_size: usize) -> Self {
        Self {
            image_size,
            mean: OPENAI_MEAN,
            std: OPENAI_STD,
            interpolation: ResampleFilter::Bicubic,
            resize: ResizeKind::ShorterSideCrop,
            source: "default for CLIP (OpenAI's clip.load transform)".into(),
        }
    }

    /// SigLIP's transform at `image_size`: bicubic squash to a square, mean = std = 0.5
    /// (transformers' `SiglipImageProcessor`, open_clip's SigLIP configs).
    pub fn siglip(image_size: usize) -> Self {
        Self {
            image_size,
            mean: [0.5; 3],
            std: [0.5; 3],
            interpolation: ResampleFilter::Bicubic,
            resize: ResizeKind::Squash,
            source: "default for SigLIP (bicubic squash, mean = std = 0.5)".into(),
        }
    }

    /// Chinese-CLIP's transform at `image_size` (cn_clip's `image_transform`): bicubic squash to
    /// a square (`Resize((s, s))`, no crop), OpenAI's mean / std.
    pub fn chinese_clip(image_size: usize) -> Self {
        Self {
            image_size,
            mean: OPENAI_MEAN,
            std: OPENAI_STD,
            interpolation: ResampleFilter::Bicubic,
            resize: ResizeKind::Squash,
            source: "default for Chinese-CLIP (bicubic squash, OpenAI's mean / std)".into(),
        }
    }

    /// Reads `open_clip_config.json` (with or without its `model_cfg` wrapper) on top of
    /// `default`: the values present replace the default's.
    pub fn from_open_clip_config(path: &Path, default: Self) -> Result<Self> {
        let v = read_json(path)?;
        Self::open_clip_json(&v, default, &path.display().to_string())
            .map_err(|reason| config_error(path, reason))
    }

    /// [`PreprocessHints::from_open_clip_config`] on parsed JSON; `source` names it (and is the
    /// `path` of the [`Error::Config`] for a value it cannot use).
    pub fn from_open_clip_json(v: &Value, default: Self, source: &str) -> Result<Self> {
        Self::open_clip_json(v, default, source)
            .map_err(|reason| config_error(Path::new(source), reason))
    }

    fn open_clip_json(v: &Value, default: Self, source: &str) -> std::result::Result<Self, String> {
        let mut h = default;
        let mut touched = false;
        let m = v.get("model_cfg").unwrap_or(v);
        if let Some(size) = m.get("vision_cfg").and_then(|c| c.get("image_size")) {
            h.image_size = image_size(size)?;
            touched = true;
        }
        if let Some(p) = v.get("preprocess_cfg") {
            if let Some(mean) = p.get("mean") {
                h.mean = triple(mean, "preprocess_cfg.mean")?;
            }
            if let Some(std) = p.get("std") {
                h.std = triple(std, "preprocess_cfg.std")?;
            }
            if let Some(i) = p.get("interpolation").and_then(Value::as_str) {
                h.interpolation = match i {
                    "bicubic" => ResampleFilter::Bicubic,
                    "bilinear" => ResampleFilter::Bilinear,
                    "nearest" => ResampleFilter::Nearest,
                    other => {
                        return Err(format!("preprocess_cfg.interpolation `{other}` is unknown"));
                    }
                };
            }
            if let Some(r) = p.get("resize_mode").and_then(Value::as_str) {
                h.resize = match r {
                    "shortest" => ResizeKind::ShorterSideCrop,
                    "squash" => ResizeKind::Squash,
                    "longest" => ResizeKind::LongerSidePad,
                    other => {
                        return Err(format!("preprocess_cfg.resize_mode `{other}` is unknown"));
                    }
                };
            }
            touched = true;
        }
        if touched {
            h.source = source.to_string();
        }
        Ok(h)
    }

    /// Reads a transformers `preprocessor_config.json` on top of `default`.
    pub fn from_preprocessor_config(path: &Path, default: Self) -> Result<Self> {
        let v = read_json(path)?;
        Self::preprocessor_json(&v, default, &path.display().to_string())
            .map_err(|reason| config_error(path, reason))
    }

    /// [`PreprocessHints::from_preprocessor_config`] on parsed JSON; `source` names it (and is
    /// the `path` of the [`Error::Config`] for a value it cannot use).
    pub fn from_preprocessor_json(v: &Value, default: Self, source: &str) -> Result<Self> {
        Self::preprocessor_json(v, default, source)
            .map_err(|reason| config_error(Path::new(source), reason))
    }

    fn preprocessor_json(
        v: &Value,
        default: Self,
        source: &str,
    ) -> std::result::Result<Self, String> {
        let mut h = default;
        if let Some(mean) = v.get("image_mean") {
            h.mean = triple(mean, "image_mean")?;
        }
        if let Some(std) = v.get("image_std") {
            h.std = triple(std, "image_std")?;
        }
        if let Some(r) = v.get("resample") {
            // PIL's filter numbers.
            h.interpolation = match r.as_u64() {
                Some(0) => ResampleFilter::Nearest,
                Some(2) => ResampleFilter::Bilinear,
                Some(3) => ResampleFilter::Bicubic,
                _ => return Err(format!("resample {r} is not 0, 2 or 3")),
            };
        }
        let crop = v.get("do_center_crop").and_then(Value::as_bool);
        match v.get("size") {
            Some(Value::Object(size)) => {
                if let Some(s) = size.get("shortest_edge") {
                    h.image_size = image_size(s)?;
                    h.resize = ResizeKind::ShorterSideCrop;
                } else if let (Some(height), Some(width)) = (size.get("height"), size.get("width"))
                {
                    let (height, width) = (image_size(height)?, image_size(width)?);
                    if height != width {
                        return Err(format!("size {height}x{width} is not square"));
                    }
                    h.image_size = height;
                    h.resize = ResizeKind::Squash;
                }
            }
            Some(s @ Value::Number(_)) => h.image_size = image_size(s)?,
            _ => {}
        }
        if let Some(c) = v.get("crop_size") {
            let c = match c {
                Value::Object(o) => o.get("height").unwrap_or(c),
                _ => c,
            };
            if crop != Some(false) {
                h.image_size = image_size(c)?;
            }
        }
        if crop == Some(false) && h.resize == ResizeKind::ShorterSideCrop {
            return Err(
                "do_center_crop is false with a shortest_edge size: not a square input".into(),
            );
        }
        h.source = source.to_string();
        Ok(h)
    }
}

fn config_error(path: &Path, reason: String) -> Error {
    Error::Config {
        path: path.to_path_buf(),
        reason,
    }
}

fn image_size(v: &Value) -> std::result::Result<usize, String> {
    match v {
        Value::Array(a) if a.len() == 2 && a[0] == a[1] => image_size(&a[0]),
        _ => v
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("image size {v} is not a positive integer (or a square pair)")),
    }
}

fn triple(v: &Value, key: &str) -> std::result::Result<[f32; 3], String> {
    let a = v
        .as_array()
        .filter(|a| a.len() == 3)
        .ok_or_else(|| format!("`{key}` is {v}, expected 3 numbers"))?;
    let mut out = [0f32; 3];
    for (o, x) in out.iter_mut().zip(a) {
        // torchvision / numpy: a Python float (f64) rounded to f32.
        *o = x
            .as_f64()
            .ok_or_else(|| format!("`{key}` is {v}, expected 3 numbers"))? as f32;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_clip_preprocess_cfg_overrides_defaults() {
        // The shape of apple/DFN5B-CLIP-ViT-H-14-378's open_clip_config.json.
        let v = serde_json::json!({
            "model_cfg": {"vision_cfg": {"image_size": 378}},
            "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073],
                "std": [0.26862954, 0.26130258, 0.27577711],
                "interpolation": "bicubic", "resize_mode": "squash"}
        });
        let h =
            PreprocessHints::from_open_clip_json(&v, PreprocessHints::openai(224), "f").unwrap();
        assert_eq!((h.image_size, h.resize), (378, ResizeKind::Squash));
        assert_eq!((h.mean, h.std), (OPENAI_MEAN, OPENAI_STD));
        let bad = serde_json::json!({"preprocess_cfg": {"resize_mode": "stretch"}});
        assert!(
            PreprocessHints::from_open_clip_json(&bad, PreprocessHints::openai(224), "f").is_err()
        );
    }

    #[test]
    fn transformers_preprocessor_configs() {
        let siglip = serde_json::json!({"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
            "resample": 3, "size": {"height": 384, "width": 384}, "do_resize": true});
        let h = PreprocessHints::from_preprocessor_json(&siglip, PreprocessHints::openai(224), "s")
            .unwrap();
        assert_eq!(h.resize, ResizeKind::Squash);
        assert_eq!(
            (h.image_size, h.mean, h.interpolation),
            (384, [0.5; 3], ResampleFilter::Bicubic)
        );
        let clip = serde_json::json!({"crop_size": {"height": 224, "width": 224}, "do_center_crop": true,
            "size": {"shortest_edge": 224}, "resample": 3,
            "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711]});
        let h = PreprocessHints::from_preprocessor_json(&clip, PreprocessHints::siglip(384), "c")
            .unwrap();
        assert_eq!(
            (h.image_size, h.resize, h.mean, h.std),
            (224, ResizeKind::ShorterSideCrop, OPENAI_MEAN, OPENAI_STD)
        );
    }
}
