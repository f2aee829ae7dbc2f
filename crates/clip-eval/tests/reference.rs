//! clip-eval against independent references: scikit-learn metrics and OpenAI's zero-shot
//! notebook code in torch (fixtures from `tools/reference/clip_eval.py`).

use std::collections::HashMap;
use std::path::PathBuf;

use clip_eval::{Accumulator, Classifier, Error, Templates, ZeroShot, build_classifier};
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

#[test]
fn metrics_match_scikit_learn() {
    let m = fixture("metrics.json");
    let c = m["n_classes"].as_u64().unwrap() as usize;
    let targets: Vec<usize> = serde_json::from_value(m["targets"].clone()).unwrap();
    let scores = f32s(&m["scores"]);
    // Feed half row by row and half as a batch into a second accumulator, then merge.
    let half = targets.len() / 2;
    let mut acc = Accumulator::new(c, 5);
    for (i, &t) in targets[..half].iter().enumerate() {
        acc.add_scores(t, &scores[i * c..(i + 1) * c]).unwrap();
    }
    let mut rest = Accumulator::new(c, 5);
    rest.add_score_batch(&targets[half..], &scores[half * c..])
        .unwrap();
    acc.merge(&rest).unwrap();
    assert_eq!(acc.len(), targets.len() as u64);

    for k in [1usize, 2, 5] {
        let want = m["top_k_accuracy"][k.to_string()].as_f64().unwrap();
        let got = acc.top_k_accuracy(k).unwrap();
        println!("top-{k}: ours {got}, sklearn {want}");
        // Both are count / 300: exact up to the last bit of the division.
        assert!((got - want).abs() < 1e-12, "top-{k}: {got} vs {want}");
        let want_c = m["correct_top_k"][k.to_string()].as_u64().unwrap();
        assert_eq!(acc.correct_top_k(k), Some(want_c));
        let per: Vec<Option<f64>> =
            serde_json::from_value(m["per_class_top_k"][k.to_string()].clone()).unwrap();
        let got_per = acc.per_class_accuracy(k);
        assert_eq!(got_per.len(), per.len());
        for (cls, (g, w)) in got_per.iter().zip(&per).enumerate() {
            match (g, w) {
                (Some(g), Some(w)) => {
                    assert!((g - w).abs() < 1e-12, "class {cls} top-{k}: {g} vs {w}")
                }
                (None, None) => {}
                _ => panic!("class {cls} top-{k}: {g:?} vs {w:?}"),
            }
        }
    }
    let bal = m["balanced_accuracy"].as_f64().unwrap();
    let got = acc.mean_per_class_recall().unwrap();
    println!("mean per-class recall: ours {got}, sklearn balanced_accuracy_score {bal}");
    assert!((got - bal).abs() < 1e-12);
    let counts: Vec<u64> = serde_json::from_value(m["class_counts"].clone()).unwrap();
    assert_eq!(acc.class_counts(), counts.as_slice());
    let confused: Vec<clip_eval::ConfusedPair> =
        serde_json::from_value(m["most_confused"].clone()).unwrap();
    assert_eq!(acc.most_confused(10), confused);
    assert!(acc.top_k_accuracy(6).is_none());
}

#[test]
fn hand_worked_metrics() {
    // 3 classes, 4 images. Ranked lists chosen by hand:
    //   target 0, ranked [0, 1, 2] -> top1 right
    //   target 0, ranked [2, 0, 1] -> top1 wrong (0 confused as 2), top2 right
    //   target 1, ranked [2, 1, 0] -> top1 wrong (1 as 2), top2 right
    //   target 1, ranked [0, 2, 1] -> wrong until top3 (1 as 0)
    let mut acc = Accumulator::new(3, 3);
    for (t, r) in [
        (0, [0, 1, 2]),
        (0, [2, 0, 1]),
        (1, [2, 1, 0]),
        (1, [0, 2, 1]),
    ] {
        acc.add_ranked(t, &r).unwrap();
    }
    assert_eq!(acc.correct_top_k(1), Some(1));
    assert_eq!(acc.correct_top_k(2), Some(3));
    assert_eq!(acc.correct_top_k(3), Some(4));
    assert_eq!(acc.per_class_accuracy(1), vec![Some(0.5), Some(0.0), None]);
    assert_eq!(acc.per_class_accuracy(2), vec![Some(1.0), Some(0.5), None]);
    assert_eq!(acc.mean_per_class_recall(), Some(0.25));
    let pairs: Vec<(usize, usize, u64)> = acc
        .most_confused(5)
        .iter()
        .map(|p| (p.target, p.predicted, p.count))
        .collect();
    assert_eq!(pairs, vec![(0, 2, 1), (1, 0, 1), (1, 2, 1)]);
    assert!(matches!(
        acc.add_ranked(3, &[0]),
        Err(Error::ClassIndex { what: "target", .. })
    ));
    assert!(matches!(
        acc.add_ranked(0, &[5]),
        Err(Error::ClassIndex {
            what: "prediction",
            ..
        })
    ));
    assert!(matches!(
        acc.add_scores(0, &[1.0]),
        Err(Error::Shape { .. })
    ));
    assert!(Accumulator::new(3, 2).merge(&acc).is_err());
}

