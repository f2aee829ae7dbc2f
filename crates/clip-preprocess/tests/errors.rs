//! Bad input gives a typed error naming the file and the cause, never a panic; batches keep
//! their order and report errors per item.

use std::path::{Path, PathBuf};

use clip_preprocess::{Error, PreprocessConfig, Preprocessor};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn tmp_dir(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("clip-preprocess-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn pre() -> Preprocessor {
    Preprocessor::new(PreprocessConfig::openai(224)).unwrap()
}

/// Asserts the message names the file and returns it.
fn message_names(err: &Error, path: &Path) -> String {
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "message does not name {}: {msg}",
        path.display()
    );
    msg
}

#[test]
fn zero_byte_file() {
    let d = tmp_dir("zero");
    let p = d.join("empty.jpg");
    std::fs::write(&p, b"").unwrap();
    let e = pre().preprocess_path(&p).unwrap_err();
    assert!(matches!(e, Error::Empty { .. }), "{e:?}");
    assert!(message_names(&e, &p).contains("empty"));
}

#[test]
fn truncated_jpeg() {
    let bytes = std::fs::read(fixture("photos/rocket.jpg")).unwrap();
    let d = tmp_dir("trunc");
    for keep in [bytes.len() / 2, bytes.len() - 2, 700] {
        let p = d.join(format!("rocket_{keep}.jpg"));
        std::fs::write(&p, &bytes[..keep]).unwrap();
        let e = pre().preprocess_path(&p).unwrap_err();
        assert!(
            matches!(e, Error::Truncated { format: "JPEG", .. }),
            "{keep}: {e:?}"
        );
        assert!(message_names(&e, &p).contains("truncated"));
    }
}

#[test]
fn corrupt_and_truncated_png() {
    let bytes = std::fs::read(fixture("inputs/landscape_rgb.png")).unwrap();
    let d = tmp_dir("png");
    // Flip bytes inside the image data: CRC / zlib failure.
    let mut bad = bytes.clone();
    let mid = bad.len() / 2;
    for b in &mut bad[mid..mid + 16] {
        *b ^= 0x5a;
    }
    let p = d.join("corrupt.png");
    std::fs::write(&p, &bad).unwrap();
    let e = pre().preprocess_path(&p).unwrap_err();
    assert!(matches!(e, Error::Decode { format: "PNG", .. }), "{e:?}");
    message_names(&e, &p);
    let p = d.join("short.png");
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = pre().preprocess_path(&p).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Truncated { format: "PNG", .. } | Error::Decode { format: "PNG", .. }
        ),
        "{e:?}"
    );
    message_names(&e, &p);
}

#[test]
fn text_file_named_jpg() {
    let d = tmp_dir("text");
    let p = d.join("notes.jpg");
    std::fs::write(&p, "this is not an image\n").unwrap();
    let e = pre().preprocess_path(&p).unwrap_err();
    assert!(matches!(e, Error::UnknownFormat { .. }), "{e:?}");
    assert!(message_names(&e, &p).contains("not a supported image"));
}

#[test]
fn missing_file() {
    let p = tmp_dir("missing").join("does-not-exist.png");
    let e = pre().preprocess_path(&p).unwrap_err();
    assert!(
        matches!(&e, Error::Io { cause, .. } if cause.kind() == std::io::ErrorKind::NotFound),
        "{e:?}"
    );
    message_names(&e, &p);
}

