//! Support for tests, benches and developer tools of this workspace (not a user-facing library).
//!
//! - [`shared_data`] finds the read-only shared data folder (ImageNet devkit, sample photos, CLIP
//!   vocabulary) through the `CLIP_SHARED_DATA` environment variable, which `.ci/run` sets.
//! - The skip policy, one for every test: [`skip_or_fail`] when a resource (shared data, a
//!   browser, …) is missing — a failure under `CI`, a `SKIP(resource)` line otherwise — and
//!   [`cpu_features_or_skip`] when the CPU lacks an instruction set — a counted `SKIP(cpu)` line,
//!   or a failure for features listed in `CLIP_REQUIRE_CPU_FEATURES`. Skip lines go to the
//!   process's standard output even when the test harness captures output, so a CI log can count
//!   them (`grep -c '^SKIP('`).
//! - [`Npy`] reads and writes little-endian `float32` / `int64` `.npy` files, the format of the
//!   committed reference fixtures made by the Python scripts under `tools/reference`; with the
//!   `candle` feature, [`read_tensor`] reads one straight into a candle tensor.
//! - [`rerun_tests_with_env`] re-runs tests of the current test binary in a child process with an
//!   environment variable set (for switches a library reads once per process).
//! - [`Rng`] makes small deterministic pseudo-random data (SplitMix64) for tests and benches.
//! - [`max_abs_diff`] and [`agreement`] compare our numbers with a reference's. Unlike a
//!   `fold(0.0, f32::max)`, which skips NaN, they return NaN when either side holds one, so a
//!   bound such as `max <= 1e-5` or `min_cosine >= 0.99999` fails on NaN output.
//!
//! ```
//! use dev_support::Npy;
//! let a = Npy::f32(vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]);
//! let bytes = a.to_bytes();
//! let b = Npy::from_bytes(&bytes)?;
//! assert_eq!(a, b);
//! # Ok::<(), dev_support::Error>(())
//! ```
#![deny(missing_docs)]

use std::io::Write;
use std::path::{Path, PathBuf};

pub mod tiny_clip;

/// Environment variable naming the shared data folder (`../shared/data` beside the repository).
pub const SHARED_DATA_ENV: &str = "CLIP_SHARED_DATA";

/// Environment variable that CI sets: with it, a test whose resource is missing fails.
pub const CI_ENV: &str = "CI";

/// Environment variable listing CPU features (comma-separated, e.g. `avx512f,avx2,fma`) that
/// the tests must find: a test needing one of them fails instead of skipping when it is missing.
/// For CI machines known to have them, so kernels cannot go untested unnoticed.
pub const REQUIRE_CPU_FEATURES_ENV: &str = "CLIP_REQUIRE_CPU_FEATURES";

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause (shown in the message, not repeated as the error's source).
        cause: std::io::Error,
    },
    /// The bytes are not a `.npy` file this crate supports.
    #[error("not a supported .npy file: {0}")]
    Npy(String),
    /// Two arrays that should be compared element by element have different sizes.
    #[error("cannot compare: {0}")]
    Mismatch(String),
    /// A `.npy` array could not become a tensor (only with the `candle` feature).
    #[error("cannot make a tensor: {0}")]
    Tensor(String),
    /// The shared data folder could not be found.
    #[error(
        "shared data folder not found: set {SHARED_DATA_ENV} to the `shared/data` folder \
         (CI sets it to ../shared/data); looked at {0}"
    )]
    SharedDataMissing(PathBuf),
}

