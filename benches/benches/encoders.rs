//! Image and text encoder benchmarks on random full-size weights (no files needed).
//!
//! - `image/<model>/batch<N>`: ViT-B/32 @224 and RN50 @224 at batch 1 and 32 (throughput =
//!   images/s); on a CPU with AVX-512-BF16 also `ViT-B/32@224-bf16` (opt-in bf16 weights and
//!   products, `LoadOptions::bf16_products`). With `CLIP_BENCH_HEAVY=1` also ViT-B/16 @224 (batch 1, 32) and RN50x64 @448
//!   (batch 1, 4): each of their iterations takes seconds to tens of seconds on two cores.
//! - `text/<length>/batch<N>`: the ViT-B/32 text tower on real ImageNet prompts (OpenAI's class
//!   names × 80 templates, spread over the classes), all 77 positions (`full77`, open_clip's
//!   way) vs. each row run only to its own end-of-text token (`to_eot`, the default), batch 1 and 256
//!   (throughput = prompts/s). The full-length batch of 256 runs only with `CLIP_BENCH_HEAVY=1`.
//!
//! - `text_cn/<length>/batch<N>`: the RoBERTa-wwm-ext-base text tower of Chinese-CLIP ViT-B/16 on
//!   cn_clip's Chinese ImageNet prompts (1000 names × 80 templates, spread over the classes), context
//!   52: each row over its own tokens (`packed`, the default) vs. all 52 positions with the padding
//!   masked (`padded52`, cn_clip's way), batch 1 and 256.
//!
//! - `siglip2/<tower>/batch<N>`: SigLIP 2 B/16 @224 (`google/siglip2-base-patch16-224`'s
//!   architecture: 768 wide, 12 layers, 12 heads, MLP 3072, MAP head; text 64 tokens, bidirectional)
//!   image batch 1 and 32, text batch 1 and 256. The token embedding has 32,000 rows instead of
//!   Gemma's 256,000 (a lookup costs the same; 0.7 GB less memory).
//!
//! For profilers (perf, callgrind), `CLIP_BENCH_LOOP=<preset>:<batch>:<iterations>` (e.g.
//! `ViT-B/32:32:3`, `ViT-B/32-bf16:32:3` for bf16 products, or `text:256:3` / `text77:256:3` for
//! the text tower) runs exactly that many encodes, prints the CPU and wall seconds of each, and
//! exits before criterion starts.
//!
//! `CLIP_BENCH_BF16_COSINE=1` checks the bf16 guard on the full-size random models instead (see
//! `bf16_cosines`): the smallest per-embedding cosine of bf16 products to f32 for every tower of
//! ViT-B/32, RN50 (image), SigLIP 2 B/16 and Chinese-CLIP ViT-B/16.
//!
//! Weights are plain random tensors handed to `ClipModel::from_tensors_with` (no trainable
//! variables, so candle keeps no gradient graph). Threads: candle's default (all cores, or
//! `RAYON_NUM_THREADS`). `cargo bench -p clip-benches --bench encoders`.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use clip_eval::{ClassNames, Templates};
use clip_model::candle_core::{DType, Device, Tensor};
use clip_model::{
    Activation, ChineseClipConfig, ClipConfig, ClipModel, LoadOptions, SiglipVisionConfig,
    TextConfig, TextLength, Tokenizer, Truncation, VisionConfig,
};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};

/// Whether this CPU has AVX-512-BF16 (for the bf16 rows).
fn bf16_cpu() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn heavy() -> bool {
    std::env::var_os("CLIP_BENCH_HEAVY").is_some_and(|v| v != "0")
}

/// Random f32 tensors of the given shapes: ones where `one(name, shape)` (norm gains, running
/// variances), N(0, 0.02) elsewhere.
fn random_tensors(
    shapes: Vec<(String, Vec<usize>)>,
    one: impl Fn(&str, &[usize]) -> bool,
) -> HashMap<String, Tensor> {
    shapes
        .into_iter()
        .map(|(name, shape)| {
            let t = match one(&name, &shape) {
                true => Tensor::ones(shape, DType::F32, &Device::Cpu),
                false => Tensor::randn(0f32, 0.02, shape, &Device::Cpu),
            };
            (name, t.expect("random tensor"))
        })
        .collect()
}

/// f32 on the CPU, with bf16 weights and products (`LoadOptions::bf16_products`) when `bf16`.
fn options(bf16: bool) -> LoadOptions {
    LoadOptions {
        bf16_products: bf16,
        ..LoadOptions::default()
    }
}

