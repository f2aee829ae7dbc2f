//! Classifier cache round trip and corruption handling; predictions ↔ summary recomputation.

use clip_eval::cache::{CacheKey, read_cache_file};
use clip_eval::report::{Machine, read_predictions, write_prediction};
use clip_eval::{
    Accumulator, CacheStatus, ClassifierCache, Counts, Error, Prediction, Skipped, Summary,
    Templates, Timing, recompute_counts,
};

fn encoder(calls: &mut usize) -> impl FnMut(&[String]) -> Result<Vec<Vec<f32>>, Error> + '_ {
    move |p: &[String]| {
        *calls += 1;
        Ok(p.iter()
            .map(|s| vec![s.len() as f32, 1.0, (s.len() % 3) as f32])
            .collect())
    }
}

#[test]
fn cache_round_trip_and_key_sensitivity() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ClassifierCache::new(dir.path().join("c"));
    let names = vec!["cat".to_string(), "dog".to_string(), "goldfish".to_string()];
    let t = Templates::openai80().unwrap();
    let mut calls = 0;
    let (a, s) = cache
        .get_or_build("m@1", &names, &t, 64, encoder(&mut calls))
        .unwrap();
    assert_eq!(s, CacheStatus::Built);
    assert_eq!(calls, 4); // 240 prompts in batches of 64
    let mut calls2 = 0;
    let (b, s) = cache
        .get_or_build("m@1", &names, &t, 64, encoder(&mut calls2))
        .unwrap();
    assert_eq!((s, calls2), (CacheStatus::Hit, 0));
    assert_eq!(a, b);
    // Another model id, name list or template set is another key.
    let k = CacheKey::new("m@1", &names, &t);
    assert_ne!(k.hex, CacheKey::new("m@2", &names, &t).hex);
    assert_ne!(k.hex, CacheKey::new("m@1", &names[..2], &t).hex);
    assert_ne!(
        k.hex,
        CacheKey::new("m@1", &names, &Templates::single()).hex
    );
    // Length-prefixing: moving a boundary between names changes the key.
    let ab = vec!["ab".to_string(), "c".to_string()];
    let a_bc = vec!["a".to_string(), "bc".to_string()];
    assert_ne!(
        CacheKey::new("m", &ab, &t).hex,
        CacheKey::new("m", &a_bc, &t).hex
    );
    assert_eq!(cache.load_expecting(&k, 3).unwrap(), Some(a.clone()));
    assert!(matches!(
        cache.load_expecting(&k, 512),
        Err(Error::Cache { .. })
    ));
    // A file read under the wrong key is rejected.
    let other = CacheKey::new("m@2", &names, &t);
    assert!(matches!(
        read_cache_file(&cache.path(&k), &other),
        Err(Error::Cache { .. })
    ));
}

#[test]
fn corrupt_cache_files_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ClassifierCache::new(dir.path());
    let names = vec!["x".to_string(), "yy".to_string()];
    let t = Templates::single();
    let mut calls = 0;
    cache
        .get_or_build("m", &names, &t, 8, encoder(&mut calls))
        .unwrap();
    let key = CacheKey::new("m", &names, &t);
    let path = cache.path(&key);
    let good = std::fs::read(&path).unwrap();
    let mut rejected = 0;
    // Every truncation and every single-byte change must load as Ok (identical) or Err.
    for cut in 0..good.len() {
        std::fs::write(&path, &good[..cut]).unwrap();
        assert!(
            matches!(cache.load(&key), Err(Error::Cache { .. })),
            "cut {cut}"
        );
        rejected += 1;
    }
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x20;
        std::fs::write(&path, &bad).unwrap();
        match cache.load(&key) {
            Err(Error::Cache { .. }) => rejected += 1,
            // A flip inside JSON whitespace or an equivalent escape can still be valid.
            Ok(Some(c)) => assert_eq!(c.classes(), names.as_slice()),
            other => panic!("byte {i}: {other:?}"),
        }
    }
    println!("{rejected} corrupt variants rejected");
    std::fs::write(&path, &good).unwrap();
    assert!(cache.load(&key).unwrap().is_some());
}

fn prediction(image: &str, target: usize, top5: [usize; 5]) -> Prediction {
    Prediction {
        image: image.into(),
        target,
        top5: top5.to_vec(),
        scores: vec![0.5, 0.4, 0.3, 0.2, 0.1],
    }
}

#[test]
fn summary_counts_recompute_from_predictions() {
    let dir = tempfile::tempdir().unwrap();
    let preds = vec![
        prediction("a.JPEG", 3, [3, 1, 2, 0, 4]),
        prediction("b.JPEG", 3, [1, 2, 3, 0, 4]),
        prediction("c.JPEG", 5, [0, 1, 2, 3, 4]),
    ];
    let path = dir.path().join("predictions.jsonl");
    let mut f = std::fs::File::create(&path).unwrap();
    let mut acc = Accumulator::new(6, 5);
    for p in &preds {
        write_prediction(&mut f, p).unwrap();
        acc.add_ranked(p.target, &p.top5).unwrap();
    }
    drop(f);
    assert_eq!(read_predictions(&path).unwrap(), preds);
    let summary = Summary {
        model: "tiny".into(),
        weights_sha256: "00".into(),
        split: "val".into(),
        counts: Counts::from_accumulator(&acc),
        mean_per_class_recall: acc.mean_per_class_recall(),
        class_names: "openai".into(),
        templates: "single".into(),
        n_templates: 1,
        timing: Timing::default(),
        machine: Machine::detect("cpu"),
        skipped: vec![Skipped {
            image: "bad.JPEG".into(),
            error: "not a JPEG".into(),
        }],
    };
    // Hand count: top-1 right for a only; top-5 right for a and b.
    assert_eq!(
        (
            summary.counts.n,
            summary.counts.correct_top1,
            summary.counts.correct_top5
        ),
        (3, 1, 2)
    );
    let spath = dir.path().join("summary.json");
    summary.write(&spath).unwrap();
    let back = Summary::read(&spath).unwrap();
    assert_eq!(back, summary);
    assert_eq!(recompute_counts(&path).unwrap(), back.counts);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&spath).unwrap()).unwrap();
    assert_eq!(json["correct_top1"], 1);
    assert_eq!(json["top5_accuracy"].as_f64(), Some(2.0 / 3.0));

    // A bad line is reported with its number.
    std::fs::write(
        &path,
        "{\"image\":\"a\",\"target\":1,\"top5\":[1],\"scores\":[0.1]}\n\nnot json\n",
    )
    .unwrap();
    match read_predictions(&path) {
        Err(Error::JsonLine { line: 3, .. }) => {}
        other => panic!("{other:?}"),
    }
}