/// SplitMix64: deterministic pseudo-random numbers for tests and benches, without a dependency.
/// The same seed gives the same sequence on every platform.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator started at `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[-1, 1)`, on a grid of 2⁻²³.
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }

    /// Uniform in `0..n` (`n > 0`; the modulo bias is irrelevant for tests).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }

    /// `v` filled with a random direction of unit length (like a CLIP embedding).
    pub fn unit(&mut self, v: &mut [f32]) {
        v.iter_mut().for_each(|x| *x = self.uniform());
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// Runs the tests named `tests` (exact names) of the current test binary again in a child process
/// with `var=value` set, and panics (test failure) unless the child succeeds and runs all of them.
/// Returns the child's standard output. Call it only from a test that returns early when `var` is
/// already set, or the child would recurse.
pub fn rerun_tests_with_env(tests: &[&str], var: &str, value: &str) -> String {
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = std::process::Command::new(exe)
        .env(var, value)
        .args(tests)
        .args(["--exact", "--nocapture", "--test-threads=1"])
        .output()
        .expect("running the test binary again");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{var}={value} run failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains(&format!("{} passed", tests.len())),
        "every listed test must run with {var}={value}:\n{stdout}"
    );
    stdout
}

/// The shared data folder: `$CLIP_SHARED_DATA`, else `../shared/data` beside the workspace root.
///
/// Returns an error naming the place looked at when neither exists. Tests that need the data
/// should fail with this error when `CLIP_SHARED_DATA` is set (CI), and may skip with a loud
/// message otherwise; [`shared_data_or_skip`] does exactly that.
pub fn shared_data() -> Result<PathBuf, Error> {
    let dir = match std::env::var_os(SHARED_DATA_ENV) {
        Some(v) => PathBuf::from(v),
        None => workspace_root().join("../shared/data"),
    };
    if dir.is_dir() {
        Ok(dir)
    } else {
        Err(Error::SharedDataMissing(dir))
    }
}

/// For tests: the shared data folder, or `None` after [`skip_or_fail`] said why the test is
/// skipped.
///
/// Fails the test when `CLIP_SHARED_DATA` or `CI` is set but the folder is missing, so CI can
/// never silently skip.
pub fn shared_data_or_skip(test: &str) -> Option<PathBuf> {
    match shared_data() {
        Ok(d) => Some(d),
        Err(e) if std::env::var_os(SHARED_DATA_ENV).is_some() => panic!("{test}: {e}"),
        Err(e) => {
            skip_or_fail(test, &e);
            None
        }
    }
}

/// For a test that cannot run because a resource is missing (shared data, a browser, a tool):
/// panics (fails the test) when `CI` is set, else prints `SKIP(resource): {test}: {reason}`.
/// The caller returns after it.
pub fn skip_or_fail(test: &str, reason: &dyn std::fmt::Display) {
    if std::env::var_os(CI_ENV).is_some() {
        panic!("{test}: {reason} (a missing resource fails the test when {CI_ENV} is set)");
    }
    report_skip("resource", test, reason);
}

/// For a test that needs CPU features (`avx512f`, `avx2`, `fma`, …, as
/// `is_x86_feature_detected!` spells them): `true` when this CPU has them all. Otherwise prints
/// `SKIP(cpu): {test}: …` (a counted skip, not a failure: a CI machine may lack AVX-512) and
/// returns `false` — unless a missing feature is listed in `CLIP_REQUIRE_CPU_FEATURES`, which
/// fails the test. Panics on a feature name it does not know.
pub fn cpu_features_or_skip(test: &str, features: &[&str]) -> bool {
    let missing: Vec<&str> = features
        .iter()
        .copied()
        .filter(|f| !has_cpu_feature(f))
        .collect();
    if missing.is_empty() {
        return true;
    }
    let required = std::env::var(REQUIRE_CPU_FEATURES_ENV).unwrap_or_default();
    let required: Vec<&str> = required.split(',').map(str::trim).collect();
    if let Some(f) = missing.iter().find(|f| required.contains(f)) {
        panic!("{test}: this CPU lacks `{f}`, which {REQUIRE_CPU_FEATURES_ENV} requires");
    }
    report_skip(
        "cpu",
        test,
        &format_args!("this CPU lacks {}", missing.join(", ")),
    );
    false
}

