//! The real devkit `meta.mat` must parse to exactly what scipy's `loadmat` gives
//! (fixture `meta_scipy.json.gz` made by `tools/reference/imagenet_meta.py`).

use std::io::Read;
use std::path::PathBuf;

use imagenet_meta::{GroundTruth, LabelRecord, Meta, Synset};
use serde::Deserialize;

#[derive(Deserialize)]
struct ScipySynset {
    id: u32,
    wnid: String,
    words: String,
    gloss: String,
    num_children: u32,
    children: Vec<u32>,
    wordnet_height: u32,
    num_train_images: u32,
    class_index: Option<usize>,
}

fn scipy_records() -> Vec<ScipySynset> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/meta_scipy.json.gz");
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn meta() -> Option<Meta> {
    let dir = dev_support::shared_data_or_skip("meta_real")?;
    Some(Meta::from_mat(dir.join("imagenet-devkit/meta.mat")).unwrap())
}

#[test]
fn every_synset_equals_scipy() {
    let Some(meta) = meta() else { return };
    let want = scipy_records();
    assert_eq!(meta.synsets().len(), 1860);
    assert_eq!(want.len(), 1860);
    for (got, w) in meta.synsets().iter().zip(&want) {
        let w_syn = Synset {
            ilsvrc2012_id: w.id,
            wnid: w.wnid.clone(),
            words: w.words.clone(),
            gloss: w.gloss.clone(),
            num_children: w.num_children,
            children: w.children.clone(),
            wordnet_height: w.wordnet_height,
            num_train_images: w.num_train_images,
        };
        assert_eq!(got, &w_syn);
    }
    // The labels.json records, class index included, equal the scipy-side computation.
    let records = meta.label_records();
    for (r, w) in records.iter().zip(&want) {
        let expect = LabelRecord {
            id: w.id,
            wnid: w.wnid.clone(),
            words: w.words.clone(),
            gloss: w.gloss.clone(),
            num_children: w.num_children,
            class_index: w.class_index,
        };
        assert_eq!(r, &expect);
    }
}

#[test]
fn class_numbering_matches_independent_facts() {
    let Some(meta) = meta() else { return };
    let dir = dev_support::shared_data_or_skip("meta_real").unwrap();
    assert_eq!(meta.num_classes(), 1000);
    // ../shared/data/clip/wnids_sorted.txt: line i = class index i.
    let wnids = std::fs::read_to_string(dir.join("clip/wnids_sorted.txt")).unwrap();
    let wnids: Vec<&str> = wnids.lines().collect();
    assert_eq!(meta.wnids(), wnids);
    assert_eq!(meta.class(0).unwrap().wnid, "n01440764");
    assert_eq!(meta.class(0).unwrap().first_word(), "tench");
    assert_eq!(meta.synset_by_id(1).unwrap().wnid, "n02119789"); // kit fox
    assert_eq!(meta.class_index_of_id(490), Some(65));
    assert_eq!(meta.class(65).unwrap().wnid, "n01751748"); // sea snake
    assert_eq!(meta.class_index_of_id(1001), None); // entity: not a class
    assert_eq!(meta.class_index_of_wnid("n15075141"), Some(999));
    let names = meta.devkit_class_names();
    assert_eq!(names.len(), 1000);
    assert_eq!(names[0], "tench");
}

#[test]
fn ground_truth_reads_and_maps_to_classes() {
    let Some(meta) = meta() else { return };
    let dir = dev_support::shared_data_or_skip("meta_real").unwrap();
    let gt =
        GroundTruth::from_file(dir.join("imagenet-devkit/ILSVRC2012_validation_ground_truth.txt"))
            .unwrap();
    assert_eq!(gt.len(), 50_000);
    assert_eq!(gt.id_of_image(1), Some(490));
    let classes = gt.class_indices(&meta).unwrap();
    assert_eq!(classes[0], 65);
    // ILSVRC2012 validation has 50 images per class.
    let mut counts = vec![0usize; 1000];
    for c in classes {
        counts[c] += 1;
    }
    assert!(counts.iter().all(|&n| n == 50));
}
