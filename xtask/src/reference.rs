//! The reference Python environment (`tools/reference/setup-venv.sh`) used by the commands that
//! compare against PyTorch / open_clip.

use std::path::PathBuf;

use anyhow::{Context, bail};

/// The reference venv's Python: `given`, else `$CLIP_REF_VENV/bin/python`, else
/// `~/.cache/clip-rs/reference-venv/bin/python`; an error says how to create it when missing.
pub fn python(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let p = match given {
        Some(p) => p,
        None => match std::env::var_os("CLIP_REF_VENV") {
            Some(v) => PathBuf::from(v).join("bin/python"),
            None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?)
                .join(".cache/clip-rs/reference-venv/bin/python"),
        },
    };
    if !p.exists() {
        bail!(
            "reference Python not found at {}: run tools/reference/setup-venv.sh or pass --python",
            p.display()
        );
    }
    Ok(p)
}
