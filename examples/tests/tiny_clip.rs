//! The CLIP glue with a tiny random model: loading, embedding, and the gallery end to end.
//!
//! Random weights make the labels and rankings meaningless: these tests check structure
//! (shapes, unit norms, ordering, counts) and that the server's scores equal embeddings computed
//! independently through the library, not that a cat is found.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use clip::Clip;
use clip_examples::gallery::server::{Classified, Hits, Settings, router};
use clip_examples::{EmbedError, Embedder};
use common::{demo_photos, demo_state, dot, photo_bytes, tiny_clip_file};
use http_body_util::BodyExt;
use tower::ServiceExt;

/// The tiny model through the facade, seen through the gallery's `Embedder` seam.
fn tiny() -> (tempfile::TempDir, Arc<dyn Embedder>) {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny_clip_file(dir.path());
    let clip = Clip::load(path.to_str().unwrap()).unwrap();
    (dir, Arc::new(clip))
}

fn norm(v: &[f32]) -> f32 {
    dot(v, v).sqrt()
}

#[test]
fn tiny_model_loads_and_embeds() {
    let (_d, clip) = tiny();
    assert_eq!(clip.dim(), 32);
    // The identity is the weights' content, not the file's name.
    assert!(
        clip.model_id().starts_with("custom blake3:"),
        "{}",
        clip.model_id()
    );
    assert!((clip.logit_scale() - 100.0).abs() < 1e-3);

    let photos: Vec<Vec<u8>> = demo_photos()
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    let refs: Vec<&[u8]> = photos.iter().map(Vec::as_slice).collect();
    let batch = clip.embed_images(&refs).unwrap();
    assert_eq!(batch.len(), photos.len());
    for (v, bytes) in batch.iter().zip(&photos) {
        assert_eq!(v.len(), 32);
        assert!((norm(v) - 1.0).abs() < 1e-5);
        // A batch row equals the image embedded alone.
        let alone = clip.embed_image(bytes).unwrap();
        let diff = dev_support::max_abs_diff(v, &alone).unwrap();
        assert!(diff < 1e-5, "batch vs single: {diff}");
    }
    assert!(
        dot(&batch[0], &batch[1]) < 0.99999,
        "different photos, different vectors"
    );

    let texts = clip.embed_texts(&["a cat", "a rocket", "a cat"]).unwrap();
    assert_eq!(texts.len(), 3);
    assert!(texts.iter().all(|t| (norm(t) - 1.0).abs() < 1e-5));
    assert_eq!(texts[0], texts[2]);
    assert_ne!(texts[0], texts[1]);
}

#[test]
fn bad_inputs_are_typed_errors() {
    let (_d, clip) = tiny();
    match clip.embed_image(&huge_png()) {
        Err(EmbedError::BadImage(m)) => assert!(m.contains("over the limit"), "{m}"),
        other => panic!("decompression bomb accepted: {other:?}"),
    }
    for bad in [&b""[..], b"hello", &fake_png()] {
        assert!(matches!(
            clip.embed_image(bad),
            Err(EmbedError::BadImage(_))
        ));
    }
    let mut truncated = photo_bytes("rocket.jpg");
    truncated.truncate(300);
    assert!(matches!(
        clip.embed_image(&truncated),
        Err(EmbedError::BadImage(_))
    ));
    let long = "word ".repeat(100);
    assert!(matches!(
        clip.embed_text(&long),
        Err(EmbedError::BadText(_))
    ));
}

#[test]
fn a_bad_picture_in_a_batch_fails_alone() {
    let (_d, clip) = tiny();
    let (rocket, horse) = (photo_bytes("rocket.jpg"), photo_bytes("horse.png"));
    let out = clip.embed_each(&[&rocket, b"not a picture", &horse]);
    assert_eq!(out.len(), 3);
    assert!(
        matches!(out[1], Err(EmbedError::BadImage(_))),
        "{:?}",
        out[1]
    );
    for (got, bytes) in [(&out[0], &rocket), (&out[2], &horse)] {
        let got = got.as_ref().expect("good picture embedded");
        let alone = clip.embed_image(bytes).unwrap();
        let diff = got
            .iter()
            .zip(&alone)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(
            diff < 1e-5 && got.len() == alone.len(),
            "in batch vs alone: {diff}"
        );
    }
    // The whole-batch call reports the bad picture instead of a partial result.
    assert!(clip.embed_images(&[&rocket, b"not a picture"]).is_err());
}

#[test]
fn unknown_models_and_bad_files_are_named() {
    let msg = Clip::load("no/such/file.safetensors")
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("no/such/file.safetensors") && msg.contains("ViT-B-32"),
        "{msg}"
    );
    // A file that is not safetensors: the loader's error, with the path.
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"not a model").unwrap();
    let msg = Clip::load(junk.to_str().unwrap()).unwrap_err().to_string();
    assert!(msg.contains("junk.safetensors"), "{msg}");
}

#[test]
fn model_with_a_small_vocabulary_is_refused_clearly() {
    // clip-model's parity fixture has a 1000-token vocabulary: fine for parity, not for real text.
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/clip-model/tests/fixtures/vit_tiny/open_clip/open_clip_model.safetensors");
    assert!(p.is_file(), "committed fixture missing: {}", p.display());
    let msg = Clip::load(p.to_str().unwrap()).unwrap_err().to_string();
    assert!(msg.contains("49408") && msg.contains("1000"), "{msg}");
}

