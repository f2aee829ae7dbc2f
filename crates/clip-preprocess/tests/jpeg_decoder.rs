//! JPEG decoding is part of exactness. Pillow decodes with libjpeg-turbo (islow IDCT, fancy
//! upsampling); this crate uses libjpeg-turbo's decoder as bundled in mozjpeg.
//!
//! On all ImageNet sample photos: our decoded bytes must hash identically to Pillow's
//! `Image.tobytes()` (hashes in `fixtures/imagenet_decode.tsv`, made by
//! `tools/reference/preprocess.py`). The pure-Rust decoder of the `image` crate (zune-jpeg) is
//! measured against the same pixels and its differences are printed, to document why it is not
//! used.

use std::path::Path;

use clip_preprocess::{Mode, decode_bytes};
use sha2::{Digest, Sha256};

#[test]
fn libjpeg_turbo_decode_matches_pillow_on_imagenet_sample_and_zune_jpeg_is_measured() {
    let Some(shared) = dev_support::shared_data_or_skip(
        "libjpeg_turbo_decode_matches_pillow_on_imagenet_sample_and_zune_jpeg_is_measured",
    ) else {
        return;
    };
    let tsv = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/imagenet_decode.tsv"),
    )
    .unwrap();
    let mut mismatches = Vec::new();
    let (mut total, mut zune_differs, mut zune_max, mut zune_bytes, mut all_bytes) =
        (0usize, 0usize, 0u8, 0usize, 0usize);
    for line in tsv.lines().filter(|l| !l.starts_with('#')) {
        let f: Vec<&str> = line.split('\t').collect();
        let (file, mode, w, h, sha) = (f[0], f[1], f[2], f[3], f[4]);
        let bytes = std::fs::read(shared.join("imagenet-sample").join(file)).unwrap();
        let ours = decode_bytes(&bytes, None).unwrap();
        let our_mode = match ours.mode {
            Mode::L => "L",
            Mode::Rgb => "RGB",
            Mode::Cmyk => "CMYK",
            other => panic!("{file}: unexpected mode {other:?}"),
        };
        let digest: String = Sha256::digest(&ours.bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if our_mode != mode
            || ours.width.to_string() != w
            || ours.height.to_string() != h
            || digest != sha
        {
            mismatches.push(file.to_string());
        }
        // zune-jpeg through the `image` crate, in the same layout.
        let z = image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg).unwrap();
        let zb = match ours.mode {
            Mode::L => z.into_luma8().into_raw(),
            _ => z.into_rgb8().into_raw(),
        };
        assert_eq!(zb.len(), ours.bytes.len(), "{file}");
        let (n, m) = zb
            .iter()
            .zip(&ours.bytes)
            .map(|(a, b)| a.abs_diff(*b))
            .fold((0usize, 0u8), |(n, m), d| (n + (d > 0) as usize, m.max(d)));
        zune_differs += (n > 0) as usize;
        zune_max = zune_max.max(m);
        zune_bytes += n;
        all_bytes += zb.len();
        total += 1;
    }
    println!(
        "libjpeg-turbo (mozjpeg) vs Pillow: {} of {total} images differ",
        mismatches.len()
    );
    println!(
        "zune-jpeg (image crate) vs Pillow: {zune_differs} of {total} images differ, \
         {zune_bytes} of {all_bytes} samples ({:.2} %), max |diff| {zune_max} levels",
        100.0 * zune_bytes as f64 / all_bytes as f64
    );
    assert_eq!(total, 816, "expected the 816 ImageNet sample photos");
    assert!(
        mismatches.is_empty(),
        "decoded pixels differ from Pillow: {mismatches:?}"
    );
}
