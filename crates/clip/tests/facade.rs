//! The facade end to end on committed tiny models: the zero-shot classifier and image scores
//! against open_clip's (fixtures of `tools/reference/eval_parity.py`), inputs of every kind, the
//! library, and every failure a user can cause.

use std::path::{Path, PathBuf};

use clip::{Clip, Error, ImageInput, Templates};

/// The same bound as the model parity tests: float32 reassociation over a deep network, then
/// averaging unit vectors over templates; measured differences sit orders of magnitude below.
const TOL: f32 = 1e-4;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn parity_dir() -> PathBuf {
    root().join("xtask/tests/fixtures/eval_parity")
}

/// The tiny ViT CLIP with OpenAI's full vocabulary that open_clip's fixtures were made with.
fn reference_model() -> Clip {
    Clip::builder()
        .apply_exif(false)
        .load(parity_dir().join("model").to_str().unwrap())
        .unwrap()
}

/// The tiny random CLIP of dev-support, written into `dir`.
fn tiny(dir: &Path) -> (PathBuf, Clip) {
    let p = dev_support::tiny_clip::write(dir).unwrap();
    let clip = Clip::load(p.to_str().unwrap()).unwrap();
    (p, clip)
}

fn photos() -> PathBuf {
    root().join("examples/photos")
}

fn npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let n = dev_support::Npy::read(path).unwrap();
    (n.shape.clone(), n.into_f32().unwrap())
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn classifier_and_scores_match_open_clip() {
    let case: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(parity_dir().join("case.json")).unwrap())
            .unwrap();
    let templates: Vec<String> = case["templates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    let names = clip_eval::ClassNames::openai().unwrap();
    let clip = reference_model();
    let classifier = clip
        .classifier(&names.names, &Templates::new("case", templates).unwrap())
        .unwrap();
    let (shape, want) = npy(&parity_dir().join("classifier.npy"));
    assert_eq!(shape, [1000, clip.dim()]);
    let ours = classifier.zero_shot().classifier().weights();
    let d = max_diff(ours, &want);
    assert!(d <= TOL, "classifier max abs diff {d:e}");

    // Image scores: cosine of each photo's embedding with each class, as open_clip computed them.
    let data = dev_support::shared_data().unwrap().join("imagenet-sample");
    let files: Vec<PathBuf> = case["photos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| data.join(p.as_str().unwrap()))
        .collect();
    let rows = clip.embed_images_array(&files).unwrap();
    let (shape, want) = npy(&parity_dir().join("scores.npy"));
    assert_eq!(shape, [files.len(), 1000]);
    let flat: Vec<f32> = rows.iter().copied().collect();
    let scores = classifier
        .zero_shot()
        .classifier()
        .cosine_scores(&flat)
        .unwrap();
    let d = max_diff(&scores, &want);
    assert!(d <= TOL, "scores max abs diff {d:e}");
}

#[test]
fn every_input_kind_gives_the_same_embedding() {
    let dir = tempfile::tempdir().unwrap();
    let (_, clip) = tiny(dir.path());
    // A photo that Pillow opens as RGB, so its decoded pixels are exactly what the pipeline resizes.
    let (path, bytes, decoded) = std::fs::read_dir(photos())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "png" || x == "jpg"))
        .find_map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            let d = clip_preprocess::decode_bytes(&bytes, None).unwrap();
            (d.mode == clip_preprocess::Mode::Rgb && d.orientation == 1).then_some((p, bytes, d))
        })
        .expect("an RGB demo photo");
    let from_path = clip.embed_image(&path).unwrap();
    let from_bytes = clip.embed_image(&bytes).unwrap();
    let img = image::RgbImage::from_raw(decoded.width as u32, decoded.height as u32, decoded.bytes)
        .unwrap();
    let from_pixels = clip.embed_image(&img).unwrap();
    assert_eq!(from_path, from_bytes);
    assert_eq!(from_path, from_pixels);
    let n: f32 = from_path.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((n - 1.0).abs() < 1e-5, "{n}");

    // A batch: one result per input, a bad one failing alone and named; good rows equal singles.
    let missing = dir.path().join("missing.jpg");
    let inputs = [
        ImageInput::Path(&path),
        ImageInput::Path(&missing),
        ImageInput::Bytes(b"not a picture"),
        ImageInput::Bytes(&bytes),
    ];
    let out = clip.embed_images(inputs);
    assert_eq!(out.len(), 4);
    assert_eq!(out[0].as_ref().unwrap(), &from_path);
    assert_eq!(out[3].as_ref().unwrap(), &from_path);
    let e1 = out[1].as_ref().unwrap_err().to_string();
    assert!(e1.contains("missing.jpg"), "{e1}");
    let e2 = out[2].as_ref().unwrap_err().to_string();
    assert!(e2.contains("image #2"), "{e2}");
    assert!(matches!(out[2], Err(Error::Image { .. })));
}

