//! End-to-end tests of `cargo xtask eval-imagenet` with the tiny random ViT of `clip-model`'s fixtures.
//!
//! The model's weights are random, so accuracy means nothing here; the tests check structure, consistency and
//! agreement with open_clip:
//!
//! - an official-layout folder (`ILSVRC2012_val_%08d.JPEG` + ground truth + the real `meta.mat`) built at test
//!   time from 20 of the shared ImageNet sample photos, plus a truncated JPEG and an empty file that must be
//!   skipped and listed;
//! - the targets equal the class indices scipy reads from `meta.mat` (fixture), the classifier equals open_clip's
//!   and every top-5 list is a valid top-5 of open_clip's scores (`tools/reference/eval_parity.py`);
//! - the metrics recomputed from `predictions.jsonl` equal `summary.json`;
//! - a second run reads the classifier from the cache and predicts the same;
//! - the wnid-named layout (`<wnid>_<name>.JPEG`) with `--limit`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

/// open_clip vs ours, per classifier element and per cosine score. Both sides compute in float32; the model
/// parity tests of `clip-model` bound embeddings at 1e-4, and averaging normalised embeddings over templates
/// does not enlarge that.
const TOL: f32 = 1e-4;

#[derive(Deserialize)]
struct Case {
    model: String,
    templates: Vec<String>,
    photos: Vec<String>,
    devkit_ids: Vec<u32>,
    targets: Vec<usize>,
}

#[derive(Deserialize, Debug, PartialEq)]
struct Prediction {
    image: String,
    target: usize,
    top5: Vec<usize>,
    scores: Vec<f32>,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/eval_parity")
}

fn case() -> Case {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("case.json")).unwrap()).unwrap()
}

fn npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let a = dev_support::Npy::read(path).unwrap();
    let shape = a.shape.clone();
    (shape, a.into_f32().unwrap())
}

