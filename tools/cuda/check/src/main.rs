//! clip-model on a GPU: parity with open_clip on the committed fixtures, and timings for
//! `tools/cuda/gpu_bench.py`, which runs PyTorch + open_clip on the same weights and inputs.
//!
//!     clip-cuda-check parity --device cuda --dtype f32
//!     clip-cuda-check bench --device cuda --dtype bf16 --weights DIR/vit-b-32/open_clip_model.safetensors \
//!         --image-batches 1,32,256 --text-batches 1,256 --inputs DIR
//!
//! `parity` runs the fixtures of `crates/clip-model/tests` (made by `tools/reference/model_parity.py`
//! and `resnet_parity.py`) on the device with the tests' bars: in f32 cosine ≥ 0.99999 and
//! max |diff| ≤ 1e-4 per embedding; in bf16 / f16, whose few significant digits make that bar
//! unreachable, cosine ≥ 0.99 / 0.999 (the CPU half-precision tests' bars). It ends with the line
//! `N passed, M failed` and exits non-zero on any failure.
//!
//! `bench` prints one JSON object per line: the device, then one per workload with the seconds of
//! each timed run (after warm-up runs; each run ends with a device synchronisation, so the GPU
//! work is really waited for). Inputs are made on the device beforehand, as the PyTorch side does.
//! With `--inputs DIR` it also embeds `DIR/pixels_<size>.npy` and `DIR/text_ids.npy` and writes
//! `DIR/ours_<dtype>_image.npy` / `ours_<dtype>_text.npy` for the Python side to compare.
use std::path::{Path, PathBuf};
use std::time::Instant;

use clip_model::candle_core::{DType, Device, Tensor};
use clip_model::{ClipModel, LoadOptions, ModifiedResNet, TextLength, device_from_name};
use dev_support::Npy;
use serde_json::json;

/// This program's errors: messages for a person at a terminal.
type Res<T> = Result<T, Box<dyn std::error::Error>>;

macro_rules! fail {
    ($($t:tt)*) => {
        Box::<dyn std::error::Error>::from(format!($($t)*))
    };
}

/// An error about a file, naming it.
fn at(path: &Path, e: impl std::fmt::Display) -> Box<dyn std::error::Error> {
    fail!("{}: {e}", path.display())
}

const USAGE: &str = "usage:
  clip-cuda-check parity [--device cuda] [--dtype f32|bf16|f16] [--fixtures crates/clip-model/tests/fixtures]
  clip-cuda-check bench --weights FILE [--device cuda] [--dtype f32] [--image-batches 1,32]
                        [--text-batches 1,256] [--reps 10] [--warmup 3] [--inputs DIR]";

/// `--name value` pairs after the subcommand (plain parsing: no proc-macro crate, so this program
/// shares every compiled dependency, candle's CUDA kernels included, with clip-model's cuda build).
struct Args(Vec<(String, String)>);

impl Args {
    fn parse(rest: &[String]) -> Res<Self> {
        let mut pairs = Vec::new();
        let mut it = rest.iter();
        while let Some(flag) = it.next() {
            let Some(name) = flag.strip_prefix("--") else {
                return Err(fail!("unexpected argument `{flag}`\n{USAGE}"));
            };
            let Some(value) = it.next() else {
                return Err(fail!("`{flag}` needs a value\n{USAGE}"));
            };
            pairs.push((name.to_string(), value.clone()));
        }
        Ok(Self(pairs))
    }

    fn take(&mut self, name: &str) -> Option<String> {
        let i = self.0.iter().position(|(n, _)| n == name)?;
        Some(self.0.remove(i).1)
    }

    fn or(&mut self, name: &str, default: &str) -> String {
        self.take(name).unwrap_or_else(|| default.to_string())
    }