#[test]
fn texts_labels_and_options_fail_with_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (_, clip) = tiny(dir.path());
    let labels: [&str; 0] = [];
    assert!(matches!(
        clip.classify(&photos().join("horse.png"), &labels),
        Err(Error::Labels(_))
    ));
    let err = clip
        .classify(&photos().join("horse.png"), &["cat", " "])
        .unwrap_err();
    assert!(
        matches!(err, Error::Labels(_)) && err.to_string().contains("#1"),
        "{err}"
    );
    let err = clip.embed_texts(&["fine", ""]).unwrap_err();
    assert!(matches!(err, Error::Text { index: 1, .. }), "{err}");
    let long = "word ".repeat(100);
    let err = clip.embed_texts(&["fine", long.as_str()]).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, Error::Text { index: 1, .. }) && msg.contains("77"),
        "{msg}"
    );
    // Truncation on request.
    let lenient = Clip::builder()
        .truncate_texts(true)
        .load(clip.weights_path().to_str().unwrap())
        .unwrap();
    assert_eq!(lenient.embed_texts(&[long.as_str()]).unwrap().nrows(), 1);
    // Zero threads or a zero batch is refused; one thread gives the same numbers.
    let spec = clip.weights_path().to_str().unwrap();
    assert!(matches!(
        Clip::builder().threads(0).load(spec),
        Err(Error::InvalidOption { .. })
    ));
    assert!(matches!(
        Clip::builder().batch_size(0).load(spec),
        Err(Error::InvalidOption { .. })
    ));
    let one = Clip::builder().threads(1).load(spec).unwrap();
    assert_eq!(
        one.embed_text("a cat").unwrap(),
        clip.embed_text("a cat").unwrap()
    );
    assert!("gpu".parse::<clip::Device>().is_err());
    assert_eq!(
        "cuda:1".parse::<clip::Device>().unwrap(),
        clip::Device::Cuda(1)
    );
}

#[test]
fn classify_is_softmax_over_labels_and_classifiers_are_reused() {
    let dir = tempfile::tempdir().unwrap();
    let (_, clip) = tiny(dir.path());
    let labels = ["a cat", "a horse", "a rocket"];
    let photo = photos().join("horse.png");
    let got = clip.classify(&photo, &labels).unwrap();
    // Independent arithmetic in f64 from the embeddings.
    let img = clip.embed_image(&photo).unwrap();
    let logits: Vec<f64> = labels
        .iter()
        .map(|l| {
            let t = clip.embed_text(&format!("a photo of a {l}.")).unwrap();
            f64::from(clip.logit_scale())
                * img
                    .iter()
                    .zip(&t)
                    .map(|(a, b)| f64::from(a * b))
                    .sum::<f64>()
        })
        .collect();
    let m = logits.iter().cloned().fold(f64::MIN, f64::max);
    let z: f64 = logits.iter().map(|l| (l - m).exp()).sum();
    for p in &got {
        let i = labels.iter().position(|l| *l == p.label).unwrap();
        let want = ((logits[i] - m).exp() / z) as f32;
        assert!(
            (p.probability - want).abs() < 1e-5,
            "{}: {} vs {want}",
            p.label,
            p.probability
        );
    }
    assert!(got.windows(2).all(|w| w[0].probability >= w[1].probability));
    let a = clip.classifier(&labels, &Templates::single()).unwrap();
    let b = clip.classifier(&labels, &Templates::single()).unwrap();
    assert!(
        std::ptr::eq(a.zero_shot(), b.zero_shot()),
        "the classifier was built twice"
    );
    assert_eq!(a.labels(), labels);
}

/// A copy of the tiny model in `dir` whose tensor `name` starts with `value`.
fn poisoned(dir: &Path, name: &str, value: f32) -> PathBuf {
    dev_support::tiny_clip::write_poisoned(dir, name, value).unwrap()
}