/// A PNG whose header announces `w`x`h` pixels (valid IHDR CRC), followed by nothing.
fn png_header(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend_from_slice(&13u32.to_be_bytes());
    out.extend_from_slice(&ihdr);
    out.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

#[test]
fn decompression_bombs_are_refused_from_the_header() {
    let d = tmp_dir("bomb");
    // PNG announcing 60000 x 60000 (3.6 gigapixels, 10.8 GB of RGB).
    let p = d.join("bomb.png");
    std::fs::write(&p, png_header(60_000, 60_000)).unwrap();
    let e = pre().preprocess_path(&p).unwrap_err();
    assert!(
        matches!(
            e,
            Error::TooManyPixels {
                width: 60_000,
                height: 60_000,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(message_names(&e, &p).contains("decompression bomb"));
    // A real JPEG whose SOF0 claims 65000 x 65000.
    let mut jpg = std::fs::read(fixture("inputs/exif_1.jpg")).unwrap();
    let sof = jpg
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("baseline SOF0");
    jpg[sof + 5..sof + 9].copy_from_slice(&[0xFD, 0xE8, 0xFD, 0xE8]);
    let p = d.join("bomb.jpg");
    std::fs::write(&p, &jpg).unwrap();
    let e = pre().preprocess_path(&p).unwrap_err();
    assert!(
        matches!(
            e,
            Error::TooManyPixels {
                width: 65_000,
                height: 65_000,
                ..
            }
        ),
        "{e:?}"
    );
    // A configured limit applies to ordinary images too (rocket.jpg is 640x427).
    let mut cfg = PreprocessConfig::openai(224);
    cfg.max_pixels = Some(100_000);
    let e = Preprocessor::new(cfg)
        .unwrap()
        .preprocess_path(fixture("photos/rocket.jpg"))
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::TooManyPixels {
                width: 640,
                height: 427,
                limit: 100_000,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn garbage_after_a_valid_signature_is_an_error() {
    let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0];
    bytes.extend(std::iter::repeat_n(0xAB, 300));
    assert!(pre().preprocess_bytes(&bytes).is_err());
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend(std::iter::repeat_n(0x00, 50));
    assert!(pre().preprocess_bytes(&bytes).is_err());
    let e = pre().preprocess_bytes(b"GIF89a\x01").unwrap_err();
    assert!(e.to_string().contains("<memory>"), "{e}");
}

#[test]
fn load_batch_keeps_order_and_reports_per_item() {
    let d = tmp_dir("batch");
    let empty = d.join("empty.png");
    std::fs::write(&empty, b"").unwrap();
    let paths = vec![
        fixture("photos/rocket.jpg"),
        empty.clone(),
        fixture("inputs/grey_l.png"),
        d.join("missing.jpg"),
        fixture("photos/horse.png"),
    ];
    let pre = pre();
    let out = pre.load_batch(&paths);
    assert_eq!(out.len(), paths.len());
    for (i, (r, p)) in out.iter().zip(&paths).enumerate() {
        match i {
            1 | 3 => {
                let e = r.as_ref().unwrap_err();
                message_names(e, p);
            }
            _ => assert_eq!(r.as_ref().unwrap(), &pre.preprocess_path(p).unwrap(), "{i}"),
        }
    }
}

#[test]
fn extreme_aspect_ratio_stays_cheap() {
    // 1 x 300000 grey: resized to 224 x 67,200,000 before the crop; only the kept window is
    // computed, so this takes milliseconds and little memory. A constant image stays constant.
    let (w, h) = (1u32, 300_000u32);
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, w, h);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc.write_header().unwrap();
        wr.write_image_data(&vec![77u8; (w * h) as usize]).unwrap();
    }
    let t = std::time::Instant::now();
    let img = pre().rgb_bytes(&bytes).unwrap();
    assert!(t.elapsed().as_secs_f64() < 5.0, "{:?}", t.elapsed());
    assert_eq!((img.width, img.height), (224, 224));
    assert!(img.data.iter().all(|&v| v == 77));
}

/// A FIFO, a device or a folder given as an image file is refused at once (a FIFO used to block
/// the reader forever, `/dev/zero` to fill memory); an oversize file is refused before reading.
#[cfg(unix)]
#[test]
fn special_files_are_refused_without_waiting() {
    let d = tmp_dir("special");
    let fifo = d.join("photo.jpg");
    let _ = std::fs::remove_file(&fifo);
    dev_support::mkfifo(&fifo);
    for path in [fifo.clone(), PathBuf::from("/dev/zero"), d.clone()] {
        let p = path.clone();
        let e = dev_support::within_10s(&format!("reading {}", path.display()), move || {
            pre().preprocess_path(&p)
        })
        .unwrap_err();
        assert!(
            matches!(&e, Error::File(safe_file::Error::NotRegular { .. })),
            "{e:?}"
        );
        assert!(message_names(&e, &path).contains("not a regular file"));
    }
    let big = d.join("big.png");
    std::fs::write(&big, vec![0u8; 2000]).unwrap();
    let small_cap = Preprocessor::new(PreprocessConfig {
        max_file_bytes: 1000,
        ..PreprocessConfig::openai(224)
    })
    .unwrap();
    let e = small_cap.preprocess_path(&big).unwrap_err();
    assert!(
        matches!(
            &e,
            Error::File(safe_file::Error::TooLarge {
                size: 2000,
                limit: 1000,
                ..
            })
        ),
        "{e:?}"
    );
    std::fs::remove_dir_all(&d).unwrap();
}

/// An image this crate does not handle is named by its format once ("unsupported PNG: ..."),
/// not as "unsupported image image".
#[test]
fn unsupported_images_name_their_format() {
    let e = clip_preprocess::decode_bytes(&png_header(1 << 24, 1), None).unwrap_err();
    assert!(
        matches!(&e, Error::Unsupported { format: "PNG", .. }),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(text.contains("unsupported PNG: 16777216x1"), "{text}");
    assert!(!text.contains("image image"), "{text}");
}