/// A preset's config and random tensors (running variances kept positive).
fn clip_tensors(preset: &str) -> (ClipConfig, HashMap<String, Tensor>) {
    let config = ClipConfig::preset(preset).unwrap_or_else(|| panic!("unknown preset {preset}"));
    let mut shapes = config.tensor_shapes();
    if let VisionConfig::ModifiedResNet(r) = &config.vision {
        shapes.extend(resnet_shapes(
            r.layers,
            r.width,
            r.grid_size(),
            r.output_dim,
        ));
    }
    let tensors = random_tensors(shapes, |name, shape| {
        name.ends_with("running_var") || name.ends_with("weight") && shape.len() == 1
    });
    (config, tensors)
}

/// A model of the named preset with random weights.
fn random_model(preset: &str) -> ClipModel {
    random_model_with(preset, false)
}

/// [`random_model`], with bf16 weights and products when `bf16`.
fn random_model_with(preset: &str, bf16: bool) -> ClipModel {
    let (config, tensors) = clip_tensors(preset);
    ClipModel::from_tensors_with(tensors, &config, &options(bf16)).expect("model from tensors")
}

/// The image-tower tensors of OpenAI's ModifiedResNet (`visual.…`, open_clip naming).
fn resnet_shapes(
    layers: [usize; 4],
    width: usize,
    grid: usize,
    output_dim: usize,
) -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::new();
    let mut conv_bn = |conv: String, bn: String, c_out: usize, c_in: usize, k: usize| {
        out.push((conv, vec![c_out, c_in, k, k]));
        for t in ["weight", "bias", "running_mean", "running_var"] {
            out.push((format!("{bn}.{t}"), vec![c_out]));
        }
    };
    let half = width / 2;
    conv_bn(
        "visual.conv1.weight".into(),
        "visual.bn1".into(),
        half,
        3,
        3,
    );
    conv_bn(
        "visual.conv2.weight".into(),
        "visual.bn2".into(),
        half,
        half,
        3,
    );
    conv_bn(
        "visual.conv3.weight".into(),
        "visual.bn3".into(),
        width,
        half,
        3,
    );
    let mut inplanes = width;
    for (i, &blocks) in layers.iter().enumerate() {
        let planes = width << i;
        for j in 0..blocks {
            let p = format!("visual.layer{}.{j}", i + 1);
            conv_bn(
                format!("{p}.conv1.weight"),
                format!("{p}.bn1"),
                planes,
                inplanes,
                1,
            );
            conv_bn(
                format!("{p}.conv2.weight"),
                format!("{p}.bn2"),
                planes,
                planes,
                3,
            );
            conv_bn(
                format!("{p}.conv3.weight"),
                format!("{p}.bn3"),
                4 * planes,
                planes,
                1,
            );
            if j == 0 && (i > 0 || inplanes != 4 * planes) {
                let (c, b) = (
                    format!("{p}.downsample.0.weight"),
                    format!("{p}.downsample.1"),
                );
                conv_bn(c, b, 4 * planes, inplanes, 1);
            }
            inplanes = 4 * planes;
        }
    }
    let embed = width * 32;
    out.push((
        "visual.attnpool.positional_embedding".into(),
        vec![grid * grid + 1, embed],
    ));
    for proj in ["q_proj", "k_proj", "v_proj"] {
        out.push((format!("visual.attnpool.{proj}.weight"), vec![embed, embed]));
        out.push((format!("visual.attnpool.{proj}.bias"), vec![embed]));
    }
    out.push((
        "visual.attnpool.c_proj.weight".into(),
        vec![output_dim, embed],
    ));
    out.push(("visual.attnpool.c_proj.bias".into(), vec![output_dim]));
    out
}

fn pixels(model: &ClipModel, batch: usize) -> Tensor {
    let s = model.config().vision.image_size();
    Tensor::randn(0f32, 1.0, (batch, 3, s, s), &Device::Cpu).expect("pixels")
}

