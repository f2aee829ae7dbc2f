//! Shared set-up of the gallery tests: an embedder, a library of the demo photos, a server.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clip_examples::gallery::library::Library;
use clip_examples::gallery::server::{AppState, Settings};
use clip_examples::gallery::worker::Worker;
use clip_examples::{EmbedError, Embedder, sniff_image};

/// A deterministic stand-in model: unit vectors derived from the BLAKE3 hash of the input.
/// It rejects bytes that are not a recognised image format; `delay` slows every call down.
pub struct HashModel {
    pub dim: usize,
    pub delay: Duration,
}

impl HashModel {
    pub fn new(dim: usize) -> Self {
        Self {
            dim,
            delay: Duration::ZERO,
        }
    }

    fn vector(&self, domain: &[u8], bytes: &[u8]) -> Vec<f32> {
        let mut h = blake3::Hasher::new();
        h.update(domain);
        h.update(bytes);
        let mut xof = h.finalize_xof();
        let mut buf = vec![0u8; self.dim * 4];
        xof.fill(&mut buf);
        let v: Vec<f32> = buf
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32 / u32::MAX as f32 - 0.5)
            .collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / n).collect()
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
    let report = clip_examples::clip::sync_folder(model, &mut lib, &photos).unwrap();
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

/// Writes a tiny random CLIP (ViT image tower, 32×32 pixels, patch 8, width 64, one block per
/// tower, 32-d embeddings, OpenAI's full vocabulary and 77-token context) as an open_clip-named
/// safetensors file, and returns its path. Its outputs are meaningless but deterministic.
pub fn tiny_clip_file(dir: &Path) -> PathBuf {
    use safetensors::tensor::{Dtype, TensorView};
    let (w, p, grid, e, vocab, ctx) = (64usize, 8usize, 4usize, 32usize, 49408usize, 77usize);
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut rand = |n: usize, scale: f32| -> Vec<f32> {
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0 * scale
            })
            .collect()
    };
    let mut t: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut push = |name: &str, shape: Vec<usize>, data: Vec<f32>| {
        t.push((name.to_owned(), shape, data));
    };
    let block = |prefix: &str, rand: &mut dyn FnMut(usize, f32) -> Vec<f32>| {
        let h = 4 * w;
        vec![
            (format!("{prefix}.ln_1.weight"), vec![w], vec![1.0; w]),
            (format!("{prefix}.ln_1.bias"), vec![w], vec![0.0; w]),
            (
                format!("{prefix}.attn.in_proj_weight"),
                vec![3 * w, w],
                rand(3 * w * w, 0.1),
            ),
            (
                format!("{prefix}.attn.in_proj_bias"),
                vec![3 * w],
                rand(3 * w, 0.02),
            ),
            (
                format!("{prefix}.attn.out_proj.weight"),
                vec![w, w],
                rand(w * w, 0.1),
            ),
            (
                format!("{prefix}.attn.out_proj.bias"),
                vec![w],
                rand(w, 0.02),
            ),
            (format!("{prefix}.ln_2.weight"), vec![w], vec![1.0; w]),
            (format!("{prefix}.ln_2.bias"), vec![w], vec![0.0; w]),
            (
                format!("{prefix}.mlp.c_fc.weight"),
                vec![h, w],
                rand(h * w, 0.1),
            ),
            (format!("{prefix}.mlp.c_fc.bias"), vec![h], rand(h, 0.02)),
            (
                format!("{prefix}.mlp.c_proj.weight"),
                vec![w, h],
                rand(w * h, 0.05),
            ),
            (format!("{prefix}.mlp.c_proj.bias"), vec![w], rand(w, 0.02)),
        ]
    };
    push(
        "visual.conv1.weight",
        vec![w, 3, p, p],
        rand(w * 3 * p * p, 0.05),
    );
    push("visual.class_embedding", vec![w], rand(w, 0.1));
    push(
        "visual.positional_embedding",
        vec![grid * grid + 1, w],
        rand((grid * grid + 1) * w, 0.1),
    );
    push("visual.ln_pre.weight", vec![w], vec![1.0; w]);
    push("visual.ln_pre.bias", vec![w], vec![0.0; w]);
    for (n, s, d) in block("visual.transformer.resblocks.0", &mut rand) {
        push(&n, s, d);
    }
    push("visual.ln_post.weight", vec![w], vec![1.0; w]);
    push("visual.ln_post.bias", vec![w], vec![0.0; w]);
    push("visual.proj", vec![w, e], rand(w * e, 0.1));
    push(
        "token_embedding.weight",
        vec![vocab, w],
        rand(vocab * w, 0.1),
    );
    push("positional_embedding", vec![ctx, w], rand(ctx * w, 0.05));
    for (n, s, d) in block("transformer.resblocks.0", &mut rand) {
        push(&n, s, d);
    }
    push("ln_final.weight", vec![w], vec![1.0; w]);
    push("ln_final.bias", vec![w], vec![0.0; w]);
    push("text_projection", vec![w, e], rand(w * e, 0.1));
    push("logit_scale", vec![], vec![100f32.ln()]);
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = t
        .into_iter()
        .map(|(n, s, d)| (n, s, d.iter().flat_map(|x| x.to_le_bytes()).collect()))
        .collect();
    let views: Vec<(String, TensorView<'_>)> = bytes
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
            )
        })
        .collect();
    let path = dir.join("tiny-clip.safetensors");
    safetensors::serialize_to_file(views, None, &path).unwrap();
    path
}
