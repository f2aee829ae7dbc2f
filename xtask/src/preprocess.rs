//! `cargo xtask preprocess IMAGE [--size N] [--exif] --out FILE.npy`: the OpenAI CLIP input tensor
//! of one image as a little-endian float32 `.npy` of shape `[1, 3, N, N]`, to diff against Python.

use std::path::PathBuf;

use anyhow::Context;
use clip_preprocess::{PreprocessConfig, Preprocessor};
use dev_support::Npy;

/// Arguments of `cargo xtask preprocess`.
#[derive(clap::Args)]
pub struct Args {
    /// The image file (JPEG, PNG, GIF, WebP, BMP, TIFF).
    pub image: PathBuf,
    /// Output side length (224 for ViT-B/32, 448 for RN50x64; at most 4096).
    #[arg(long, default_value_t = 224,
          value_parser = clap::value_parser!(u32).range(1..=crate::args::MAX_IMAGE_SIZE))]
    pub size: u32,
    /// Apply the EXIF orientation first (the OpenAI reference ignores it).
    #[arg(long)]
    pub exif: bool,
    /// Where to write the `.npy` file.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut cfg = PreprocessConfig::openai(args.size);
    cfg.apply_exif = args.exif;
    let pre = Preprocessor::new(cfg)?;
    let t = pre.preprocess_path(&args.image)?;
    let shape = vec![1, t.channels, t.height, t.width];
    Npy::f32(shape.clone(), t.data)
        .write(&args.out)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "{} -> {} {:?} float32",
        args.image.display(),
        args.out.display(),
        shape
    );
    Ok(())
}