fn image(c: &mut Criterion) {
    let mut cases: Vec<(&str, &[usize], usize)> =
        vec![("ViT-B/32", &[1, 32], 10), ("RN50", &[1, 32], 10)];
    if heavy() {
        cases.push(("ViT-B/16", &[1, 32], 10));
        cases.push(("RN50x64", &[1, 4], 10));
    }
    let mut group = c.benchmark_group("image");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    // bf16 products (opt-in) next to f32 for ViT-B/32, where the CPU has AVX-512-BF16.
    let bf16 = bf16_cpu();
    for (preset, batches, samples) in cases {
        for precision in ["f32", "bf16"] {
            if precision == "bf16" && !(bf16 && preset == "ViT-B/32") {
                continue;
            }
            let model = random_model_with(preset, precision == "bf16");
            let size = model.config().vision.image_size();
            let label = match precision {
                "f32" => format!("{preset}@{size}"),
                _ => format!("{preset}@{size}-bf16"),
            };
            for &batch in batches {
                let x = pixels(&model, batch);
                group
                    .sample_size(samples)
                    .throughput(Throughput::Elements(batch as u64));
                let id = BenchmarkId::new(label.clone(), format!("batch{batch}"));
                group.bench_function(id, |b| {
                    b.iter(|| black_box(model.encode_image(&x).expect("encode")))
                });
            }
        }
    }
    group.finish();
}

/// `n` real ImageNet prompts spread over the classes and templates, as token ids `[n, 77]`.
fn prompt_ids(n: usize) -> Tensor {
    let names = ClassNames::openai().expect("class names");
    let templates = Templates::openai80().expect("templates");
    let tokenizer = Tokenizer::openai().expect("tokenizer");
    imagenet_prompt_ids(&names, &templates, &tokenizer, 77, n)
}

/// `n` prompts spread over `names` and `templates`, as token ids `[n, context]`.
fn imagenet_prompt_ids(
    names: &ClassNames,
    templates: &Templates,
    tokenizer: &Tokenizer,
    context: usize,
    n: usize,
) -> Tensor {
    let texts: Vec<String> = (0..n)
        .map(|i| {
            let class = (i * 997 + 13) % names.len();
            let t = (i * 31 + 7) % templates.len();
            templates.templates[t].replace("{}", &names.names[class])
        })
        .collect();
    let batch = tokenizer
        .encode_batch(&texts, context, Truncation::Error)
        .expect("tokenize");
    Tensor::from_vec(batch.into_ids(), (n, context), &Device::Cpu).expect("ids")
}

fn text(c: &mut Criterion) {
    let labels = ["to_eot", "full77"];
    // The full-length batch of 256 only with CLIP_BENCH_HEAVY.
    text_group(
        c,
        "text",
        &random_model("ViT-B/32"),
        prompt_ids,
        labels,
        heavy(),
    );
}

/// Text-tower benches at batch 1 and 256, each row to its own end (`labels[0]`) and over the
/// whole context (`labels[1]`, at batch 256 only when `full_batch`).
fn text_group(
    c: &mut Criterion,
    name: &str,
    model: &ClipModel,
    ids: fn(usize) -> Tensor,
    labels: [&str; 2],
    full_batch: bool,
) {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for batch in [1usize, 256] {
        let ids = ids(batch);
        group.throughput(Throughput::Elements(batch as u64));
        for (label, length) in labels
            .into_iter()
            .zip([TextLength::UpToLongestEot, TextLength::Full])
        {
            if batch > 1 && length == TextLength::Full && !full_batch {
                continue;
            }
            let id = BenchmarkId::new(label, format!("batch{batch}"));
            group.bench_function(id, |b| {
                b.iter(|| black_box(model.encode_text_with(&ids, length).expect("encode")))
            });
        }
    }
    group.finish();
}

/// Chinese-CLIP ViT-B/16's config and random tensors.
fn cn_tensors() -> (ChineseClipConfig, HashMap<String, Tensor>) {
    let config = ChineseClipConfig::preset("CN-CLIP ViT-B/16").expect("preset");
    let tensors = random_tensors(config.tensor_shapes(), |name, shape| {
        name.ends_with("weight") && shape.len() == 1
    });
    (config, tensors)
}

/// Chinese-CLIP ViT-B/16 (RoBERTa-wwm-ext-base text tower) with random weights.
fn random_cn_model() -> ClipModel {
    let (config, tensors) = cn_tensors();
    ClipModel::chinese_clip_from_tensors_with(tensors, &config, &options(false))
        .expect("model from tensors")
}

/// `n` Chinese ImageNet prompts (cn_clip's names and templates) as token ids `[n, 52]`.
fn cn_prompt_ids(n: usize) -> Tensor {
    let names = ClassNames::cn_clip().expect("class names");
    let templates = Templates::cn_clip80().expect("templates");
    let tokenizer = Tokenizer::cn_clip().expect("tokenizer");
    imagenet_prompt_ids(&names, &templates, &tokenizer, 52, n)
}