    fn list(&mut self, name: &str, default: &str) -> Res<Vec<usize>> {
        let v = self.or(name, default);
        v.split(',')
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse()
                    .map_err(|_| fail!("--{name}: `{s}` is not a number"))
            })
            .collect()
    }

    fn done(self) -> Res<()> {
        match self.0.first() {
            Some((n, _)) => Err(fail!("unknown option `--{n}`\n{USAGE}")),
            None => Ok(()),
        }
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Res<()> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = argv.split_first() else {
        return Err(fail!("{USAGE}"));
    };
    let mut a = Args::parse(rest)?;
    match cmd.as_str() {
        "parity" => {
            let device = a.or("device", "cuda");
            let dtype = a.or("dtype", "f32");
            let fixtures = PathBuf::from(a.or("fixtures", "crates/clip-model/tests/fixtures"));
            a.done()?;
            parity(&device, &dtype, &fixtures)
        }
        "bench" => {
            let args = BenchArgs {
                device: a.or("device", "cuda"),
                dtype: a.or("dtype", "f32"),
                weights: PathBuf::from(
                    a.take("weights")
                        .ok_or_else(|| fail!("bench needs --weights FILE"))?,
                ),
                image_batches: a.list("image-batches", "1,32")?,
                text_batches: a.list("text-batches", "")?,
                reps: a
                    .or("reps", "10")
                    .parse()
                    .map_err(|_| fail!("--reps: not a number"))?,
                warmup: a
                    .or("warmup", "3")
                    .parse()
                    .map_err(|_| fail!("--warmup: not a number"))?,
                inputs: a.take("inputs").map(PathBuf::from),
            };
            a.done()?;
            bench(&args)
        }
        other => Err(fail!("unknown command `{other}`\n{USAGE}")),
    }
}

fn parse_dtype(name: &str) -> Res<DType> {
    Ok(match name {
        "f32" => DType::F32,
        "bf16" => DType::BF16,
        "f16" => DType::F16,
        other => return Err(fail!("unknown dtype `{other}`: expected f32, bf16 or f16")),
    })
}

fn npy_tensor(path: &Path, device: &Device) -> Res<Tensor> {
    let a = Npy::read(path).map_err(|e| at(path, e))?;
    let shape = a.shape.clone();
    let t = if path
        .file_name()
        .is_some_and(|n| n.to_string_lossy().contains("ids"))
    {
        Tensor::from_vec(a.into_i64()?, shape, device)?
    } else {
        Tensor::from_vec(a.into_f32()?, shape, device)?
    };
    Ok(t)
}

fn to_f32_vec(t: &Tensor) -> Res<Vec<f32>> {
    Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
}

/// Bars of one dtype: (min cosine, max |diff| or none).
fn bars(dtype: DType) -> (f64, Option<f64>) {
    match dtype {
        DType::F32 => (0.99999, Some(1e-4)),
        DType::F16 => (0.999, None),
        _ => (0.99, None),
    }
}

/// (min cosine, max |diff|) of `got` against the `.npy` file `want`, row by row.
fn compare(got: &[f32], want: &Path, dim: usize) -> Res<(f64, f64)> {
    let want = Npy::read(want).map_err(|e| at(want, e))?.into_f32()?;
    let a = dev_support::agreement(got, &want, dim)?;
    Ok((a.min_cosine, a.max_abs_diff))
}

struct Tally {
    passed: usize,
    failed: usize,
}

impl Tally {
    fn check(&mut self, what: &str, got: Res<Vec<f32>>, want: &Path, dim: usize, dtype: DType) {
        let outcome = got.and_then(|got| compare(&got, want, dim));
        let (min_cos, max_abs) = bars(dtype);
        match outcome {
            Ok((cos, abs)) => {
                // NaN fails both comparisons.
                let ok = cos >= min_cos && max_abs.is_none_or(|m| abs <= m);
                println!(
                    "{} {what}: min cosine {cos:.9}, max |diff| {abs:.3e} (bars: cosine >= {min_cos}{})",
                    if ok { "ok  " } else { "FAIL" },
                    max_abs
                        .map(|m| format!(", |diff| <= {m:e}"))
                        .unwrap_or_default()
                );
                if ok {
                    self.passed += 1
                } else {
                    self.failed += 1
                }
            }
            Err(e) => {
                println!("FAIL {what}: {e}");
                self.failed += 1;
            }
        }
    }
}

