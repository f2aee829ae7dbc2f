//! `cargo xtask meta-to-json --meta meta.mat --out labels.json`: the devkit synsets as JSON.
//!
//! Schema (see `imagenet_meta::LabelRecord`): a JSON array with one object per synset in
//! `meta.mat` order, `{"id", "wnid", "words", "gloss", "num_children", "class_index"}`;
//! `class_index` is the 0-based class index (leaves in sorted-wnid order) or `null`.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// Arguments of `cargo xtask meta-to-json`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The devkit's `meta.mat` (default: the shared data folder's copy).
    #[arg(long)]
    pub meta: Option<PathBuf>,
    /// Where to write the JSON.
    #[arg(long, default_value = "labels.json")]
    pub out: PathBuf,
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<()> {
    let meta_path = match args.meta {
        Some(p) => p,
        None => dev_support::shared_data()
            .context("no --meta given")?
            .join("imagenet-devkit/meta.mat"),
    };
    let n = write_labels(&meta_path, &args.out)?;
    println!(
        "wrote {} synsets ({} classes) to {}",
        n.0,
        n.1,
        args.out.display()
    );
    Ok(())
}

/// Converts `meta` to `out`; returns (synsets, classes).
pub fn write_labels(meta: &Path, out: &Path) -> anyhow::Result<(usize, usize)> {
    let m = imagenet_meta::Meta::from_mat(meta)
        .with_context(|| format!("reading {}", meta.display()))?;
    let records = m.label_records();
    let json = serde_json::to_string_pretty(&records)?;
    std::fs::write(out, json + "\n").with_context(|| format!("writing {}", out.display()))?;
    Ok((records.len(), m.num_classes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use imagenet_meta::LabelRecord;

    #[test]
    fn labels_json_of_the_real_devkit() {
        let Some(dir) = dev_support::shared_data_or_skip("labels_json_of_the_real_devkit") else {
            return;
        };
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("labels.json");
        let meta = dir.join("imagenet-devkit/meta.mat");
        assert_eq!(write_labels(&meta, &out).unwrap(), (1860, 1000));
        let text = std::fs::read_to_string(&out).unwrap();
        let records: Vec<LabelRecord> = serde_json::from_str(&text).unwrap();
        assert_eq!(records.len(), 1860);
        // Devkit id 1 is kit fox; class index from the sorted wnid list.
        let wnids = std::fs::read_to_string(dir.join("clip/wnids_sorted.txt")).unwrap();
        let kit_fox = wnids.lines().position(|w| w == "n02119789");
        assert_eq!(records[0].wnid, "n02119789");
        assert_eq!(records[0].class_index, kit_fox);
        assert_eq!(records[1000].class_index, None);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(v[1000]["class_index"].is_null());
        let keys: Vec<&String> = v[0].as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 6);
    }
}
