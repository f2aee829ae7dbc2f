//! Deterministic mutation test: truncations and byte flips of real and fixture MAT-files must
//! give `Ok` or a typed `Err`, never a panic (complements the `cargo fuzz` target in `fuzz/`).

use std::io::Read;
use std::path::PathBuf;

use imagenet_meta::mat::MatFile;
use imagenet_meta::{Error, Meta};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .unwrap()
}

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn parse_all(bytes: &[u8]) -> (usize, usize) {
    match MatFile::from_bytes_with_limit(bytes, 1 << 24) {
        Ok(mat) => {
            let _ = Meta::from_mat_file(&mat);
            for v in &mat.variables {
                let _ = (v.char_rows(), v.as_string(), v.describe());
            }
            (1, 0)
        }
        Err(_) => (0, 1),
    }
}

fn mutate(name: &str, bytes: &[u8], flips: usize) {
    let (mut ok, mut err) = (0, 0);
    // Every truncation point in the first 4 KiB, then a stride across the rest.
    let stride = (bytes.len() / 500).max(1);
    let cuts = (0..bytes.len().min(4096)).chain((4096..bytes.len()).step_by(stride));
    for cut in cuts {
        let (o, e) = parse_all(&bytes[..cut]);
        ok += o;
        err += e;
    }
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ bytes.len() as u64);
    for _ in 0..flips {
        let mut m = bytes.to_vec();
        for _ in 0..1 + rng.below(4) {
            let i = rng.below(m.len());
            m[i] = match rng.below(4) {
                0 => m[i] ^ (1 << rng.below(8)),
                1 => 0xff,
                2 => 0,
                _ => rng.next() as u8,
            };
        }
        let (o, e) = parse_all(&m);
        ok += o;
        err += e;
    }
    println!("{name}: {ok} mutants parsed, {err} rejected with typed errors");
    assert!(err > 0);
}

#[test]
fn fixture_mutants_never_panic() {
    for name in [
        "tiny_compressed.mat",
        "tiny_uncompressed.mat",
        "handmade_le.mat",
        "handmade_be.mat",
    ] {
        mutate(name, &fixture(name), 3000);
    }
}

#[test]
fn real_meta_mutants_never_panic() {
    let Some(dir) = dev_support::shared_data_or_skip("real_meta_mutants_never_panic") else {
        return;
    };
    let bytes = std::fs::read(dir.join("imagenet-devkit/meta.mat")).unwrap();
    mutate("meta.mat", &bytes, 200);
    // meta.mat is one compressed element, so most flips above only break the zlib stream:
    // mutate the inflated form too, re-wrapped as an uncompressed file.
    assert_eq!(&bytes[128..132], &[15, 0, 0, 0]);
    let mut inflated = Vec::new();
    flate2::read::ZlibDecoder::new(&bytes[136..])
        .read_to_end(&mut inflated)
        .unwrap();
    let mut plain = bytes[..128].to_vec();
    plain.extend_from_slice(&inflated);
    let reference = MatFile::from_bytes(&bytes).unwrap();
    assert_eq!(MatFile::from_bytes(&plain).unwrap(), reference);
    mutate("meta.mat (inflated)", &plain, 2000);
}

#[test]
fn truncated_and_bad_headers_are_typed_errors() {
    assert!(matches!(
        MatFile::from_bytes(b"MATLAB"),
        Err(Error::Header { .. })
    ));
    let mut f = fixture("handmade_le.mat");
    f[126] = b'X';
    assert!(matches!(MatFile::from_bytes(&f), Err(Error::Header { .. })));
    let mut f = fixture("handmade_le.mat");
    f[124] = 0;
    f[125] = 2; // v7.3
    let e = MatFile::from_bytes(&f).unwrap_err();
    assert!(e.to_string().contains("v7.3"), "{e}");
    let f = fixture("handmade_le.mat");
    match MatFile::from_bytes(&f[..f.len() - 3]) {
        Err(Error::Truncated { context, .. }) => assert_eq!(context, "variable #13"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn decompression_limit_is_enforced() {
    let f = fixture("tiny_compressed.mat");
    assert!(matches!(
        MatFile::from_bytes_with_limit(&f, 16),
        Err(Error::DecompressLimit { limit: 16, .. })
    ));
}

#[test]
fn huge_dimensions_do_not_allocate() {
    // A cell array claiming 2^31 x 2^31 elements in a 64-byte element.
    let mut f = fixture("handmade_le.mat")[..128].to_vec();
    let mut body = vec![];
    body.extend_from_slice(&[6, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]); // cell
    body.extend_from_slice(&[
        5, 0, 0, 0, 8, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff, 0x7f,
    ]);
    body.extend_from_slice(&[1, 0, 1, 0, b'c', 0, 0, 0]);
    f.extend_from_slice(&[14, 0, 0, 0, body.len() as u8, 0, 0, 0]);
    f.extend_from_slice(&body);
    match MatFile::from_bytes(&f) {
        Err(Error::Truncated {
            context,
            what: "cells",
            ..
        }) => assert_eq!(context, "c"),
        other => panic!("{other:?}"),
    }
}

/// `depth` cells (1x1, empty name, little-endian) nested around an empty matrix, built
/// outside-in from precomputed lengths (linear time even for huge depths).
fn nested_cells(depth: usize) -> Vec<u8> {
    let innermost = [14u8, 0, 0, 0, 0, 0, 0, 0]; // empty miMATRIX
    let mut headers = Vec::with_capacity(depth);
    let mut inner_len = innermost.len();
    for _ in 0..depth {
        let mut h = vec![14, 0, 0, 0];
        h.extend_from_slice(&((40 + inner_len) as u32).to_le_bytes());
        h.extend_from_slice(&[6, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]); // cell
        h.extend_from_slice(&[5, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0]); // 1x1
        h.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]); // empty name
        inner_len += h.len();
        headers.push(h);
    }
    let mut f = fixture("handmade_le.mat")[..128].to_vec();
    for h in headers.iter().rev() {
        f.extend_from_slice(h);
    }
    f.extend_from_slice(&innermost);
    f
}

#[test]
fn nesting_depth_is_bounded() {
    let ok = MatFile::from_bytes(&nested_cells(60)).unwrap();
    assert_eq!(ok.variables.len(), 1);
    // 100k levels would overflow the stack of a naive recursive reader.
    match MatFile::from_bytes(&nested_cells(100_000)) {
        Err(Error::Malformed {
            what: "nesting", ..
        }) => {}
        other => panic!("{:?}", other.map(|_| ())),
    }
}