fn parity(device: &str, dtype: &str, fixtures: &Path) -> Res<()> {
    let device = device_from_name(device)?;
    let dtype = parse_dtype(dtype)?;
    println!(
        "parity on {:?} in {dtype:?}, fixtures {}",
        device.location(),
        fixtures.display()
    );
    let vit = fixtures.join("vit_tiny");
    let pixels = npy_tensor(&vit.join("pixels.npy"), &device)?;
    let ids = npy_tensor(&vit.join("token_ids.npy"), &Device::Cpu)?;
    let mut tally = Tally {
        passed: 0,
        failed: 0,
    };
    let opts = LoadOptions {
        dtype,
        device: device.clone(),
        ..LoadOptions::default()
    };
    let gelu = LoadOptions {
        config_file: Some(vit.join("gelu/open_clip_config.json")),
        ..opts.clone()
    };
    let cases = [
        (
            "vit open_clip naming",
            "open_clip/open_clip_model.safetensors",
            &opts,
            "",
        ),
        ("vit transformers naming", "hf/model.safetensors", &opts, ""),
        (
            "vit exact gelu",
            "open_clip/open_clip_model.safetensors",
            &gelu,
            "gelu/",
        ),
    ];
    for (label, file, options, expected) in cases {
        match ClipModel::load_with(vit.join(file), options) {
            Ok(model) => {
                let dim = model.config().embed_dim;
                let image = model
                    .encode_image(&pixels)
                    .map_err(Into::into)
                    .and_then(|t| to_f32_vec(&t));
                tally.check(
                    &format!("{label} image"),
                    image,
                    &vit.join(format!("{expected}image_embeds.npy")),
                    dim,
                    dtype,
                );
                let text = model
                    .encode_text(&ids)
                    .map_err(Into::into)
                    .and_then(|t| to_f32_vec(&t));
                tally.check(
                    &format!("{label} text"),
                    text,
                    &vit.join(format!("{expected}text_embeds.npy")),
                    dim,
                    dtype,
                );
                if file.starts_with("open_clip") && expected.is_empty() {
                    // All 77 positions against the cut run: the same open_clip reference.
                    let full = model
                        .encode_text_with(&ids, TextLength::Full)
                        .map_err(Into::into)
                        .and_then(|t| to_f32_vec(&t));
                    tally.check(
                        &format!("{label} text, all 77 positions"),
                        full,
                        &vit.join("text_embeds.npy"),
                        dim,
                        dtype,
                    );
                }
            }
            Err(e) => {
                println!("FAIL {label}: loading: {e}");
                tally.failed += 1;
            }
        }
    }
    match ModifiedResNet::from_file(fixtures.join("resnet_tiny.safetensors"), dtype, &device) {
        Ok(model) => {
            let x =
                npy_tensor(&fixtures.join("resnet_tiny_input.npy"), &device)?.to_dtype(dtype)?;
            let dim = model.output_dim();
            let got = model
                .encode(&x)
                .map_err(Into::into)
                .and_then(|t| to_f32_vec(&t));
            tally.check(
                "resnet embeddings",
                got,
                &fixtures.join("resnet_tiny_expected.npy"),
                dim,
                dtype,
            );
            let maps = model
                .feature_maps(&x)
                .map_err(Box::<dyn std::error::Error>::from)
                .and_then(|maps| {
                    let mut all = Vec::new();
                    for m in &maps {
                        all.extend(to_f32_vec(m)?);
                    }
                    Ok(all)
                });
            // One row holding every map value: the cosine and the largest difference over all.
            let len = maps.as_ref().map(Vec::len).unwrap_or(1);
            tally.check(
                "resnet feature maps",
                maps,
                &fixtures.join("resnet_tiny_maps.npy"),
                len,
                dtype,
            );
        }
        Err(e) => {
            println!("FAIL resnet: loading: {e}");
            tally.failed += 1;
        }
    }
    println!("{} passed, {} failed", tally.passed, tally.failed);
    if tally.failed > 0 {
        return Err(fail!(
            "{} parity check(s) failed on {:?} in {dtype:?}",
            tally.failed,
            device.location()
        ));
    }
    Ok(())
}

struct BenchArgs {
    device: String,
    dtype: String,
    weights: PathBuf,
    image_batches: Vec<usize>,
    text_batches: Vec<usize>,
    reps: usize,
    warmup: usize,
    inputs: Option<PathBuf>,
}