/// Whether this CPU has the feature `name` (x86-64 names; always `false` elsewhere).
///
/// Panics on a name this function does not know, so a typo cannot turn into a skip.
pub fn has_cpu_feature(name: &str) -> bool {
    const KNOWN: [&str; 7] = [
        "avx512f",
        "avx512bf16",
        "avx2",
        "fma",
        "avx",
        "sse4.1",
        "f16c",
    ];
    assert!(KNOWN.contains(&name), "unknown CPU feature `{name}`");
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        match name {
            "avx512f" => has!("avx512f"),
            "avx512bf16" => has!("avx512bf16"),
            "avx2" => has!("avx2"),
            "fma" => has!("fma"),
            "avx" => has!("avx"),
            "sse4.1" => has!("sse4.1"),
            _ => has!("f16c"),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Writes one `SKIP(kind): test: reason` line to the process's standard output. Not `println!`:
/// the test harness captures that for passing tests, and a skip must show in every log.
fn report_skip(kind: &str, test: &str, reason: &dyn std::fmt::Display) {
    let line = format!("SKIP({kind}): {test}: {reason}\n");
    let mut out = std::io::stdout().lock();
    // A closed stdout cannot be reported to anyone; the test still returns as skipped.
    let _ = out.write_all(line.as_bytes()).and_then(|()| out.flush());
}

/// An error and its sources joined by `": "`, as `anyhow` prints `{:#}` and as programs show
/// errors to users.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Asserts that no error of `e`'s chain repeats the message of its source in its own: printed as
/// a chain, every cause then appears once (not "No such file …: No such file …").
pub fn assert_cause_once(e: &dyn std::error::Error) {
    let mut outer: &dyn std::error::Error = e;
    while let Some(inner) = outer.source() {
        let (o, i) = (outer.to_string(), inner.to_string());
        assert!(
            !o.contains(&i),
            "the message repeats its source: `{}`",
            error_chain(e)
        );
        outer = inner;
    }
}

/// Runs `f` on a thread and fails the test, naming `what`, if it has not returned within 10 s:
/// a call that waits on a FIFO or device instead of refusing it hangs.
pub fn within_10s<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("{what} hung (no answer within 10 s)"))
}

/// Makes a FIFO at `path` (with `mkfifo`), for tests that hand one where a file is expected.
#[cfg(unix)]
pub fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo runs");
    assert!(status.success(), "mkfifo {}", path.display());
}

/// The workspace root (the folder holding the root `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The largest `|got[i] - want[i]|`, or NaN when any difference is NaN (a NaN on either side).
///
/// Errors when the lengths differ, instead of comparing only the common prefix.
pub fn max_abs_diff(got: &[f32], want: &[f32]) -> Result<f32, Error> {
    if got.len() != want.len() {
        return Err(Error::Mismatch(format!(
            "{} values against {} reference values",
            got.len(),
            want.len()
        )));
    }
    Ok(got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, nan_max))
}

/// How closely two row-major matrices (e.g. embeddings, one per row) agree.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Agreement {
    /// The smallest cosine similarity of a pair of rows (sums in `f64`); NaN when any row pair
    /// has none (a NaN value, or a row of zeros).
    pub min_cosine: f64,
    /// The largest absolute difference of two elements; NaN when any element is NaN.
    pub max_abs_diff: f64,
    /// The number of rows compared.
    pub rows: usize,
}

