//! `cargo xtask bench-compare`: our encoders and search side by side with PyTorch + open_clip,
//! ONNX Runtime and FAISS, interleaved in one run on the same machine.
//!
//! `tools/reference/bench_compare.py prepare` builds random full-size open_clip models (ViT-B/32,
//! and RN50x64 unless `--skip-rn50x64`), saves them as safetensors and exports the ViT-B/32 towers
//! to ONNX. Both sides load the same safetensors file. The script then runs as a timing server
//! (`serve`); every round runs each workload on each engine in turn (the order rotates), so load
//! changes on the machine hit all engines alike. Same shapes, same thread count (`--threads`,
//! default 2: `RAYON_NUM_THREADS` here, `torch.set_num_threads`, ORT intra-op threads, FAISS OpenMP
//! threads). Medians over rounds are compared; the last line is a one-line summary of all ratios.
//!
//! Unless `--skip-families`, the other families are timed against their own references too:
//! SigLIP 2 B/16 @224 (image batch 32 and text at 64 tokens, against transformers' `SiglipModel`)
//! and the RoBERTa-wwm-ext-base text tower of Chinese-CLIP ViT-B/16 on cn_clip's Chinese ImageNet
//! prompts (ours packed per row vs cn_clip's `encode_text` with its padding mask), random
//! full-size weights written by `bench_compare.py prepare --families`.
//!
//! Reduced precision, compared like with like: ViT-B/32 image batch 32 with our opt-in bf16
//! products (on a CPU with AVX-512-BF16), PyTorch with the model cast to bfloat16, and ONNX
//! Runtime with the image tower quantised to int8 (`quantize_dynamic`), each with its min cosine
//! to its own engine's f32 embeddings.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};
use clip_eval::{ClassNames, Templates};
use clip_model::candle_core::{Device, Tensor};
use clip_model::{ClipModel, TextLength, Tokenizer, Truncation};
use feature_store::{FlatIndex, ImageId, Precision, SearchBuffer, SearchOptions, VectorIndex};
use serde_json::{Value, json};

/// Arguments of `cargo xtask bench-compare`.
#[derive(clap::Args)]
pub struct Args {
    /// Threads for every engine.
    #[arg(long, default_value_t = 2, value_parser = crate::args::count(1, crate::args::MAX_THREADS))]
    pub threads: usize,
    /// Interleaved rounds (medians are taken over rounds).
    #[arg(long, default_value_t = 3, value_parser = crate::args::count(1, 1000))]
    pub rounds: usize,
    /// Prompts per text batch (real ImageNet prompts, 77 tokens).
    #[arg(long, default_value_t = 64, value_parser = crate::args::count(1, crate::args::MAX_BATCH))]
    pub text_batch: usize,
    /// Leave out RN50x64 @448 (its random model takes ~2.5 GB per side and minutes to build).
    #[arg(long)]
    pub skip_rn50x64: bool,
    /// Leave out SigLIP 2 B/16 and the Chinese-CLIP text tower.
    #[arg(long)]
    pub skip_families: bool,
    /// Rows of the search matrix (512-d).
    #[arg(long, default_value_t = 1_000_000, value_parser = crate::args::count(1, 100_000_000))]
    pub search_rows: usize,
    /// Single-query searches per round.
    #[arg(long, default_value_t = 20, value_parser = crate::args::count(1, 1_000_000))]
    pub queries: usize,
    /// An `eval-imagenet` summary.json whose end-to-end and model-only throughputs (and classifier
    /// build time, when that run built it) are reported.
    #[arg(long)]
    pub eval_summary: Option<PathBuf>,
    /// Rebuild the random models and ONNX files even when cached (`target/bench-compare/`).
    #[arg(long)]
    pub regenerate: bool,
    /// Python of the reference venv (default: $CLIP_REF_VENV/bin/python or
    /// ~/.cache/clip-rs/reference-venv/bin/python).
    #[arg(long)]
    pub python: Option<PathBuf>,
}