#[test]
fn non_finite_weights_give_an_error_not_nan_scores() {
    let dir = tempfile::tempdir().unwrap();
    let photo = photos().join("horse.png");
    // The image tower: every image embedding is NaN.
    let bad = poisoned(dir.path(), "visual.proj", f32::NAN);
    let clip = Clip::load(bad.to_str().unwrap()).unwrap();
    let err = clip.embed_image(&photo).unwrap_err();
    assert!(
        matches!(err, Error::NonFinite { .. }) && err.to_string().contains("horse.png"),
        "{err}"
    );
    let err = clip.classify(&photo, &["a", "b"]).unwrap_err();
    assert!(err.to_string().contains("horse.png"), "{err}");
    for r in clip.embed_images([&photo, &photos().join("rocket.jpg")]) {
        assert!(matches!(r, Err(Error::NonFinite { .. })), "{r:?}");
    }
    // The text tower: a text's embedding is NaN, and the error quotes the text.
    let bad = poisoned(dir.path(), "text_projection", f32::INFINITY);
    let clip = Clip::load(bad.to_str().unwrap()).unwrap();
    let err = clip.embed_text("a dog on a beach").unwrap_err();
    assert!(
        matches!(err, Error::NonFinite { .. }) && err.to_string().contains("a dog on a beach"),
        "{err}"
    );
    assert!(clip.embed_texts(&["x", "y"]).is_err());
    assert!(clip.classify(&photo, &["a cat", "a dog"]).is_err());
    // The logit scale: the embeddings would be fine, every probability NaN ("NaN %"); the
    // weights are refused when loading, naming the tensor and the file.
    for value in [f32::NAN, f32::INFINITY, 200.0] {
        let bad = poisoned(dir.path(), "logit_scale", value);
        let err = Clip::load(bad.to_str().unwrap()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("logit_scale") && text.contains(bad.to_str().unwrap()),
            "{value}: {text}"
        );
    }
}

/// A FIFO or a device given as a picture or as the model is refused at once: it used to block
/// the caller for ever (a FIFO) or fill its memory (`/dev/zero`).
#[cfg(unix)]
#[test]
fn special_files_are_refused_without_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let (_, clip) = tiny(dir.path());
    let fifo = dir.path().join("photo.jpg");
    dev_support::mkfifo(&fifo);
    for p in [fifo.clone(), PathBuf::from("/dev/zero")] {
        let c = clip.clone();
        let q = p.clone();
        let text = dev_support::within_10s("embedding a special file", move || {
            c.embed_image(&q).unwrap_err().to_string()
        });
        assert!(
            text.contains(p.to_str().unwrap()) && text.contains("not a regular file"),
            "{text}"
        );
        let q = p.clone();
        let err = dev_support::within_10s("loading a special file", move || {
            Clip::load(q.to_str().unwrap()).unwrap_err().to_string()
        });
        assert!(
            err.contains(p.to_str().unwrap()) && err.contains("not a regular file"),
            "{err}"
        );
    }
    // A batch: the FIFO fails alone.
    let c = clip.clone();
    let f = fifo.clone();
    let results = dev_support::within_10s("a batch with a FIFO", move || {
        let r = c.embed_images([&photos().join("horse.png"), &f]);
        (r[0].is_ok(), r[1].is_err())
    });
    assert_eq!(results, (true, true));
}

/// "No such file or directory (os error 2): No such file or directory (os error 2)": the cause
/// was in the message and again as the error's source.
#[test]
fn errors_show_their_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let (_, clip) = tiny(dir.path());
    let missing = dir.path().join("missing.png");
    let err = clip.embed_image(&missing).unwrap_err();
    dev_support::assert_cause_once(&err);
    let chain = dev_support::error_chain(&err);
    assert!(chain.contains("missing.png"), "{chain}");
    #[cfg(unix)]
    assert_eq!(chain.matches("(os error 2)").count(), 1, "{chain}");
    // The library's folder cannot be made: a file is in the way.
    std::fs::write(dir.path().join("file"), b"x").unwrap();
    let err = clip
        .open_library(dir.path().join("file/lib.sqlite"))
        .unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    dev_support::assert_cause_once(&err);
}

/// Each hit's score is the cosine of `text`'s and the picture's embeddings, within `tol`.
fn assert_scores_are_cosines(clip: &Clip, text: &str, hits: &[clip::SearchHit], tol: f32) {
    let q = clip.embed_text(text).unwrap();
    for h in hits {
        let v = clip.embed_image(&h.path).unwrap();
        let s: f32 = q.iter().zip(&v).map(|(a, b)| a * b).sum();
        let path = h.path.display();
        assert!((s - h.score).abs() < tol, "{path}: {s} vs {}", h.score);
    }
}