/// Compares `got` with `want`, both row-major with rows of `dim` values, row by row.
///
/// Errors when the lengths differ or are not a whole number of rows.
pub fn agreement(got: &[f32], want: &[f32], dim: usize) -> Result<Agreement, Error> {
    if got.len() != want.len() || dim == 0 || !got.len().is_multiple_of(dim) {
        return Err(Error::Mismatch(format!(
            "{} values against {} reference values in rows of {dim}",
            got.len(),
            want.len()
        )));
    }
    let (mut min_cosine, mut max_abs) = (f64::INFINITY, 0.0f64);
    for (g, w) in got.chunks_exact(dim).zip(want.chunks_exact(dim)) {
        let (mut dot, mut gg, mut ww) = (0.0f64, 0.0f64, 0.0f64);
        for (&a, &b) in g.iter().zip(w) {
            let (a, b) = (f64::from(a), f64::from(b));
            dot += a * b;
            gg += a * a;
            ww += b * b;
            max_abs = nan_max(max_abs, (a - b).abs());
        }
        let cos = dot / (gg.sqrt() * ww.sqrt());
        min_cosine = if cos.is_nan() || min_cosine.is_nan() {
            f64::NAN
        } else {
            min_cosine.min(cos)
        };
    }
    Ok(Agreement {
        min_cosine,
        max_abs_diff: max_abs,
        rows: got.len() / dim,
    })
}

/// `max` that keeps NaN (`f32::max` / `f64::max` drop it).
fn nan_max<T: PartialOrd + Copy>(m: T, d: T) -> T {
    // Only NaN is unordered with itself; once `m` is NaN, `d > m` is false and `m` stays.
    let d_is_nan = d.partial_cmp(&d).is_none();
    if d_is_nan || d > m { d } else { m }
}

/// Element data of an [`Npy`] array.
#[derive(Debug, Clone, PartialEq)]
pub enum NpyData {
    /// Little-endian `float32` (`<f4`).
    F32(Vec<f32>),
    /// Little-endian `int64` (`<i8`).
    I64(Vec<i64>),
}

/// A C-ordered array read from or written to a `.npy` file.
#[derive(Debug, Clone, PartialEq)]
pub struct Npy {
    /// The shape.
    pub shape: Vec<usize>,
    /// The elements in C order.
    pub data: NpyData,
}

impl Npy {
    /// A `float32` array.
    pub fn f32(shape: Vec<usize>, data: Vec<f32>) -> Self {
        Self {
            shape,
            data: NpyData::F32(data),
        }
    }

    /// A `int64` array.
    pub fn i64(shape: Vec<usize>, data: Vec<i64>) -> Self {
        Self {
            shape,
            data: NpyData::I64(data),
        }
    }

    /// The elements as `f32`, or an error when the array holds another dtype.
    pub fn into_f32(self) -> Result<Vec<f32>, Error> {
        match self.data {
            NpyData::F32(v) => Ok(v),
            NpyData::I64(_) => Err(Error::Npy("expected float32, found int64".into())),
        }
    }

    /// The elements as `i64`, or an error when the array holds another dtype.
    pub fn into_i64(self) -> Result<Vec<i64>, Error> {
        match self.data {
            NpyData::I64(v) => Ok(v),
            NpyData::F32(_) => Err(Error::Npy("expected int64, found float32".into())),
        }
    }

    /// The array as a candle tensor on the CPU (`F32` or `I64`), with its shape.
    #[cfg(feature = "candle")]
    pub fn into_tensor(self) -> Result<candle_core::Tensor, Error> {
        let device = candle_core::Device::Cpu;
        let t = match self.data {
            NpyData::F32(v) => candle_core::Tensor::from_vec(v, self.shape, &device),
            NpyData::I64(v) => candle_core::Tensor::from_vec(v, self.shape, &device),
        };
        t.map_err(|e| Error::Tensor(e.to_string()))
    }