fn text_cn(c: &mut Criterion) {
    let labels = ["packed", "padded52"];
    text_group(
        c,
        "text_cn",
        &random_cn_model(),
        cn_prompt_ids,
        labels,
        true,
    );
}

/// SigLIP 2 B/16 @224's config and random tensors (see the module docs for the vocabulary).
fn siglip2_tensors() -> (ClipConfig, HashMap<String, Tensor>) {
    let config = ClipConfig {
        embed_dim: 768,
        vision: VisionConfig::Siglip(SiglipVisionConfig {
            image_size: 224,
            patch_size: 16,
            width: 768,
            layers: 12,
            heads: 12,
            mlp_width: 3072,
            activation: Activation::GeluTanh,
        }),
        text: TextConfig {
            context_length: 64,
            vocab_size: 32_000,
            width: 768,
            layers: 12,
            heads: 12,
            mlp_width: 3072,
        },
        activation: Activation::GeluTanh,
    };
    let tensors = random_tensors(config.tensor_shapes(), |name, shape| {
        name.ends_with("weight") && shape.len() == 1
    });
    (config, tensors)
}

/// SigLIP 2 B/16 @224 with random weights.
fn random_siglip2_b16() -> ClipModel {
    let (config, tensors) = siglip2_tensors();
    ClipModel::from_tensors_with(tensors, &config, &options(false)).expect("model from tensors")
}

/// `n` rows of 64 token ids spread over SigLIP 2's (shortened) vocabulary.
fn siglip2_ids(n: usize) -> Tensor {
    let ids: Vec<u32> = (0..n * 64).map(|i| (i as u32 * 7919) % 32_000).collect();
    Tensor::from_vec(ids, (n, 64), &Device::Cpu).expect("ids")
}

fn siglip2(c: &mut Criterion) {
    let model = random_siglip2_b16();
    let mut group = c.benchmark_group("siglip2");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for batch in [1usize, 32] {
        let x = pixels(&model, batch);
        group.throughput(Throughput::Elements(batch as u64));
        let id = BenchmarkId::new("B-16@224/image", format!("batch{batch}"));
        group.bench_function(id, |b| {
            b.iter(|| black_box(model.encode_image(&x).expect("encode")))
        });
    }
    for batch in [1usize, 256] {
        let ids = siglip2_ids(batch);
        group.throughput(Throughput::Elements(batch as u64));
        let id = BenchmarkId::new("B-16@224/text64", format!("batch{batch}"));
        group.bench_function(id, |b| {
            b.iter(|| black_box(model.encode_text(&ids).expect("encode")))
        });
    }
    group.finish();
}

/// CPU seconds (user + system) of this process so far.
fn cpu_seconds() -> f64 {
    // /proc/self/stat fields 14 and 15: utime, stime in clock ticks (100 per second on Linux).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<f64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    if f.len() > 13 {
        (f[11] + f[12]) / 100.0
    } else {
        f64::NAN
    }
}

/// One encode of a fixed input.
type Encode = Box<dyn Fn(&ClipModel)>;

fn fixed_loop(spec: &str) {
    let parts: Vec<&str> = spec.split(':').collect();
    let [what, batch, iters] = parts[..] else {
        panic!("CLIP_BENCH_LOOP=<preset>:<batch>:<iterations>, got {spec}")
    };
    let batch: usize = batch.parse().expect("batch");
    let iters: usize = iters.parse().expect("iterations");
    let (model, run): (ClipModel, Encode) = match what {
        "text_cn" | "text_cn52" => {
            let ids = cn_prompt_ids(batch);
            let length = if what == "text_cn" {
                TextLength::UpToLongestEot
            } else {
                TextLength::Full
            };
            (
                random_cn_model(),
                Box::new(move |m: &ClipModel| {
                    drop(m.encode_text_with(&ids, length).expect("encode"))
                }),
            )
        }
        "text" | "text77" => {
            let ids = prompt_ids(batch);
            let length = if what == "text" {
                TextLength::UpToLongestEot
            } else {
                TextLength::Full
            };
            (
                random_model("ViT-B/32"),
                Box::new(move |m: &ClipModel| {
                    drop(m.encode_text_with(&ids, length).expect("encode"))
                }),
            )
        }
        preset => {
            let (preset, bf16) = preset
                .strip_suffix("-bf16")
                .map_or((preset, false), |p| (p, true));
            let model = random_model_with(preset, bf16);
            let x = pixels(&model, batch);
            (
                model,
                Box::new(move |m: &ClipModel| drop(m.encode_image(&x).expect("encode"))),
            )
        }
    };
    for i in 0..iters {
        let (c0, t0) = (cpu_seconds(), std::time::Instant::now());
        run(&model);
        let (cpu, wall) = (cpu_seconds() - c0, t0.elapsed().as_secs_f64());
        println!(
            "{what} batch {batch} iteration {i}: wall {wall:.3} s ({:.2} items/s), cpu {cpu:.2} s",
            batch as f64 / wall
        );
    }
}

