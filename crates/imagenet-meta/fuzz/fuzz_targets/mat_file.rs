//! Any bytes must parse to `Ok` or a typed `Err`, never panic or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Fuzz inputs without a header would stop at the header check: give most of them a valid
    // little- or big-endian header so the element parser is exercised.
    let mut bytes = Vec::with_capacity(128 + data.len());
    match data.first() {
        Some(0) => bytes.extend_from_slice(data),
        Some(b) => {
            bytes.resize(116, b' ');
            bytes.extend_from_slice(&[0; 8]);
            if b % 2 == 0 {
                bytes.extend_from_slice(&[0x00, 0x01, b'I', b'M']);
            } else {
                bytes.extend_from_slice(&[0x01, 0x00, b'M', b'I']);
            }
            bytes.extend_from_slice(&data[1..]);
        }
        None => {}
    }
    if let Ok(mat) = imagenet_meta::mat::MatFile::from_bytes_with_limit(&bytes, 1 << 24) {
        let _ = imagenet_meta::Meta::from_mat_file(&mat);
        for v in &mat.variables {
            let _ = (v.char_rows(), v.as_string(), v.describe());
        }
    }
});