async fn get_json<T: serde::de::DeserializeOwned>(app: &axum::Router, req: Request<Body>) -> T {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gallery_with_tiny_model_end_to_end() {
    let (_d, clip) = tiny();
    let (_lib, state) = demo_state(clip.clone(), Settings::default(), 8);
    let app = router(state);
    let n = demo_photos().len();

    // Search: k hits, best first, each score the dot product of independently computed embeddings.
    let hits: Hits = get_json(
        &app,
        Request::get("/api/search?q=a%20photo%20of%20a%20cat&k=3")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(hits.results.len(), 3);
    let q = clip.embed_text("a photo of a cat").unwrap();
    let mut all: Vec<(String, f32)> = demo_photos()
        .iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let s = dot(&q, &clip.embed_image(&std::fs::read(p).unwrap()).unwrap());
            (name, s)
        })
        .collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (h, (name, score)) in hits.results.iter().zip(&all) {
        assert_eq!(&h.name, name);
        assert!(
            (h.score - score).abs() < 1e-5,
            "{name}: {} vs {score}",
            h.score
        );
    }

    // Upload: classified among the labels, added to the library, found by its own embedding.
    let mut bytes = photo_bytes("chelsea.png");
    bytes.extend_from_slice(b"tail");
    let c: Classified = get_json(
        &app,
        Request::post("/api/classify?labels=cat,dog,rocket,coffee")
            .body(Body::from(bytes.clone()))
            .unwrap(),
    )
    .await;
    assert!(c.added);
    assert_eq!(c.library_size, n + 1);
    assert_eq!(c.labels.len(), 4);
    let img = clip.embed_image(&bytes).unwrap();
    let classes: Vec<Vec<f32>> = c
        .labels
        .iter()
        .map(|l| {
            clip.embed_text(&format!("a photo of a {}.", l.label))
                .unwrap()
        })
        .collect();
    // softmax(logit_scale * cos), computed here in f64.
    let logits: Vec<f64> = classes
        .iter()
        .map(|t| (clip.logit_scale() * dot(&img, t)) as f64)
        .collect();
    let m = logits.iter().cloned().fold(f64::MIN, f64::max);
    let z: f64 = logits.iter().map(|l| (l - m).exp()).sum();
    let probs: Vec<f32> = logits.iter().map(|l| ((l - m).exp() / z) as f32).collect();
    assert!(probs.windows(2).all(|w| w[0] >= w[1]), "{probs:?}");
    for (l, p) in c.labels.iter().zip(&probs) {
        assert!((l.prob - p).abs() < 1e-5, "{}: {} vs {p}", l.label, l.prob);
    }
    // Undecodable or oversized pictures (checked from the header: no 30 GB allocation) → 422.
    for (what, bytes) in [("fake PNG", fake_png()), ("100000x100000 PNG", huge_png())] {
        let resp = app
            .clone()
            .oneshot(
                Request::post("/api/classify?labels=a,b")
                    .body(Body::from(bytes))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY, "{what}");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(
            v["error"].as_str().unwrap().contains("not a usable image"),
            "{what}: {v}"
        );
    }

    let sim: Hits = get_json(
        &app,
        Request::get(format!("/api/similar/{}?k=100", c.id))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(sim.results.len(), n);
}

/// PNG signature followed by junk.
fn fake_png() -> Vec<u8> {
    let mut b = b"\x89PNG\r\n\x1a\n".to_vec();
    b.extend_from_slice(&[7u8; 100]);
    b
}

/// A well-formed PNG whose header claims 100000 × 100000 RGB pixels (a decompression bomb).
fn huge_png() -> Vec<u8> {
    fn crc32(data: &[u8]) -> u32 {
        let mut c = !0u32;
        for &b in data {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &ihdr);
    // zlib stream of a few empty stored blocks: far too little data, never reached.
    chunk(
        &mut png,
        b"IDAT",
        &[0x78, 0x01, 0x01, 0x00, 0x00, 0xff, 0xff, 0, 0, 0, 1],
    );
    chunk(&mut png, b"IEND", &[]);
    png
}

/// `gallery index` names a file it cannot add by its path, not by its place in the batch
/// ("image #2 (10 bytes in memory)").
#[test]
fn indexing_failures_name_the_file() {
    let (_d, clip) = tiny();
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    std::fs::create_dir(&photos).unwrap();
    std::fs::copy(&demo_photos()[0], photos.join("good.png")).unwrap();
    std::fs::write(photos.join("broken.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let mut lib = clip_examples::gallery::library::Library::open(
        &dir.path().join("lib.sqlite"),
        clip.model_id(),
        clip.dim(),
    )
    .unwrap();
    let report = clip_examples::model::sync_folder(clip.as_ref(), &mut lib, &photos).unwrap();
    assert_eq!((report.added, report.failed.len()), (1, 1), "{report:?}");
    let reason = &report.failed[0].reason;
    assert!(reason.contains("broken.png"), "{reason}");
    assert!(
        !reason.contains("in memory") && !reason.contains("<memory>"),
        "{reason}"
    );
}
