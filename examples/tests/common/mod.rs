//! Shared set-up of the gallery tests: an embedder, a library of the demo photos, a server.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clip_examples::gallery::library::Library;
use clip_examples::gallery::server::{AppState, Settings};
use clip_examples::gallery::worker::Worker;
use clip_examples::{EmbedError, Embedder, sniff_image};

/// A deterministic stand-in model: `feature_store::HashEmbedder`'s unit vectors for images
/// (texts hashed the same way, in their own domain). It rejects bytes that are not a recognised
/// image format; `delay` slows every call down.
pub struct HashModel {
    pub dim: usize,
    pub delay: Duration,
    pub hasher: feature_store::HashEmbedder,
}

impl HashModel {
    pub fn new(dim: usize) -> Self {
        Self {
            dim,
            delay: Duration::ZERO,
            hasher: feature_store::HashEmbedder::new("test/hash-model", dim),
        }
    }

    fn vector(&self, domain: &[u8], bytes: &[u8]) -> Vec<f32> {
        self.hasher.embed(&[domain, bytes].concat())
    }
}

impl Embedder for HashModel {
    fn model_id(&self) -> &str {
        "test/hash-model"
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn logit_scale(&self) -> f32 {
        100.0
    }
    fn embed_images(&self, images: &[&[u8]]) -> Result<Vec<Vec<f32>>, EmbedError> {
        std::thread::sleep(self.delay);
        images
            .iter()
            .map(|b| match sniff_image(b) {
                Some(_) => Ok(self.vector(b"image", b)),
                None => Err(EmbedError::BadImage("unknown format".into())),
            })
            .collect()
    }
    fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        std::thread::sleep(self.delay);
        Ok(texts
            .iter()
            .map(|t| self.vector(b"text", t.as_bytes()))
            .collect())
    }
}

/// The photos shipped with the examples.
pub fn demo_photos() -> Vec<PathBuf> {
    clip_examples::demo_photos().unwrap()
}

/// A library in a fresh folder, holding the demo photos indexed with `model`.
pub fn demo_library(model: &dyn Embedder) -> (tempfile::TempDir, Library) {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    std::fs::create_dir(&photos).unwrap();
    for p in demo_photos() {
        std::fs::copy(&p, photos.join(p.file_name().unwrap())).unwrap();
    }
    let mut lib = Library::open(
        &dir.path().join("lib.sqlite"),
        model.model_id(),
        model.dim(),
    )
    .unwrap();
    let report = clip_examples::model::sync_folder(model, &mut lib, &photos).unwrap();
    assert_eq!(report.added, demo_photos().len(), "{report:?}");
    (dir, lib)
}

/// Server state over `model` and the demo library.
pub fn demo_state(
    model: Arc<dyn Embedder>,
    settings: Settings,
    queue: usize,
) -> (tempfile::TempDir, Arc<AppState>) {
    let (dir, lib) = demo_library(model.as_ref());
    let worker = Worker::start(model, queue);
    (dir, AppState::new(worker, lib, settings))
}

/// Dot product.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The bytes of a demo photo by file name.
pub fn photo_bytes(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("photos")
            .join(name),
    )
    .unwrap()
}

/// Writes the tiny random CLIP of `dev_support::tiny_clip` into `dir`.
pub fn tiny_clip_file(dir: &Path) -> PathBuf {
    dev_support::tiny_clip::write(dir).unwrap()
}