fn table_encoder(z: &Value) -> impl FnMut(&[String]) -> Result<Vec<Vec<f32>>, Error> + use<> {
    let dim = z["dim"].as_u64().unwrap() as usize;
    let prompts: Vec<String> = serde_json::from_value(z["prompts"].clone()).unwrap();
    let table = f32s(&z["prompt_embeddings"]);
    let map: HashMap<String, Vec<f32>> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| (p.clone(), table[i * dim..(i + 1) * dim].to_vec()))
        .collect();
    move |batch: &[String]| {
        batch
            .iter()
            .map(|p| {
                map.get(p)
                    .cloned()
                    .ok_or_else(|| Error::Encoder(format!("unknown prompt {p}")))
            })
            .collect()
    }
}

#[test]
fn zero_shot_matches_openai_notebook_in_torch() {
    let z = fixture("zeroshot.json");
    let names: Vec<String> = serde_json::from_value(z["classnames"].clone()).unwrap();
    let templates = Templates::new(
        "test",
        serde_json::from_value(z["templates"].clone()).unwrap(),
    )
    .unwrap();
    let want_w = f32s(&z["weights"]);
    // Batch sizes that split classes across calls must give the same classifier.
    let mut first: Option<Classifier> = None;
    for batch in [1, 2, 3, 4, 100] {
        let clf = build_classifier(&names, &templates, batch, table_encoder(&z)).unwrap();
        let max = dev_support::max_abs_diff(clf.weights(), &want_w).unwrap();
        println!("batch {batch}: max |weight - torch| = {max:e}");
        // torch accumulates in float32, we in float64: a few float32 ulps (6e-8) of unit-norm values.
        assert!(max < 2e-7, "batch {batch}: {max}");
        if let Some(f) = &first {
            assert_eq!(f, &clf);
        }
        first = Some(clf);
    }
    let clf = first.unwrap();
    let images = f32s(&z["image_embeddings"]);
    let cos = clf.cosine_scores(&images).unwrap();
    let max_cos = dev_support::max_abs_diff(&cos, &f32s(&z["cosine"])).unwrap();
    let best2 = clf.top_k_cosine(&images, 2).unwrap();
    assert_eq!(best2.len(), 4);
    for (i, (idx, sc)) in best2.iter().enumerate() {
        let row = &cos[i * names.len()..(i + 1) * names.len()];
        let mut sorted = row.to_vec();
        sorted.sort_by(|a, b| b.partial_cmp(a).unwrap());
        assert_eq!(sc, &sorted[..2]);
        assert_eq!(row[idx[0]], sorted[0]);
    }
    let probs = clf.probabilities(&images, 100.0).unwrap();
    let max_p = dev_support::max_abs_diff(&probs, &f32s(&z["probs"])).unwrap();
    println!("max |cosine - torch| = {max_cos:e}, max |prob - torch| = {max_p:e}");
    assert!(max_cos < 5e-7);
    // The logit scale of 100 multiplies cosine rounding (~1e-7) into the exponent.
    assert!(max_p < 2e-5);
    for row in probs.chunks(names.len()) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }

    // ZeroShot gives the same probabilities, sorted.
    let zs = ZeroShot::new(&names, &templates, table_encoder(&z)).unwrap();
    let ranked = zs.classify(&images[..16]).unwrap();
    let row0 = &probs[..names.len()];
    let best = clip_eval::top_k(row0, 1)[0];
    assert_eq!(ranked[0].0, names[best]);
    assert!((ranked[0].1 - row0[best]).abs() < 1e-7);
    assert_eq!(ranked.len(), names.len());
    assert!(ranked.windows(2).all(|w| w[0].1 >= w[1].1));
    assert!(zs.classify(&images[..15]).is_err());
}

#[test]
fn encoder_misbehaviour_is_a_typed_error() {
    let names = vec!["a".to_string(), "b".to_string()];
    let t = Templates::single();
    let wrong_count = |p: &[String]| Ok::<_, Error>(vec![vec![1.0]; p.len() + 1]);
    assert!(matches!(
        build_classifier(&names, &t, 8, wrong_count),
        Err(Error::Encoder(_))
    ));
    let mut calls = 0;
    let ragged = |p: &[String]| {
        calls += 1;
        Ok::<_, Error>(vec![vec![1.0; calls]; p.len()])
    };
    assert!(matches!(
        build_classifier(&names, &t, 1, ragged),
        Err(Error::Encoder(_))
    ));
    let zero = |p: &[String]| Ok::<_, Error>(vec![vec![0.0, 0.0]; p.len()]);
    assert!(matches!(
        build_classifier(&names, &t, 8, zero),
        Err(Error::Encoder(_))
    ));
    let nan = |p: &[String]| Ok::<_, Error>(vec![vec![f32::NAN, 1.0]; p.len()]);
    assert!(matches!(
        build_classifier(&names, &t, 8, nan),
        Err(Error::Encoder(_))
    ));
    // The encoder's own error passes through unchanged.
    let failing = |_: &[String]| Err::<Vec<Vec<f32>>, _>(Error::Encoder("boom".into()));
    match build_classifier(&names, &t, 8, failing) {
        Err(Error::Encoder(m)) => assert_eq!(m, "boom"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        build_classifier(&[], &t, 8, zero),
        Err(Error::ClassNames(_))
    ));
}