/// Seconds of each timed run of `f`, each ended by a device synchronisation.
fn time_runs(
    device: &Device,
    warmup: usize,
    reps: usize,
    mut f: impl FnMut() -> Res<Tensor>,
) -> Res<Vec<f64>> {
    for _ in 0..warmup {
        f()?;
        device.synchronize()?;
    }
    let mut secs = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t0 = Instant::now();
        let out = f()?;
        device.synchronize()?;
        secs.push(t0.elapsed().as_secs_f64());
        drop(out);
    }
    Ok(secs)
}

/// Token ids like the PyTorch side's: start-of-text, random ids, end-of-text at a varying
/// position (an ImageNet prompt has ~10–20 tokens), zero padding to 77.
fn token_ids(rows: usize, vocab: u32, context: usize) -> Vec<u32> {
    let mut rng = dev_support::Rng::new(7);
    let mut ids = vec![0u32; rows * context];
    for r in 0..rows {
        let eot = 8 + rng.below(13);
        let row = &mut ids[r * context..(r + 1) * context];
        row[0] = vocab - 2;
        for v in &mut row[1..eot] {
            *v = 1 + rng.below(vocab as usize - 3) as u32;
        }
        row[eot] = vocab - 1;
    }
    ids
}

fn bench(a: &BenchArgs) -> Res<()> {
    let device = device_from_name(&a.device)?;
    let dtype = parse_dtype(&a.dtype)?;
    let t0 = Instant::now();
    let opts = LoadOptions {
        dtype,
        device: device.clone(),
        ..LoadOptions::default()
    };
    let model = ClipModel::load_with(&a.weights, &opts)?;
    device.synchronize()?;
    let cfg = model.config();
    let size = cfg.vision.image_size();
    println!(
        "{}",
        json!({"device": format!("{:?}", device.location()), "dtype": a.dtype, "model": model.name(),
               "load_seconds": t0.elapsed().as_secs_f64()})
    );
    for &batch in &a.image_batches {
        let x = Tensor::randn(0f32, 1.0, (batch, 3, size, size), &device)?.to_dtype(dtype)?;
        let secs = time_runs(&device, a.warmup, a.reps, || Ok(model.encode_image(&x)?))?;
        println!(
            "{}",
            json!({"workload": "image", "batch": batch, "size": size, "seconds": secs})
        );
    }
    let context = cfg.text.context_length;
    // The PyTorch side's token ids when given (the same prompts for both), else like them.
    let given = match &a.inputs {
        Some(dir) if dir.join("text_ids.npy").exists() => {
            Some(npy_tensor(&dir.join("text_ids.npy"), &Device::Cpu)?)
        }
        _ => None,
    };
    for &batch in &a.text_batches {
        // On the host, as a tokenizer hands them over; the model copies them to the device.
        let ids = match &given {
            Some(t) if t.dim(0)? >= batch => t.narrow(0, 0, batch)?,
            _ => Tensor::from_vec(
                token_ids(batch, cfg.text.vocab_size as u32, context),
                (batch, context),
                &Device::Cpu,
            )?,
        };
        for (name, length) in [
            ("text", TextLength::UpToLongestEot),
            ("text77", TextLength::Full),
        ] {
            let secs = time_runs(&device, a.warmup, a.reps, || {
                Ok(model.encode_text_with(&ids, length)?)
            })?;
            println!(
                "{}",
                json!({"workload": name, "batch": batch, "seconds": secs})
            );
        }
    }
    if let Some(dir) = &a.inputs {
        let pixels = dir.join(format!("pixels_{size}.npy"));
        if pixels.exists() {
            let e = model.encode_image(&npy_tensor(&pixels, &device)?)?;
            save(&e, &dir.join(format!("ours_{}_image.npy", a.dtype)))?;
        }
        let ids = dir.join("text_ids.npy");
        if ids.exists() && !a.text_batches.is_empty() {
            let e = model.encode_text(&npy_tensor(&ids, &Device::Cpu)?)?;
            save(&e, &dir.join(format!("ours_{}_text.npy", a.dtype)))?;
        }
    }
    Ok(())
}

fn save(t: &Tensor, path: &Path) -> Res<()> {
    Npy::f32(t.dims().to_vec(), to_f32_vec(t)?)
        .write(path)
        .map_err(|e| at(path, e))
}