/// Smallest cosine between matching rows of `a` and `b` (`[rows, dim]`).
fn min_cosine(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (
        a.to_vec2::<f32>().expect("rows"),
        b.to_vec2::<f32>().expect("rows"),
    );
    a.iter()
        .zip(&b)
        .map(|(x, y)| {
            let dot = |u: &[f32], v: &[f32]| -> f64 {
                u.iter()
                    .zip(v)
                    .map(|(p, q)| f64::from(*p) * f64::from(*q))
                    .sum()
            };
            dot(x, y) / (dot(x, x) * dot(y, y)).sqrt()
        })
        .fold(f64::INFINITY, f64::min)
}

/// `CLIP_BENCH_BF16_COSINE=1`: the bf16 guard on full-size random models. Each model is built
/// twice from the same tensors, in f32 and with bf16 products; prints the smallest cosine
/// between their embeddings per tower (8 random images, 64 prompts) and exits with status 1
/// if one is below 0.999.
fn bf16_cosines() {
    let clip = |preset: &str| {
        let (config, tensors) = clip_tensors(preset);
        let build = move |bf16| {
            ClipModel::from_tensors_with(tensors.clone(), &config, &options(bf16)).expect("model")
        };
        (build(false), build(true))
    };
    let cn = || {
        let (config, tensors) = cn_tensors();
        let build = move |bf16| {
            ClipModel::chinese_clip_from_tensors_with(tensors.clone(), &config, &options(bf16))
                .expect("model")
        };
        (build(false), build(true))
    };
    let siglip = || {
        let (config, tensors) = siglip2_tensors();
        let build = move |bf16| {
            ClipModel::from_tensors_with(tensors.clone(), &config, &options(bf16)).expect("model")
        };
        (build(false), build(true))
    };
    type Case = (
        &'static str,
        Box<dyn Fn() -> (ClipModel, ClipModel)>,
        Option<Tensor>,
    );
    let cases: Vec<Case> = vec![
        (
            "ViT-B/32",
            Box::new(move || clip("ViT-B/32")),
            Some(prompt_ids(64)),
        ),
        ("RN50", Box::new(move || clip("RN50")), None),
        ("SigLIP 2 B/16", Box::new(siglip), Some(siglip2_ids(64))),
        (
            "Chinese-CLIP ViT-B/16",
            Box::new(cn),
            Some(cn_prompt_ids(64)),
        ),
    ];
    let mut worst = f64::INFINITY;
    for (name, build, ids) in cases {
        let (f32_model, bf16_model) = build();
        let x = pixels(&f32_model, 8);
        let mut towers = vec![(
            "image",
            f32_model.encode_image(&x).expect("encode"),
            bf16_model.encode_image(&x).expect("encode"),
        )];
        if let Some(ids) = ids {
            towers.push((
                "text",
                f32_model.encode_text(&ids).expect("encode"),
                bf16_model.encode_text(&ids).expect("encode"),
            ));
        }
        for (tower, a, b) in towers {
            let c = min_cosine(&a, &b);
            worst = worst.min(c);
            println!("{name} {tower}: min cosine bf16 products to f32 {c:.6}");
        }
    }
    if worst < 0.999 {
        eprintln!("below the 0.999 guard");
        std::process::exit(1);
    }
}

fn main() {
    if let Ok(spec) = std::env::var("CLIP_BENCH_LOOP") {
        fixed_loop(&spec);
        return;
    }
    if std::env::var_os("CLIP_BENCH_BF16_COSINE").is_some_and(|v| v != "0") {
        bf16_cosines();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}

criterion_group!(benches, image, text, text_cn, siglip2);