#[test]
fn library_options_and_progress_from_the_facade_alone() {
    use clip::store::{OpenOptions, Precision, SyncProgress};
    let dir = tempfile::tempdir().unwrap();
    let (_, clip) = tiny(dir.path());
    let db = dir.path().join("f16.sqlite");
    let options = OpenOptions::new().precision(Precision::F16);
    let mut lib = clip.open_library_with(&db, &options).unwrap();
    let mut calls = Vec::new();
    let mut sink = |p: &SyncProgress<'_>| calls.push((p.done, p.total));
    let report = lib
        .sync_with(photos(), &clip::SyncOptions::new(), &mut sink)
        .unwrap();
    let n = lib.len().unwrap();
    assert!(n > 0 && report.added == n, "{report:?}");
    // Called after the scan and after every committed batch, ending with all of them done.
    assert_eq!(calls.last(), Some(&(n, n)), "{calls:?}");
    // Stored in f16: each value within 2⁻¹¹ relative of the f32 embedding, so a dot product of
    // two unit vectors moves by at most about 2⁻¹¹ (tolerance 1e-3).
    let hits = lib.search_text("a photo of a horse", n).unwrap();
    assert_scores_are_cosines(&clip, "a photo of a horse", &hits, 1e-3);
    drop(lib);
    // Read-only: searching works; a folder with a new picture is refused, and nothing changes.
    let mut ro = clip
        .open_library_with(&db, &OpenOptions::new().read_only(true))
        .unwrap();
    assert_eq!(ro.search_text("a horse", 1).unwrap().len(), 1);
    let more = dir.path().join("more");
    std::fs::create_dir(&more).unwrap();
    std::fs::copy(photos().join("rocket.jpg"), more.join("rocket.jpg")).unwrap();
    let err = ro.sync(&more).unwrap_err();
    assert!(err.to_string().contains("read-only"), "{err}");
    assert_eq!(ro.len().unwrap(), n);
}

#[test]
fn library_sync_search_similar_remove_and_model_identity() {
    let dir = tempfile::tempdir().unwrap();
    let (_, clip) = tiny(dir.path());
    let db = dir.path().join("lib/photos.sqlite");
    let mut lib = clip.open_library(&db).unwrap();
    // A broken file among the photos fails alone and is reported.
    let folder = dir.path().join("photos");
    std::fs::create_dir(&folder).unwrap();
    let mut n = 0;
    for e in std::fs::read_dir(photos()).unwrap().flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "png" || x == "jpg") {
            std::fs::copy(&p, folder.join(p.file_name().unwrap())).unwrap();
            n += 1;
        }
    }
    std::fs::write(folder.join("broken.jpg"), b"\xFF\xD8\xFFnot really").unwrap();
    let report = lib.sync(&folder).unwrap();
    assert_eq!((report.added, lib.len().unwrap()), (n, n), "{report:?}");
    assert_eq!(report.failed.len(), 1);
    assert!(report.failed[0].path.ends_with("broken.jpg"));
    // Second sync: nothing new.
    assert_eq!(lib.sync(&folder).unwrap().added, 0);

    let hits = lib.search_text("a photo of a horse", 3).unwrap();
    assert_eq!(hits.len(), 3);
    assert_scores_are_cosines(&clip, "a photo of a horse", &hits, 1e-5);
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    let by_image = lib.search_image(&hits[0].path, 1).unwrap();
    assert_eq!(by_image[0].id, hits[0].id);
    let sim = lib.similar(hits[0].id, 100).unwrap();
    assert_eq!(sim.len(), n - 1);
    assert!(sim.iter().all(|h| h.id != hits[0].id));
    assert!(lib.remove(hits[0].id).unwrap());
    assert_eq!(lib.len().unwrap(), n - 1);
    drop(lib);

    // Other weights, even under the same file name and size, cannot open this library.
    let other_dir = tempfile::tempdir().unwrap();
    let (other_path, _) = tiny(other_dir.path());
    let mut bytes = std::fs::read(&other_path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1; // one bit of the last tensor's last value
    std::fs::write(&other_path, &bytes).unwrap();
    let other = Clip::load(other_path.to_str().unwrap()).unwrap();
    assert_ne!(other.model_id(), clip.model_id());
    let err = other.open_library(&db).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(clip.model_id()) || msg.contains(other.model_id()),
        "{msg}"
    );
    // The library is untouched by the refused open.
    assert_eq!(clip.open_library(&db).unwrap().len().unwrap(), n - 1);
}