fn xtask(args: &[&std::ffi::OsStr]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("eval-imagenet")
        .args(args)
        .output()
        .unwrap();
    if !out.status.success() {
        panic!(
            "xtask eval-imagenet failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// `dir/sample/` holding copies of the named ImageNet sample photos (wnid-named files).
fn sample_folder(shared: &Path, photos: &[String], dir: &Path) -> PathBuf {
    let images = dir.join("sample");
    std::fs::create_dir(&images).unwrap();
    for photo in photos {
        std::fs::copy(
            shared.join("imagenet-sample").join(photo),
            images.join(photo),
        )
        .unwrap();
    }
    images
}

fn read_predictions(out: &Path) -> Vec<Prediction> {
    std::fs::read_to_string(out.join("predictions.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn read_summary(out: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap()
}

/// Recomputes the counts and accuracies from the predictions and compares them with the summary.
fn check_metrics(preds: &[Prediction], s: &Value) {
    let n = preds.len();
    let top1 = preds.iter().filter(|p| p.top5[0] == p.target).count();
    let top5 = preds.iter().filter(|p| p.top5.contains(&p.target)).count();
    assert_eq!(s["n"], n);
    assert_eq!(s["correct_top1"], top1);
    assert_eq!(s["correct_top5"], top5);
    let acc = |c: usize| c as f64 / n as f64;
    assert!((s["top1_accuracy"].as_f64().unwrap() - acc(top1)).abs() < 1e-12);
    assert!((s["top5_accuracy"].as_f64().unwrap() - acc(top5)).abs() < 1e-12);
    for p in preds {
        assert_eq!(p.top5.len(), 5);
        assert_eq!(p.scores.len(), 5);
        assert!(p.scores.windows(2).all(|w| w[0] >= w[1]), "{p:?}");
        let mut ids = p.top5.clone();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 5, "{p:?}");
    }
}

#[test]
fn eval_imagenet_official_layout_matches_open_clip() {
    let Some(shared) = dev_support::shared_data_or_skip("eval_imagenet_official_layout") else {
        return;
    };
    let case = case();
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("val");
    std::fs::create_dir(&images).unwrap();
    let mut gt = String::new();
    for (i, (photo, id)) in case.photos.iter().zip(&case.devkit_ids).enumerate() {
        let src = shared.join("imagenet-sample").join(photo);
        std::fs::copy(
            &src,
            images.join(format!("ILSVRC2012_val_{:08}.JPEG", i + 1)),
        )
        .unwrap();
        gt.push_str(&format!("{id}\n"));
    }
    // Image 21: a truncated JPEG (the first 2 kB of a photo), labelled like image 1.
    let bad = format!("ILSVRC2012_val_{:08}.JPEG", case.photos.len() + 1);
    let bytes = std::fs::read(shared.join("imagenet-sample").join(&case.photos[0])).unwrap();
    std::fs::write(images.join(&bad), &bytes[..2048]).unwrap();
    gt.push_str(&format!("{}\n", case.devkit_ids[0]));
    // Image 22: an empty file.
    let empty = format!("ILSVRC2012_val_{:08}.JPEG", case.photos.len() + 2);
    std::fs::write(images.join(&empty), b"").unwrap();
    gt.push_str(&format!("{}\n", case.devkit_ids[1]));
    // Not part of the layout: ignored.
    std::fs::write(images.join("README.txt"), "not an image").unwrap();
    let gt_file = tmp.path().join("gt.txt");
    std::fs::write(&gt_file, gt).unwrap();
    let out = tmp.path().join("out");
    let classifier = tmp.path().join("classifier.npy");
    let weights = root().join(&case.model);
    let templates = fixtures().join("templates.txt");
    let meta = shared.join("imagenet-devkit/meta.mat");

    let args: Vec<&std::ffi::OsStr> = vec![
        "--weights".as_ref(),
        weights.as_os_str(),
        "--images".as_ref(),
        images.as_os_str(),
        "--ground-truth".as_ref(),
        gt_file.as_os_str(),
        "--meta".as_ref(),
        meta.as_os_str(),
        "--templates".as_ref(),
        templates.as_os_str(),
        "--batch-size".as_ref(),
        "8".as_ref(),
        "--threads".as_ref(),
        "2".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
        "--save-classifier".as_ref(),
        classifier.as_os_str(),
    ];
    xtask(&args);

    // Structure and consistency.
    let s = read_summary(&out);
    let preds = read_predictions(&out);
    let n = case.photos.len();
    assert_eq!(s["found"], n + 2);
    assert_eq!(s["n"], n);
    assert_eq!(s["n_skipped"], 2);
    let skipped = s["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 2);
    assert_eq!(skipped[0]["image"], bad.as_str());
    assert_eq!(skipped[1]["image"], empty.as_str());
    for k in skipped {
        assert!(!k["error"].as_str().unwrap().is_empty(), "{k}");
    }
    assert_eq!(s["layout"], "official");
    assert_eq!(s["split"], "val");
    assert_eq!(s["class_names"], "openai");
    assert_eq!(s["n_templates"], case.templates.len());
    assert_eq!(s["timing_detail"]["classifier_cached"], false);
    assert!(s["timing"]["images_per_s"].as_f64().unwrap() > 0.0);
    assert!(s["machine"]["logical_cores"].as_u64().unwrap() >= 1);
    assert!(!s["machine"]["cpu"].as_str().unwrap().is_empty());
    // The summary is a clip_eval::Summary too, and its counts agree with clip_eval's recomputation.
    let typed = clip_eval::Summary::read(out.join("summary.json")).unwrap();
    assert_eq!(
        typed.counts,
        clip_eval::recompute_counts(out.join("predictions.jsonl")).unwrap()
    );
    let hash = s["weights_sha256"].as_str().unwrap();
    {
        use sha2::Digest;
        let want = sha2::Sha256::digest(std::fs::read(&weights).unwrap());
        let want: String = want.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hash, want);
    }
    let names: Vec<_> = preds.iter().map(|p| p.image.clone()).collect();
    let want: Vec<_> = (1..=n)
        .map(|i| format!("ILSVRC2012_val_{i:08}.JPEG"))
        .collect();
    assert_eq!(names, want);
    let targets: Vec<_> = preds.iter().map(|p| p.target).collect();
    assert_eq!(
        targets, case.targets,
        "targets differ from scipy's reading of meta.mat"
    );
    check_metrics(&preds, &s);
    let log = std::fs::read_to_string(out.join("eval.log")).unwrap();
    assert_eq!(log.lines().filter(|l| l.starts_with('[')).count(), n + 2);
    assert!(log.contains(&format!("Top-1 correct: {} / {n}", s["correct_top1"])));
    assert!(log.contains(&format!("Top-5 correct: {} / {n}", s["correct_top5"])));
    assert!(log.contains("SKIPPED"));

    // Parity with open_clip: the classifier…
    let (shape, ours) = npy(&classifier);
    let (ref_shape, theirs) = npy(&fixtures().join("classifier.npy"));
    assert_eq!(shape, ref_shape);
    let max_c = ours
        .iter()
        .zip(&theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    // …and the scores and top-5 lists.
    let (sshape, ref_scores) = npy(&fixtures().join("scores.npy"));
    let classes = sshape[1];
    let mut max_s = 0.0f32;
    let mut max_rank = 0.0f32;
    for (i, p) in preds.iter().enumerate() {
        let row = &ref_scores[i * classes..(i + 1) * classes];
        let mut sorted = row.to_vec();
        sorted.sort_by(|a, b| b.total_cmp(a));
        for (r, (&c, &score)) in p.top5.iter().zip(&p.scores).enumerate() {
            max_s = max_s.max((score - row[c]).abs());
            // Our r-th class must be an r-th best class for open_clip, up to ties within the tolerance.
            max_rank = max_rank.max(sorted[r] - row[c]);
        }
    }
    println!(
        "eval parity vs open_clip: classifier max abs diff {max_c:.2e}, score max abs diff {max_s:.2e}, \
         worst rank gap {max_rank:.2e} (tolerance {TOL:.0e})"
    );
    assert!(max_c <= TOL, "classifier differs from open_clip by {max_c}");
    assert!(max_s <= TOL, "scores differ from open_clip by {max_s}");
    assert!(
        max_rank <= 2.0 * TOL,
        "top-5 order differs from open_clip by {max_rank}"
    );

    // Second run: classifier from the cache, same predictions.
    xtask(&args);
    let s2 = read_summary(&out);
    assert_eq!(s2["timing_detail"]["classifier_cached"], true);
    assert_eq!(read_predictions(&out), preds);
}

#[test]
fn eval_imagenet_wnid_layout_with_limit() {
    let Some(shared) = dev_support::shared_data_or_skip("eval_imagenet_wnid_layout") else {
        return;
    };
    let case = case();
    let tmp = tempfile::tempdir().unwrap();
    let images = sample_folder(&shared, &case.photos[..4], tmp.path());
    let out = tmp.path().join("out");
    let weights = root().join(&case.model);
    let meta = shared.join("imagenet-devkit/meta.mat");
    xtask(&[
        "--weights".as_ref(),
        weights.as_os_str(),
        "--images".as_ref(),
        images.as_os_str(),
        "--meta".as_ref(),
        meta.as_os_str(),
        "--templates".as_ref(),
        "single".as_ref(),
        "--classnames".as_ref(),
        "devkit".as_ref(),
        "--limit".as_ref(),
        "3".as_ref(),
        "--batch-size".as_ref(),
        "2".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    let s = read_summary(&out);
    let preds = read_predictions(&out);
    assert_eq!(s["layout"], "wnid");
    assert_eq!(s["split"], "sample");
    assert_eq!(s["class_names"], "devkit");
    assert_eq!(s["templates"], "single");
    assert_eq!(s["found"], 3);
    assert_eq!(s["n_skipped"], 0);
    let names: Vec<_> = preds.iter().map(|p| p.image.as_str()).collect();
    assert_eq!(names, case.photos[..3]);
    let targets: Vec<_> = preds.iter().map(|p| p.target).collect();
    assert_eq!(targets, case.targets[..3]);
    check_metrics(&preds, &s);
}

/// Chinese-CLIP the way its authors evaluate it: cn_clip's Chinese class names and 80 Chinese
/// templates (`--classnames zh --templates zh`), with the tiny random Chinese-CLIP of the facade's
/// fixtures (its classifier equals cn_clip's own zero-shot code: `crates/clip/tests/families.rs`).
/// Checks the report records the family, score function and preprocessing, and the metrics.
#[test]
fn eval_imagenet_chinese_clip_with_chinese_names_and_templates() {
    let Some(shared) = dev_support::shared_data_or_skip("eval_imagenet_chinese_clip") else {
        return;
    };
    let case = case();
    let tmp = tempfile::tempdir().unwrap();
    let images = sample_folder(&shared, &case.photos[..3], tmp.path());
    let out = tmp.path().join("out");
    let weights = root().join("crates/clip/tests/fixtures/families/cn_clip/model.safetensors");
    let meta = shared.join("imagenet-devkit/meta.mat");
    xtask(&[
        "--weights".as_ref(),
        weights.as_os_str(),
        "--images".as_ref(),
        images.as_os_str(),
        "--meta".as_ref(),
        meta.as_os_str(),
        "--templates".as_ref(),
        "zh".as_ref(),
        "--classnames".as_ref(),
        "zh".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    let s = read_summary(&out);
    assert_eq!(s["class_names"], "zh");
    assert_eq!(s["templates"], "zh80");
    assert_eq!(s["n_templates"], 80);
    assert_eq!(s["scoring"]["model_family"], "chinese-clip");
    assert_eq!(s["scoring"]["score_function"]["kind"], "softmax");
    let pre = s["scoring"]["preprocessing"].as_str().unwrap();
    assert!(pre.contains("Squash"), "{pre}");
    let preds = read_predictions(&out);
    assert_eq!(preds.len(), 3);
    let targets: Vec<_> = preds.iter().map(|p| p.target).collect();
    assert_eq!(targets, case.targets[..3]);
    check_metrics(&preds, &s);
}