    /// Reads a `.npy` file.
    pub fn read(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|cause| Error::Io {
            path: path.to_owned(),
            cause,
        })?;
        Self::from_bytes(&bytes).map_err(|e| Error::Npy(format!("{}: {e}", path.display())))
    }

    /// Writes a `.npy` file (format version 1.0).
    pub fn write(&self, path: impl AsRef<Path>) -> Result<(), Error> {
        let path = path.as_ref();
        std::fs::write(path, self.to_bytes()).map_err(|cause| Error::Io {
            path: path.to_owned(),
            cause,
        })
    }

    /// Serialises to `.npy` bytes (format version 1.0, header padded to 64 bytes).
    pub fn to_bytes(&self) -> Vec<u8> {
        let descr = match self.data {
            NpyData::F32(_) => "<f4",
            NpyData::I64(_) => "<i8",
        };
        let shape = match self.shape.len() {
            1 => format!("({},)", self.shape[0]),
            _ => format!(
                "({})",
                self.shape
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let mut header =
            format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        let unpadded = 10 + header.len() + 1;
        header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
        header.push('\n');
        let mut out = Vec::with_capacity(10 + header.len() + 8 * self.len());
        out.extend_from_slice(b"\x93NUMPY\x01\x00");
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        match &self.data {
            NpyData::F32(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            NpyData::I64(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        }
        out
    }

    fn len(&self) -> usize {
        match &self.data {
            NpyData::F32(v) => v.len(),
            NpyData::I64(v) => v.len(),
        }
    }

    /// Parses `.npy` bytes: versions 1–3, C order, `<f4` or `<i8`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let bad = |m: &str| Error::Npy(m.to_owned());
        if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
            return Err(bad("missing \\x93NUMPY magic"));
        }
        let (hlen, hstart) = match bytes[6] {
            1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
            2 | 3 if bytes.len() >= 12 => (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            ),
            v => return Err(Error::Npy(format!("unsupported version {v}"))),
        };
        let header = bytes
            .get(hstart..hstart + hlen)
            .ok_or_else(|| bad("truncated header"))?;
        let header = std::str::from_utf8(header).map_err(|_| bad("header is not UTF-8"))?;
        if header.contains("'fortran_order': True") {
            return Err(bad("Fortran order is not supported"));
        }
        let descr = field(header, "descr").ok_or_else(|| bad("no descr"))?;
        let shape_txt = field(header, "shape").ok_or_else(|| bad("no shape"))?;
        let shape = shape_txt
            .trim_matches(|c| c == '(' || c == ')')
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<usize>().map_err(|_| bad("bad shape")))
            .collect::<Result<Vec<_>, _>>()?;
        let n: usize = shape.iter().product();
        let body = &bytes[hstart + hlen..];
        let descr = descr.trim_matches('\'');
        let data = match descr {
            "<f4" => NpyData::F32(chunks::<4>(body, n)?.map(f32::from_le_bytes).collect()),
            "<i8" => NpyData::I64(chunks::<8>(body, n)?.map(i64::from_le_bytes).collect()),
            other => return Err(Error::Npy(format!("unsupported dtype {other}"))),
        };
        Ok(Self { shape, data })
    }
}

/// Reads a `.npy` fixture as a candle tensor on the CPU (`F32` or `I64`, with its shape).
#[cfg(feature = "candle")]
pub fn read_tensor(path: impl AsRef<Path>) -> Result<candle_core::Tensor, Error> {
    Npy::read(path)?.into_tensor()
}

fn chunks<const N: usize>(
    body: &[u8],
    n: usize,
) -> Result<impl Iterator<Item = [u8; N]> + '_, Error> {
    if body.len() != n * N {
        return Err(Error::Npy(format!(
            "expected {} data bytes, found {}",
            n * N,
            body.len()
        )));
    }
    Ok(body.chunks_exact(N).map(|c| {
        let mut a = [0u8; N];
        a.copy_from_slice(c);
        a
    }))
}

