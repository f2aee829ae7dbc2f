//! Damaged weights and special files: non-finite embeddings or scales are errors, not NaN
//! probabilities; a FIFO as templates file is refused at once; a failed cache write leaves no
//! temporary file.

use clip_eval::{CacheKey, Classifier, ClassifierCache, Error, ScoreFunction, Templates, ZeroShot};

fn classifier() -> Classifier {
    Classifier::new(
        2,
        vec!["red".into(), "blue".into()],
        vec![1.0, 0.0, 0.0, 1.0],
    )
    .unwrap()
}

#[test]
fn non_finite_embeddings_and_scales_are_errors_naming_them() {
    let zs = ZeroShot::from_classifier(classifier());
    let ranked = zs.classify(&[0.8, 0.6]).unwrap();
    assert_eq!(ranked[0].0, "red");

    for bad in [f32::NAN, f32::INFINITY] {
        match zs.classify(&[bad, 0.6]) {
            Err(Error::NonFinite { what, .. }) => assert_eq!(what, "image embedding #0"),
            other => panic!("{bad} in the embedding: {other:?}"),
        }
        // The second image of a batch is named.
        match classifier().cosine_scores(&[1.0, 0.0, 0.0, bad]) {
            Err(Error::NonFinite { what, .. }) => assert_eq!(what, "image embedding #1"),
            other => panic!("{other:?}"),
        }
        // A damaged logit scale gave "NaN %" for every label.
        let zs = ZeroShot::from_classifier(classifier()).with_logit_scale(bad);
        match zs.classify(&[0.8, 0.6]) {
            Err(e @ Error::NonFinite { .. }) => {
                assert!(e.to_string().starts_with("logit scale holds"), "{e}")
            }
            other => panic!("logit scale {bad}: {other:?}"),
        }
        let sig = ScoreFunction::Sigmoid {
            scale: 10.0,
            bias: bad,
        };
        assert!(matches!(
            classifier().probabilities_with(&[0.8, 0.6], &sig),
            Err(Error::NonFinite { .. })
        ));
        assert!(matches!(
            classifier().probabilities(&[0.8, 0.6], bad),
            Err(Error::NonFinite { .. })
        ));
    }
    // A huge but finite scale still gives finite probabilities (cosines are at most 1).
    let zs = ZeroShot::from_classifier(classifier()).with_logit_scale(f32::MAX);
    let ranked = zs.classify(&[0.8, -0.6]).unwrap();
    assert_eq!((ranked[0].0.as_str(), ranked[0].1), ("red", 1.0));
}

#[cfg(unix)]
#[test]
fn a_fifo_as_templates_file_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("templates.txt");
    dev_support::mkfifo(&fifo);
    let f = fifo.clone();
    let r = dev_support::within_10s("reading a FIFO as templates", move || {
        Templates::from_file(&f)
    });
    match r {
        Err(Error::File(safe_file::Error::NotRegular { path, .. })) => assert_eq!(path, fifo),
        other => panic!("{other:?}"),
    }
    // `--templates FILE` goes through the same reader.
    let e = Templates::from_choice(fifo.to_str().unwrap()).unwrap_err();
    assert!(e.to_string().contains("not a regular file"), "{e}");
}

/// A missing file says its cause once (it was in the message and again as the source).
#[test]
fn a_missing_templates_file_says_its_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let e = Templates::from_file(dir.path().join("missing.txt")).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e:?}");
    dev_support::assert_cause_once(&e);
}

#[test]
fn a_failed_cache_write_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ClassifierCache::new(dir.path());
    let key = CacheKey::new("m", &["red".into(), "blue".into()], &Templates::single());
    // The cache file's place is taken by a folder that is not empty: the final rename fails.
    let target = cache.path(&key);
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("keep"), b"x").unwrap();
    assert!(cache.store(&key, &classifier()).is_err());
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, [target.file_name().unwrap().to_string_lossy()]);
    // Once the place is free, the same store works and reads back.
    std::fs::remove_dir_all(&target).unwrap();
    cache.store(&key, &classifier()).unwrap();
    assert_eq!(cache.load(&key).unwrap(), Some(classifier()));
}
