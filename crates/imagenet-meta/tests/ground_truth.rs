//! Ground-truth parsing errors name the line.

use imagenet_meta::{Error, GroundTruth, Meta, Synset};

fn leaf(id: u32, wnid: &str) -> Synset {
    Synset {
        ilsvrc2012_id: id,
        wnid: wnid.into(),
        words: format!("word{id}, other"),
        gloss: String::new(),
        num_children: 0,
        children: vec![],
        wordnet_height: 0,
        num_train_images: 1,
    }
}

fn tiny_meta() -> Meta {
    let mut root = leaf(3, "n00000001");
    root.num_children = 2;
    root.children = vec![1, 2];
    Meta::from_synsets(vec![leaf(1, "n00000009"), leaf(2, "n00000005"), root]).unwrap()
}

#[test]
fn parses_ids_and_maps_them() {
    let gt = GroundTruth::parse("1\n2\n2\n\n", "gt.txt").unwrap();
    assert_eq!(gt.ids(), &[1, 2, 2]);
    // Sorted wnids: n00000005 (id 2) = class 0, n00000009 (id 1) = class 1.
    assert_eq!(gt.class_indices(&tiny_meta()).unwrap(), vec![1, 0, 0]);
    assert_eq!(tiny_meta().devkit_class_names(), vec!["word2", "word1"]);
}

#[test]
fn bad_lines_are_reported_with_their_number() {
    for (text, line) in [
        ("1\nx\n", 2),
        ("1\n2\n\n3\n", 3),
        ("0\n", 1),
        ("-4\n", 1),
        ("1\n99999999999\n", 2),
    ] {
        match GroundTruth::parse(text, "gt.txt") {
            Err(Error::GroundTruth { line: l, .. }) => assert_eq!(l, line, "{text:?}"),
            other => panic!("{text:?}: {other:?}"),
        }
    }
    let gt = GroundTruth::parse("1\n3\n", "gt.txt").unwrap();
    match gt.class_indices(&tiny_meta()) {
        Err(Error::GroundTruth {
            line: 2, message, ..
        }) => assert!(message.contains("devkit id 3")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn image_names_round_trip() {
    assert_eq!(
        GroundTruth::image_file_name(1),
        "ILSVRC2012_val_00000001.JPEG"
    );
    assert_eq!(
        GroundTruth::image_number("ILSVRC2012_val_00050000.JPEG"),
        Some(50000)
    );
    assert_eq!(
        GroundTruth::image_number("ILSVRC2012_val_0000001.JPEG"),
        None
    );
    assert_eq!(GroundTruth::image_number("n01440764_tench.JPEG"), None);
}

#[test]
fn inconsistent_synsets_are_rejected() {
    let mut root = leaf(3, "n3");
    root.num_children = 1;
    root.children = vec![7];
    assert!(matches!(
        Meta::from_synsets(vec![leaf(1, "n1"), root]),
        Err(Error::Inconsistent(_))
    ));
    assert!(matches!(
        Meta::from_synsets(vec![leaf(1, "n1"), leaf(1, "n2")]),
        Err(Error::Inconsistent(_))
    ));
    assert!(matches!(
        Meta::from_synsets(vec![leaf(1, "n1"), leaf(2, "n1")]),
        Err(Error::Inconsistent(_))
    ));
}

/// A FIFO or a device given as `--meta` or `--ground-truth` is refused at once (it blocked the
/// evaluation, or filled its memory); a missing file says its cause once.
#[cfg(unix)]
#[test]
fn special_and_missing_files_are_clear_errors() {
    use imagenet_meta::mat::MatFile;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("meta.mat");
    dev_support::mkfifo(&fifo);
    for p in [fifo, std::path::PathBuf::from("/dev/zero")] {
        let q = p.clone();
        let (a, b) = dev_support::within_10s(&format!("reading {}", p.display()), move || {
            let a = MatFile::open(&q).err().map(|e| e.to_string());
            let b = GroundTruth::from_file(&q).err().map(|e| e.to_string());
            (a, b)
        });
        for e in [a.unwrap(), b.unwrap()] {
            assert!(e.contains("not a regular file"), "{e}");
        }
    }
    let e = GroundTruth::from_file(dir.path().join("missing.txt")).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e:?}");
    dev_support::assert_cause_once(&e);
}
