//! The gallery demo's modules (its server lives here so that tests can drive it) and the label
//! parsing the examples share. Models, preprocessing and tokenizers come from the `clip` facade.
//!
//! - [`Embedder`] is the gallery's seam to a model: L2-normalised image and text embeddings.
//!   The facade's [`clip::Clip`] implements it (module [`model`]); tests plug in a stand-in.
//! - [`gallery`] is the library (feature store + media folder), the model worker and the web server.
//! - [`labels`] parses label lists from the command line and files.
//! - [`args`] bounds the numbers the examples take on the command line.
#![deny(missing_docs)]

pub mod args;
pub mod gallery;
pub mod labels;
pub mod model;

/// Why an embedding could not be computed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum EmbedError {
    /// The bytes are not an image we can decode (or exceed the decoder limits).
    #[error("not a usable image: {0}")]
    BadImage(String),
    /// The text cannot be encoded (empty, or longer than the model's context).
    #[error("unusable text: {0}")]
    BadText(String),
    /// The model failed.
    #[error("model error: {0}")]
    Model(String),
}

/// What the examples need from a CLIP model: L2-normalised embeddings in one shared space.
pub trait Embedder: Send + Sync + 'static {
    /// A short name of the model in use (shown by the demo, stored in the library header).
    fn model_id(&self) -> &str;
    /// The embedding dimension.
    fn dim(&self) -> usize;
    /// The learned temperature `exp(logit_scale)` applied to cosine similarities.
    fn logit_scale(&self) -> f32;
    /// Embeds encoded image files (JPEG, PNG, ...), one unit vector per input, in input order.
    fn embed_images(&self, images: &[&[u8]]) -> Result<Vec<Vec<f32>>, EmbedError>;
    /// Embeds texts, one unit vector per input, in input order.
    fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError>;

    /// Embeds encoded image files, one result per input in input order, so that a bad file
    /// fails alone. The default embeds them one by one; implementations can batch the good ones.
    fn embed_each(&self, images: &[&[u8]]) -> Vec<Result<Vec<f32>, EmbedError>> {
        images.iter().map(|i| self.embed_image(i)).collect()
    }

    /// [`Embedder::embed_each`] for files read from disk: errors name each file by `path`
    /// rather than by its place in the batch. The default ignores the names.
    fn embed_each_named(
        &self,
        images: &[(&std::path::Path, &[u8])],
    ) -> Vec<Result<Vec<f32>, EmbedError>> {
        let bytes: Vec<&[u8]> = images.iter().map(|(_, b)| *b).collect();
        self.embed_each(&bytes)
    }

    /// Embeds one encoded image file.
    fn embed_image(&self, image: &[u8]) -> Result<Vec<f32>, EmbedError> {
        first(self.embed_images(&[image])?)
    }

    /// Embeds one text.
    fn embed_text(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        first(self.embed_texts(&[text])?)
    }

    /// The zero-shot prompt for a label, in the model's language (default `a photo of a {}.`).
    fn prompt(&self, label: &str) -> String {
        labels::prompt(label)
    }

    /// How cosines become probabilities (default: softmax over labels of `logit_scale · cos`).
    fn score_function(&self) -> clip_eval::ScoreFunction {
        clip_eval::ScoreFunction::Softmax {
            scale: self.logit_scale(),
        }
    }
}

fn first(v: Vec<Vec<f32>>) -> Result<Vec<f32>, EmbedError> {
    v.into_iter()
        .next()
        .ok_or_else(|| EmbedError::Model("the model returned no embedding".into()))
}

/// The demo photos shipped in `examples/photos`, sorted by name.
pub fn demo_photos() -> anyhow::Result<Vec<std::path::PathBuf>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("photos");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir)
        .map_err(|e| anyhow::anyhow!("cannot list the demo photos in {}: {e}", dir.display()))?
    {
        let p = e?.path();
        let ext = p.extension().and_then(|x| x.to_str()).unwrap_or("");
        if ["png", "jpg", "jpeg"].contains(&ext.to_ascii_lowercase().as_str()) {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// Dot product of two equally long vectors.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Zero-shot classification of one image embedding among labels whose (unit) embeddings are
/// `class_vecs`, through `clip-eval`'s [`clip_eval::ZeroShot`]: every label with its probability
/// `softmax(scale · cos)`, most probable first.
pub fn zero_shot(
    labels: &[String],
    class_vecs: &[Vec<f32>],
    image: &[f32],
    score: clip_eval::ScoreFunction,
) -> Result<Vec<(String, f32)>, clip_eval::Error> {
    let dim = image.len();
    let flat: Vec<f32> = class_vecs.iter().flatten().copied().collect();
    let classifier = clip_eval::Classifier::new(dim, labels.to_vec(), flat)?;
    clip_eval::ZeroShot::from_classifier(classifier)
        .with_score_function(score)
        .classify(image)
}

/// The image format recognised from the first bytes of a file (magic numbers), if any.
pub fn sniff_image(bytes: &[u8]) -> Option<ImageKind> {
    let kind = if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        ImageKind::Jpeg
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        ImageKind::Png
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        ImageKind::Gif
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        ImageKind::Webp
    } else if bytes.starts_with(b"BM") {
        ImageKind::Bmp
    } else if bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*") {
        ImageKind::Tiff
    } else {
        return None;
    };
    Some(kind)
}

/// Image container formats recognised by [`sniff_image`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    /// JPEG / JFIF / EXIF.
    Jpeg,
    /// PNG.
    Png,
    /// GIF.
    Gif,
    /// WebP.
    Webp,
    /// Windows bitmap.
    Bmp,
    /// TIFF.
    Tiff,
}

impl ImageKind {
    /// The usual file extension.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Jpeg => "jpg",
            Self::Png => "png",
            Self::Gif => "gif",
            Self::Webp => "webp",
            Self::Bmp => "bmp",
            Self::Tiff => "tiff",
        }
    }

    /// The MIME type.
    pub fn mime(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::Gif => "image/gif",
            Self::Webp => "image/webp",
            Self::Bmp => "image/bmp",
            Self::Tiff => "image/tiff",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_shot_ranks_by_probability() {
        let labels: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let img = vec![1.0, 0.0];
        let classes = vec![vec![0.6, 0.8], vec![1.0, 0.0], vec![0.0, 1.0]];
        let softmax = clip_eval::ScoreFunction::Softmax { scale: 100.0 };
        let r = zero_shot(&labels, &classes, &img, softmax).unwrap();
        let names: Vec<&str> = r.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(names, ["b", "a", "c"]);
        // Independent check: e^{100*0.6} : e^{100} : e^0.
        let denom = (-40f64).exp() + 1.0 + (-100f64).exp();
        assert!((r[0].1 as f64 - 1.0 / denom).abs() < 1e-6);
        assert!((r.iter().map(|x| x.1).sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(zero_shot(&labels, &classes[..2], &img, softmax).is_err());
    }

    #[test]
    fn sniffs_common_formats() {
        assert_eq!(sniff_image(b"\xFF\xD8\xFF\xE0rest"), Some(ImageKind::Jpeg));
        assert_eq!(sniff_image(b"\x89PNG\r\n\x1a\n...."), Some(ImageKind::Png));
        assert_eq!(sniff_image(b"RIFF\0\0\0\0WEBPVP8 "), Some(ImageKind::Webp));
        assert_eq!(sniff_image(b"<html>"), None);
        assert_eq!(sniff_image(b""), None);
    }
}