/// The Python timing server.
struct Reference {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Reference {
    fn start(python: &Path, script: &Path, dir: &Path, threads: usize) -> anyhow::Result<Self> {
        let mut child = Command::new(python)
            .arg(script)
            .args(["serve", "--dir"])
            .arg(dir)
            .args(["--threads", &threads.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", python.display()))?;
        let stdin = child.stdin.take().context("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("no stdout")?);
        let mut r = Reference {
            child,
            stdin,
            stdout,
        };
        let ready = r.read()?;
        println!("reference: {ready}");
        Ok(r)
    }

    fn read(&mut self) -> anyhow::Result<Value> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            bail!("the reference server exited");
        }
        Ok(serde_json::from_str(&line)?)
    }

    /// Seconds of each repetition of `cmd`.
    fn time(&mut self, cmd: Value) -> anyhow::Result<Vec<f64>> {
        writeln!(self.stdin, "{cmd}")?;
        self.stdin.flush()?;
        let v = self.read()?;
        if let Some(e) = v.get("error") {
            bail!("reference {cmd}: {e}");
        }
        let secs = v["seconds"]
            .as_array()
            .context("no seconds in the answer")?
            .iter()
            .filter_map(Value::as_f64)
            .collect();
        Ok(secs)
    }
}

impl Reference {
    /// The min per-image cosine of `engine`'s ViT-B/32 image embeddings to PyTorch f32's.
    fn cosine(&mut self, engine: &str, batch: usize) -> anyhow::Result<f64> {
        let cmd = json!({"engine": engine, "workload": "cosine", "batch": batch});
        writeln!(self.stdin, "{cmd}")?;
        self.stdin.flush()?;
        let v = self.read()?;
        if let Some(e) = v.get("error") {
            bail!("reference {cmd}: {e}");
        }
        v["cosine"].as_f64().context("no cosine in the answer")
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One workload's timings per engine (seconds per repetition, all rounds).
struct Workload {
    name: &'static str,
    /// Items per repetition (images, prompts, queries).
    items: usize,
    unit: &'static str,
    engines: Vec<(&'static str, Vec<f64>)>,
}

impl Workload {
    fn new(name: &'static str, items: usize, unit: &'static str) -> Self {
        Workload {
            name,
            items,
            unit,
            engines: Vec::new(),
        }
    }
    fn add(&mut self, engine: &'static str, secs: Vec<f64>) {
        match self.engines.iter_mut().find(|(e, _)| *e == engine) {
            Some((_, v)) => v.extend(secs),
            None => self.engines.push((engine, secs)),
        }
    }
    fn median(&self, engine: &str) -> Option<f64> {
        let (_, v) = self.engines.iter().find(|(e, _)| *e == engine)?;
        median(v)
    }
    fn rate(&self, engine: &str) -> Option<f64> {
        self.median(engine).map(|s| self.items as f64 / s)
    }
}

fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

fn time_ours<T>(reps: usize, mut f: impl FnMut() -> anyhow::Result<T>) -> anyhow::Result<Vec<f64>> {
    f()?; // warm-up, as on the Python side
    let mut secs = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t0 = Instant::now();
        f()?;
        secs.push(t0.elapsed().as_secs_f64());
    }
    Ok(secs)
}

/// Real ImageNet prompts (OpenAI names × 80 templates), spread over classes and templates.
fn prompts(n: usize) -> anyhow::Result<Vec<String>> {
    spread_prompts(n, &ClassNames::openai()?, &Templates::openai80()?)
}

/// `n` prompts spread over the classes and templates of a set.
fn spread_prompts(
    n: usize,
    names: &ClassNames,
    templates: &Templates,
) -> anyhow::Result<Vec<String>> {
    Ok((0..n)
        .map(|i| {
            let class = (i * 997 + 13) % names.len();
            let t = (i * 31 + 7) % templates.len();
            templates.templates[t].replace("{}", &names.names[class])
        })
        .collect())
}

fn random_unit_rows(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    let mut next = move || {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    };
    let mut v: Vec<f32> = (0..n * dim).map(|_| next()).collect();
    for row in v.chunks_mut(dim) {
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        row.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.threads == 0 || args.rounds == 0 || args.text_batch == 0 {
        bail!("--threads, --rounds and --text-batch must be positive");
    }
    if cfg!(debug_assertions) && std::env::var_os("CLIP_BENCH_ALLOW_DEBUG").is_none() {
        // Timings of an unoptimised build mean nothing: rerun this command from a release build.
        let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args([
                "run",
                "--release",
                "--package",
                "xtask",
                "--",
                "bench-compare",
            ])
            .args(std::env::args_os().skip(2))
            .status()
            .context("re-running bench-compare from a release build")?;
        if !status.success() {
            bail!("release bench-compare failed ({status})");
        }
        return Ok(());
    }
    // SAFETY: called before any other thread of this process exists (candle's and rayon's pools
    // start on first use, below), so no thread reads the environment concurrently.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", args.threads.to_string()) };
    let root = dev_support::workspace_root();
    let root = root.canonicalize().unwrap_or(root);
    let dir = root.join("target/bench-compare");
    let python = crate::reference::python(args.python.clone())?;
    let script = root.join("tools/reference/bench_compare.py");

    let mut prep = Command::new(&python);
    prep.arg(&script).args(["prepare", "--out"]).arg(&dir);
    if !args.skip_rn50x64 {
        prep.arg("--rn50x64");
    }
    if args.regenerate {
        prep.arg("--regenerate");
    }
    if !args.skip_families {
        prep.arg("--families");
    }
    let status = prep.status().context("running bench_compare.py prepare")?;
    if !status.success() {
        bail!("bench_compare.py prepare failed ({status})");
    }

    // The text batch, tokenised here (our tokenizer matches OpenAI's on all 80,000 ImageNet
    // prompts) and handed to the Python side as the same ids.
    let texts = prompts(args.text_batch)?;
    let tokenizer = Tokenizer::openai()?;
    let batch = tokenizer.encode_batch(&texts, 77, Truncation::Error)?;
    let longest = batch.eot_positions().iter().max().map_or(0, |e| e + 1);
    let ids_vec = batch.into_ids();
    dev_support::Npy::i64(
        vec![args.text_batch, 77],
        ids_vec.iter().map(|&i| i64::from(i)).collect(),
    )
    .write(dir.join("prompt_ids.npy"))?;
    let ids = Tensor::from_vec(ids_vec, (args.text_batch, 77), &Device::Cpu)?;

    // Tokenising all 80,000 classifier prompts (part of the classifier's build time).
    let all_prompts: Vec<String> = {
        let names = ClassNames::openai()?;
        let templates = Templates::openai80()?;
        names.names.iter().flat_map(|n| templates.fill(n)).collect()
    };
    let t0 = Instant::now();
    let all = tokenizer.encode_batch(&all_prompts, 77, Truncation::Error)?;
    let tokenize_s = t0.elapsed().as_secs_f64();
    let mean_len = all.eot_positions().iter().map(|e| e + 1).sum::<usize>() as f64
        / all.eot_positions().len().max(1) as f64;

    let vit = ClipModel::load(dir.join("vit-b-32/open_clip_model.safetensors"))?;
    let vit_bf16 = ClipModel::load_with(
        dir.join("vit-b-32/open_clip_model.safetensors"),
        &clip_model::LoadOptions {
            bf16_products: true,
            ..clip_model::LoadOptions::default()
        },
    )?;
    println!("ours bf16: {:?}", vit_bf16.notes());
    let rn = if args.skip_rn50x64 {
        None
    } else {
        Some(ClipModel::load(
            dir.join("rn50x64/open_clip_model.safetensors"),
        )?)
    };
    println!("building the {}×512 search matrix", args.search_rows);
    let (index, index16) = {
        let rows = random_unit_rows(args.search_rows, 512, 7);
        let build = |precision| -> anyhow::Result<FlatIndex> {
            let mut index = FlatIndex::new(512, precision);
            index.reserve(args.search_rows);
            for (i, row) in rows.chunks(512).enumerate() {
                index.upsert(ImageId(i as i64), row)?;
            }
            Ok(index)
        };
        (build(Precision::F32)?, build(Precision::F16)?)
    };
    let queries = random_unit_rows(args.queries + 1, 512, 11);

    // The other families: their token ids written for the Python side, their models loaded.
    let families = if args.skip_families {
        None
    } else {
        let tb = args.text_batch;
        let cn_texts = spread_prompts(tb, &ClassNames::cn_clip()?, &Templates::cn_clip80()?)?;
        let cn_ids = Tokenizer::cn_clip()?
            .encode_batch(&cn_texts, 52, Truncation::Error)?
            .into_ids();
        dev_support::Npy::i64(vec![tb, 52], cn_ids.iter().map(|&i| i64::from(i)).collect())
            .write(dir.join("cn_prompt_ids.npy"))?;
        // SigLIP runs all 64 positions whatever the ids; any ids inside the vocabulary do.
        let sig_ids: Vec<u32> = (0..tb * 64).map(|i| (i as u32 * 7919) % 32_000).collect();
        dev_support::Npy::i64(
            vec![tb, 64],
            sig_ids.iter().map(|&i| i64::from(i)).collect(),
        )
        .write(dir.join("siglip_ids.npy"))?;
        Some((
            ClipModel::load(dir.join("siglip2-b-16/model.safetensors"))?,
            Tensor::from_vec(sig_ids, (tb, 64), &Device::Cpu)?,
            ClipModel::load(dir.join("cn-vit-b-16/model.safetensors"))?,
            Tensor::from_vec(cn_ids, (tb, 52), &Device::Cpu)?,
        ))
    };

    let mut reference = Reference::start(&python, &script, &dir, args.threads)?;
    let px32 = Tensor::randn(0f32, 1.0, (32, 3, 224, 224), &Device::Cpu)?;
    let px1 = Tensor::randn(0f32, 1.0, (1, 3, 224, 224), &Device::Cpu)?;
    let px448 = Tensor::randn(0f32, 1.0, (1, 3, 448, 448), &Device::Cpu)?;

    let mut w_b32 = Workload::new("ViT-B/32 image batch 32", 32, "img/s");
    let mut w_b1 = Workload::new("ViT-B/32 image batch 1", 1, "img/s");
    let mut w_text = Workload::new("ViT-B/32 text 77 tokens", args.text_batch, "prompts/s");
    let mut w_eot = Workload::new("ViT-B/32 text to each EOT", args.text_batch, "prompts/s");
    let mut w_rn = Workload::new("RN50x64 @448 image batch 1", 1, "img/s");
    let mut w_search = Workload::new("top-10 search f32", 1, "queries/s");
    let mut w_search16 = Workload::new("top-10 search f16 store", 1, "queries/s");
    let mut w_b32_low = Workload::new("ViT-B/32 image b32 reduced", 32, "img/s");
    let mut w_sig_img = Workload::new("SigLIP2 B/16 image batch 32", 32, "img/s");
    let mut w_sig_text = Workload::new("SigLIP2 B/16 text 64 tokens", args.text_batch, "prompts/s");
    let mut w_cn_text = Workload::new("CN-CLIP RoBERTa text 52", args.text_batch, "prompts/s");
    let tb = args.text_batch;
    let started = Instant::now();
    for round in 0..args.rounds {
        println!(
            "round {}/{} ({:.0} s)",
            round + 1,
            args.rounds,
            started.elapsed().as_secs_f64()
        );
        // Rotate who goes first.
        let ours_first = round % 2 == 0;
        let mut step = |w: &mut Workload,
                        ours: &mut dyn FnMut() -> anyhow::Result<Vec<f64>>,
                        refs: &[(&'static str, Value)]|
         -> anyhow::Result<()> {
            if ours_first {
                w.add("ours", ours()?);
            }
            for (engine, cmd) in refs {
                w.add(engine, reference.time(cmd.clone())?);
            }
            if !ours_first {
                w.add("ours", ours()?);
            }
            Ok(())
        };
        step(
            &mut w_b32,
            &mut || time_ours(1, || Ok(vit.encode_image(&px32)?)),
            &[
                (
                    "torch",
                    json!({"engine":"torch","workload":"image","batch":32,"reps":1}),
                ),
                (
                    "ort",
                    json!({"engine":"ort","workload":"image","batch":32,"reps":1}),
                ),
            ],
        )?;
        step(
            &mut w_b1,
            &mut || time_ours(5, || Ok(vit.encode_image(&px1)?)),
            &[
                (
                    "torch",
                    json!({"engine":"torch","workload":"image","batch":1,"reps":5}),
                ),
                (
                    "ort",
                    json!({"engine":"ort","workload":"image","batch":1,"reps":5}),
                ),
            ],
        )?;
        step(
            &mut w_text,
            &mut || time_ours(1, || Ok(vit.encode_text_with(&ids, TextLength::Full)?)),
            &[
                (
                    "torch",
                    json!({"engine":"torch","workload":"text","batch":tb,"reps":1}),
                ),
                (
                    "ort",
                    json!({"engine":"ort","workload":"text","batch":tb,"reps":1}),
                ),
            ],
        )?;
        w_eot.add(
            "ours",
            time_ours(1, || {
                Ok(vit.encode_text_with(&ids, TextLength::UpToLongestEot)?)
            })?,
        );
        if let Some(rn) = &rn {
            step(
                &mut w_rn,
                &mut || time_ours(1, || Ok(rn.encode_image(&px448)?)),
                &[(
                    "torch",
                    json!({"engine":"torch","workload":"image","model":"rn50x64","batch":1,"reps":1,"no_warmup": round > 0}),
                )],
            )?;
        }
        step(
            &mut w_b32_low,
            &mut || time_ours(1, || Ok(vit_bf16.encode_image(&px32)?)),
            &[
                (
                    "torch_bf16",
                    json!({"engine":"torch_bf16","workload":"image","batch":32,"reps":1}),
                ),
                (
                    "ort_int8",
                    json!({"engine":"ort_int8","workload":"image","batch":32,"reps":1}),
                ),
            ],
        )?;
        if let Some((sig, sig_ids, cn, cn_ids)) = &families {
            step(
                &mut w_sig_img,
                &mut || time_ours(1, || Ok(sig.encode_image(&px32)?)),
                &[(
                    "torch",
                    json!({"engine":"torch","workload":"siglip_image","batch":32,"reps":1}),
                )],
            )?;
            step(
                &mut w_sig_text,
                &mut || time_ours(1, || Ok(sig.encode_text(sig_ids)?)),
                &[(
                    "torch",
                    json!({"engine":"torch","workload":"siglip_text","batch":tb,"reps":1}),
                )],
            )?;
            step(
                &mut w_cn_text,
                &mut || time_ours(1, || Ok(cn.encode_text(cn_ids)?)),
                &[(
                    "torch",
                    json!({"engine":"torch","workload":"cn_text","batch":tb,"reps":1}),
                )],
            )?;
        }
        let nq = args.queries;
        step(
            &mut w_search,
            &mut || {
                let mut buf = SearchBuffer::new();
                let mut i = 0;
                time_ours(nq, || {
                    i += 1;
                    let q = &queries[(i % (nq + 1)) * 512..][..512];
                    index.search_into(q, SearchOptions::top(10), &mut buf)?;
                    Ok(())
                })
            },
            &[(
                "faiss",
                json!({"engine":"faiss","workload":"search","n":args.search_rows,"dim":512,"k":10,"reps":nq}),
            )],
        )?;
        let mut buf = SearchBuffer::new();
        let mut i = 0;
        w_search16.add(
            "ours",
            time_ours(nq, || {
                i += 1;
                let q = &queries[(i % (nq + 1)) * 512..][..512];
                Ok(index16.search_into(q, SearchOptions::top(10), &mut buf)?)
            })?,
        );
    }
    // Cosines of the reduced-precision engines to their own f32 results (same 32 images).
    let unit_rows = |t: &Tensor| -> anyhow::Result<Vec<Vec<f32>>> {
        Ok(t.to_vec2::<f32>()?
            .into_iter()
            .map(|r| {
                let n = r.iter().map(|x| x * x).sum::<f32>().sqrt();
                r.into_iter().map(|x| x / n).collect()
            })
            .collect())
    };
    let ours_cos = {
        let a = unit_rows(&vit.encode_image(&px32)?)?;
        let b = unit_rows(&vit_bf16.encode_image(&px32)?)?;
        a.iter()
            .zip(&b)
            .map(|(x, y)| x.iter().zip(y).map(|(p, q)| f64::from(p * q)).sum::<f64>())
            .fold(f64::INFINITY, f64::min)
    };
    let torch_bf16_cos = reference.cosine("torch_bf16", 32).ok();
    let ort_int8_cos = reference.cosine("ort_int8", 32).ok();
    drop(reference);

    println!();
    println!(
        "reduced precision, ViT-B/32 image batch 32 (img/s, min cosine to the engine's own f32):"
    );
    for (engine, label, cos) in [
        ("ours", "ours bf16 products", Some(ours_cos)),
        ("torch_bf16", "PyTorch bfloat16", torch_bf16_cos),
        ("ort_int8", "ONNX Runtime int8 dynamic", ort_int8_cos),
    ] {
        println!(
            "  {label:<28} {:>10} img/s   cosine {}",
            w_b32_low
                .rate(engine)
                .map_or_else(|| "-".into(), |r| format!("{r:.3}")),
            cos.map_or_else(|| "-".into(), |c| format!("{c:.6}"))
        );
    }
    println!();
    println!(
        "{:<30} {:>12} {:>12} {:>12}   ratios (ours / other)",
        "workload", "ours", "torch", "ort/faiss"
    );
    let mut summary = Vec::new();
    for w in [
        &w_b32,
        &w_b1,
        &w_text,
        &w_eot,
        &w_rn,
        &w_search,
        &w_search16,
        &w_sig_img,
        &w_sig_text,
        &w_cn_text,
    ] {
        let Some(ours) = w.rate("ours") else { continue };
        let fmt = |e: &str| {
            w.rate(e)
                .map_or_else(|| "-".to_string(), |r| format!("{r:.3}"))
        };
        let other = if w.rate("faiss").is_some() {
            "faiss"
        } else {
            "ort"
        };
        let mut ratios = Vec::new();
        for e in ["torch", "ort", "faiss"] {
            if let Some(r) = w.rate(e) {
                ratios.push(format!("{:.2}x {e}", ours / r));
            }
        }
        println!(
            "{:<30} {:>12} {:>12} {:>12}   {} [{}]",
            w.name,
            format!("{ours:.3}"),
            fmt("torch"),
            fmt(other),
            ratios.join(", "),
            w.unit
        );
        summary.push((w, ours));
    }
    let ms = |w: &Workload, e: &str| w.median(e).map(|s| s * 1000.0);
    if let (Some(o), Some(t), Some(r)) = (ms(&w_b1, "ours"), ms(&w_b1, "torch"), ms(&w_b1, "ort")) {
        println!("batch-1 latency: ours {o:.1} ms, torch {t:.1} ms, ort {r:.1} ms");
    }
    if let (Some(o), Some(h), Some(f)) = (
        ms(&w_search, "ours"),
        ms(&w_search16, "ours"),
        ms(&w_search, "faiss"),
    ) {
        println!(
            "search 1 query over {} × 512 rows: ours f32 {o:.2} ms, ours f16 {h:.2} ms, faiss flat f32 {f:.2} ms",
            args.search_rows
        );
    }
    // The classifier: 80,000 prompts, estimated from the measured text throughputs (the eval
    // command runs the to-last-EOT path in batches; mean prompt length here {mean_len}).
    let est = |rate: Option<f64>| rate.map(|r| all_prompts.len() as f64 / r + tokenize_s);
    let cls_ours = est(w_eot.rate("ours"));
    let cls_torch = est(w_text.rate("torch"));
    if let Some(c) = cls_ours {
        println!(
            "classifier 1000×80 (ESTIMATE = 80,000 prompts ÷ measured prompts/s at batch {tb}, each row run to its own EOT, \
             + {tokenize_s:.2} s measured tokenising; mean prompt {mean_len:.1} tokens over all 80,000, this batch's longest {longest}): \
             ours ≈ {:.1} min; open_clip at 77 tokens ≈ {:.1} min",
            c / 60.0,
            cls_torch.map_or(f64::NAN, |c| c / 60.0)
        );
    }
    let eval = match &args.eval_summary {
        Some(p) => eval_numbers(p)?,
        None => None,
    };
    if let Some(e) = &eval {
        println!(
            "eval-imagenet: end to end {:.2} img/s, model only {:.2} img/s, ratio {:.2}",
            e.end_to_end,
            e.model,
            e.end_to_end / e.model
        );
        if let Some(c) = e.classifier_s {
            println!(
                "classifier 1000 × {} built (not cached) by that eval-imagenet run in {:.1} min",
                e.templates,
                c / 60.0
            );
        }
    }

    // The one-line summary.
    let mut parts = Vec::new();
    let best = |w: &Workload| match (w.rate("torch"), w.rate("ort")) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    if let (Some(o), Some(b)) = (w_b32.rate("ours"), best(&w_b32)) {
        parts.push(format!("vit32-b32 {:.2}x best", o / b));
    }
    if let (Some(o), Some(b)) = (w_b1.rate("ours"), best(&w_b1)) {
        parts.push(format!("vit32-b1 {:.2}x best", o / b));
    }
    if let (Some(o), Some(b)) = (w_text.rate("ours"), best(&w_text)) {
        parts.push(format!("text77 {:.2}x best", o / b));
    }
    if let (Some(o), Some(t)) = (w_rn.rate("ours"), w_rn.rate("torch")) {
        parts.push(format!("rn50x64 {:.2}x torch", o / t));
    }
    match eval.as_ref().and_then(|e| e.classifier_s.map(|c| (e, c))) {
        Some((e, c)) => parts.push(format!(
            "classifier 1000x{} {:.1}min(measured)",
            e.templates,
            c / 60.0
        )),
        None => {
            if let Some(c) = cls_ours {
                parts.push(format!("classifier≈{:.1}min(est)", c / 60.0));
            }
        }
    }
    if let (Some(o), Some(f)) = (w_search.rate("ours"), w_search.rate("faiss")) {
        let ms = w_search.median("ours").unwrap_or(f64::NAN) * 1000.0;
        parts.push(format!("search-f32 {:.2}x faiss {ms:.1}ms/q", o / f));
    }
    if let (Some(o), Some(f)) = (w_search16.rate("ours"), w_search.rate("faiss")) {
        let ms = w_search16.median("ours").unwrap_or(f64::NAN) * 1000.0;
        parts.push(format!("search-f16 {:.2}x faiss {ms:.1}ms/q", o / f));
    }
    if let (Some(o), Some(t)) = (w_b32_low.rate("ours"), w_b32_low.rate("torch_bf16")) {
        parts.push(format!("vit32-b32-bf16 {:.2}x torch-bf16", o / t));
    }
    if let (Some(o), Some(t)) = (w_b32_low.rate("ours"), w_b32_low.rate("ort_int8")) {
        parts.push(format!("{:.2}x ort-int8", o / t));
    }
    for (w, key) in [
        (&w_sig_img, "siglip2-b16-img32"),
        (&w_sig_text, "siglip2-text64"),
        (&w_cn_text, "cn-text52"),
    ] {
        if let (Some(o), Some(t)) = (w.rate("ours"), w.rate("torch")) {
            parts.push(format!("{key} {:.2}x torch", o / t));
        }
    }
    if let Some(e) = &eval {
        parts.push(format!("eval e2e/model {:.2}", e.end_to_end / e.model));
    }
    println!("SUMMARY threads={} {}", args.threads, parts.join(" | "));
    Ok(())
}

/// What bench-compare reports from an `eval-imagenet` summary.json.
struct EvalNumbers {
    /// Images/s end to end.
    end_to_end: f64,
    /// Images/s in the model alone.
    model: f64,
    /// Seconds to build the classifier, when that run built it (not read from its cache).
    classifier_s: Option<f64>,
    /// Prompt templates per class (eval-imagenet always has ImageNet's 1000 classes).
    templates: u64,
}

/// The numbers of an `eval-imagenet` summary.json (`None` when its timing fields are missing).
fn eval_numbers(path: &Path) -> anyhow::Result<Option<EvalNumbers>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let v: Value = serde_json::from_str(&text)?;
    let timing = if v["timing"].is_object() {
        &v["timing"]
    } else {
        &v["base"]["timing"]
    };
    let built = v["timing_detail"]["classifier_cached"].as_bool() == Some(false);
    Ok(timing["images_per_s"]
        .as_f64()
        .zip(v["timing_detail"]["images_per_s_model"].as_f64())
        .map(|(end_to_end, model)| EvalNumbers {
            end_to_end,
            model,
            classifier_s: timing["classifier_s"].as_f64().filter(|_| built),
            templates: v["n_templates"].as_u64().unwrap_or(0),
        }))
}
