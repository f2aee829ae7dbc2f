//! Preprocessing throughput (images/s) on real photos: decode + resize + crop + normalise with
//! the OpenAI preset at 224 px, one image at a time on one core, and a parallel batch.
//!
//! Photos: the first 64 ImageNet sample photos from `$CLIP_SHARED_DATA/imagenet-sample` (or
//! `../shared/data`), falling back to the demo photos in `crates/clip-preprocess/tests/fixtures`.
//! Images are read into memory first, so file-system time is not measured.
//! `tools/reference/time_preprocess.py` times Pillow + torchvision on the same files.

use std::path::PathBuf;

use clip_preprocess::{PreprocessConfig, Preprocessor};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn photos() -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<PathBuf> = match dev_support::shared_data() {
        Ok(dir) => std::fs::read_dir(dir.join("imagenet-sample"))
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "JPEG"))
                    .collect()
            })
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files.truncate(64);
    if files.is_empty() {
        let dir =
            dev_support::workspace_root().join("crates/clip-preprocess/tests/fixtures/photos");
        files = ["rocket.jpg", "horse.png", "camera.png"]
            .iter()
            .map(|f| dir.join(f))
            .collect();
    }
    files
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, b)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let photos = photos();
    let pre = Preprocessor::new(PreprocessConfig::openai(224)).expect("valid config");
    let mut g = c.benchmark_group("preprocess");
    g.throughput(Throughput::Elements(photos.len() as u64));
    g.sample_size(10);
    g.bench_function(
        format!("openai_224_one_core_{}_photos", photos.len()),
        |b| {
            b.iter(|| {
                for (_, bytes) in &photos {
                    std::hint::black_box(pre.preprocess_bytes(bytes).expect("decodes"));
                }
            })
        },
    );
    let paths: Vec<PathBuf> = photos.iter().map(|(p, _)| p.clone()).collect();
    g.bench_function(
        format!("openai_224_load_batch_{}_photos", photos.len()),
        |b| b.iter(|| std::hint::black_box(pre.load_batch(&paths))),
    );
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