/// The text after `'key':` up to the next top-level comma (parentheses nest).
fn field<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let start = header.find(&format!("'{key}':"))? + key.len() + 3;
    let rest = header[start..].trim_start();
    let mut depth = 0i32;
    for (i, c) in rest.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' | '}' if depth == 0 => return Some(rest[..i].trim()),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_shapes_and_dtypes() {
        for a in [
            Npy::f32(vec![3], vec![1.5, -2.0, 0.25]),
            Npy::f32(vec![1, 3, 2, 2], (0..12).map(|i| i as f32 * 0.5).collect()),
            Npy::i64(vec![2, 2], vec![49406, 3306, 49407, 0]),
            Npy::f32(vec![0, 4], vec![]),
        ] {
            assert_eq!(Npy::from_bytes(&a.to_bytes()).unwrap(), a);
            let elem = if matches!(a.data, NpyData::I64(_)) {
                8
            } else {
                4
            };
            assert_eq!(
                (a.to_bytes().len() - a.len() * elem) % 64,
                0,
                "header is 64-aligned"
            );
        }
    }

    #[test]
    fn numpy_written_header_parses() {
        // Header exactly as numpy 2.x writes it for np.zeros((2, 3), np.float32).
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        let mut h = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }".to_string();
        h.push_str(&" ".repeat(128 - 10 - h.len() - 1));
        h.push('\n');
        b.extend_from_slice(&(h.len() as u16).to_le_bytes());
        b.extend_from_slice(h.as_bytes());
        b.extend_from_slice(&[0u8; 24]);
        let a = Npy::from_bytes(&b).unwrap();
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(a.into_f32().unwrap(), vec![0.0; 6]);
    }

    #[test]
    fn comparisons_see_nan_and_size_mismatches() {
        assert_eq!(max_abs_diff(&[1.0, 2.0], &[1.5, 2.0]).unwrap(), 0.5);
        assert!(
            max_abs_diff(&[f32::NAN, 2.0], &[1.0, 2.0])
                .unwrap()
                .is_nan()
        );
        assert!(
            max_abs_diff(&[1.0, 9.0], &[1.0, f32::NAN])
                .unwrap()
                .is_nan()
        );
        assert!(max_abs_diff(&[1.0], &[1.0, 2.0]).is_err());

        // Rows [1, 0] vs [1, 0] (cosine 1) and [0, 1] vs [1, 1] (cosine 1/sqrt 2).
        let a = agreement(&[1.0, 0.0, 0.0, 1.0], &[1.0, 0.0, 1.0, 1.0], 2).unwrap();
        assert_eq!(a.rows, 2);
        assert!((a.min_cosine - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-15);
        assert_eq!(a.max_abs_diff, 1.0);
        let nan = agreement(&[1.0, 0.0, f32::NAN, 1.0], &[1.0, 0.0, 0.0, 1.0], 2).unwrap();
        assert!(nan.min_cosine.is_nan() && nan.max_abs_diff.is_nan());
        let zero = agreement(&[0.0, 0.0], &[1.0, 0.0], 2).unwrap();
        assert!(zero.min_cosine.is_nan());
        assert!(agreement(&[1.0; 4], &[1.0; 4], 3).is_err());
        assert!(agreement(&[1.0; 4], &[1.0; 2], 2).is_err());
    }

    #[test]
    fn cpu_feature_checks() {
        // SSE4.1 is part of every x86-64 CPU these tests run on (x86-64-v2 and up); elsewhere
        // the check says no and prints a skip line.
        let has = cpu_features_or_skip("cpu_feature_checks", &["sse4.1"]);
        assert_eq!(
            has,
            cfg!(target_arch = "x86_64") && has_cpu_feature("sse4.1")
        );
        assert!(std::panic::catch_unwind(|| has_cpu_feature("avx512")).is_err());
    }

    #[test]
    fn rejects_truncated_and_foreign() {
        let a = Npy::f32(vec![4], vec![1.0; 4]).to_bytes();
        assert!(Npy::from_bytes(&a[..a.len() - 1]).is_err());
        assert!(Npy::from_bytes(b"PK\x03\x04 not npy").is_err());
        assert!(Npy::from_bytes(&a[..20]).is_err());
    }
}
