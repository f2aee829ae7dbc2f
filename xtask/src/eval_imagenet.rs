//! `cargo xtask eval-imagenet`: zero-shot ImageNet top-1 / top-5 accuracy and timing of a CLIP model.
//!
//! Reads a folder of ImageNet validation photos (the official flat layout labelled by the devkit, or files /
//! folders named by wnid), builds the zero-shot classifier from class names × prompt templates (cached on disk),
//! then decodes and preprocesses images on worker threads while the model encodes the previous batches
//! (bounded queue, see [`pipeline`]). Writes to `--out`:
//!
//! - `summary.json`: model, weights SHA-256, split, counts, top-1/top-5 accuracy, class-name and template sets,
//!   timings (end to end and model alone), machine, and the skipped images with their errors;
//! - `predictions.jsonl`: one line per evaluated image: image, target, top-5 class ids and cosine scores;
//! - `eval.log`: the human log: per image the most likely class and the time, then the totals.
//!
//! A bad image (unreadable, truncated, not an image) is skipped, counted and listed; it never stops the run.

pub mod dataset;
pub mod model;
pub mod pipeline;
pub mod report;

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};

use clip_eval::{Accumulator, ClassNames, Counts, Prediction, Skipped, Templates, Timing};
use dataset::{Labels, Layout};
use report::{Summary, TimingDetail, Writers};

/// Class-name sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClassNameSet {
    /// OpenAI's 1000 curated names (the published results use these).
    Openai,
    /// The first word of each devkit synset's `words` (the course report's choice).
    Devkit,
    /// cn_clip's 1000 Chinese names, for Chinese-CLIP (with `--templates zh`, the way the
    /// Chinese-CLIP authors evaluate).
    Zh,
}

/// Arguments of `cargo xtask eval-imagenet`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// CLIP weights: a safetensors file (open_clip / OpenAI or transformers naming), or a Hugging Face hub id
    /// such as `timm/vit_base_patch32_clip_224.openai` (optionally `@revision`) when built with `--features hub`.
    #[arg(long)]
    pub weights: String,
    /// The images folder: `ILSVRC2012_val_XXXXXXXX.JPEG` files, or files / folders named by wnid.
    #[arg(long)]
    pub images: PathBuf,
    /// Folder layout; `auto` decides from the file names.
    #[arg(long, value_enum, default_value = "auto")]
    pub layout: Layout,
    /// The devkit's `ILSVRC2012_validation_ground_truth.txt` (official layout; defaults to the shared data
    /// folder's copy when there is one).
    #[arg(long)]
    pub ground_truth: Option<PathBuf>,
    /// The devkit's `meta.mat` (defaults to the shared data folder's copy when there is one).
    #[arg(long)]
    pub meta: Option<PathBuf>,
    /// Class names: `openai` (curated, default) or `devkit` (first word of each synset).
    #[arg(long, value_enum, default_value = "openai")]
    pub classnames: ClassNameSet,
    /// Prompt templates: `openai80` (default), `single` ("a photo of a {}."), or a file (one template per line
    /// with `{}` for the class name, or a JSON array of strings).
    #[arg(long, default_value = "openai80")]
    pub templates: String,
    /// Images per model call (1 to 1024).
    #[arg(long, default_value_t = 32, value_parser = crate::args::count(1, crate::args::MAX_BATCH))]
    pub batch_size: usize,
    /// `f32` (default, exact against the references) or `bf16` (opt-in: bf16 weights and
    /// products with f32 accumulation on CPUs with AVX-512-BF16, f32 elsewhere).
    #[arg(long, default_value = "f32")]
    pub precision: clip::Precision,
    /// Evaluate only the first N images (in name order).
    #[arg(long, value_parser = crate::args::count(1, u64::MAX))]
    pub limit: Option<usize>,
    /// Output folder (created if needed).
    #[arg(long, default_value = "eval-imagenet-out")]
    pub out: PathBuf,
    /// Worker threads for the model and for decoding (default: candle's choice, `RAYON_NUM_THREADS` or the
    /// physical cores).
    #[arg(long, value_parser = crate::args::count(1, crate::args::MAX_THREADS))]
    pub threads: Option<usize>,
    /// Where to cache zero-shot classifiers (default: `<out>/classifier-cache`).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Also write the classifier matrix (classes × embed dim, float32) to this `.npy` file.
    #[arg(long)]
    pub save_classifier: Option<PathBuf>,
    /// Split name recorded in the summary (default: `val` for the official layout, else the folder name).
    #[arg(long)]
    pub split: Option<String>,
    /// Prepared batches allowed to wait for the model (1 to 64).
    #[arg(long, default_value_t = 2, value_parser = crate::args::count(1, 64))]
    pub queue_depth: usize,
}

/// Runs the evaluation and returns the summary it wrote.
pub fn run(args: Args) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let started_unix_s = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let threads = match args.threads {
        Some(n) => {
            model::set_threads(n.max(1));
            n.max(1)
        }
        None => model::default_threads(),
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating output folder {}", args.out.display()))?;

    // Labels.
    let meta_path = default_shared(args.meta.clone(), "imagenet-devkit/meta.mat")
        .context("no --meta given and no shared data folder holding imagenet-devkit/meta.mat")?;
    let meta = imagenet_meta::Meta::from_mat(&meta_path)
        .with_context(|| format!("reading {}", meta_path.display()))?;
    let wnids: Vec<String> = meta.wnids().into_iter().map(str::to_owned).collect();
    let devkit_to_class: HashMap<u32, usize> = meta
        .synsets()
        .iter()
        .filter_map(|s| {
            meta.class_index_of_id(s.ilsvrc2012_id)
                .map(|c| (s.ilsvrc2012_id, c))
        })
        .collect();
    let labels = Labels {
        wnids: &wnids,
        devkit_to_class: &devkit_to_class,
    };
    let layout = dataset::resolve_layout(&args.images, args.layout)?;
    let ground_truth = if layout == Layout::Official {
        let p = default_shared(
            args.ground_truth.clone(),
            "imagenet-devkit/ILSVRC2012_validation_ground_truth.txt",
        )
        .context("the official layout needs --ground-truth")?;
        Some(
            imagenet_meta::GroundTruth::from_file(&p)
                .with_context(|| format!("reading {}", p.display()))?
                .ids()
                .to_vec(),
        )
    } else {
        None
    };
    let mut scan = dataset::scan(&args.images, layout, &labels, ground_truth.as_deref())?;
    if let Some(limit) = args.limit {
        scan.samples.truncate(limit);
    }
    let layout_name = match scan.layout {
        Layout::Official => "official",
        _ => "wnid",
    };
    let split = args.split.clone().unwrap_or_else(|| match scan.layout {
        Layout::Official => "val".into(),
        _ => args
            .images
            .file_name()
            .map_or_else(|| "images".into(), |n| n.to_string_lossy().into_owned()),
    });

    let class_names = match args.classnames {
        ClassNameSet::Openai => ClassNames::openai()?,
        ClassNameSet::Devkit => ClassNames::new("devkit", meta.devkit_class_names())?,
        ClassNameSet::Zh => ClassNames::cn_clip()?,
    };
    if class_names.len() != wnids.len() {
        bail!(
            "{} class names for {} classes",
            class_names.len(),
            wnids.len()
        );
    }
    let templates = Templates::from_choice(&args.templates)?;

    let mut writers = Writers::create(&args.out)?;
    writers.log(&format!(
        "eval-imagenet: {} images ({layout_name} layout, split {split}) from {}",
        scan.samples.len(),
        args.images.display()
    ))?;
    if !scan.ignored.is_empty() {
        writers.log(&format!(
            "ignored {} file(s) that are not part of the layout, e.g. {}",
            scan.ignored.len(),
            scan.ignored[0]
        ))?;
    }

    // Model (a file, hub id or short name), then the classifier (keyed by the weights' hash).
    let cache_dir = args
        .cache_dir
        .clone()
        .unwrap_or_else(|| args.out.join("classifier-cache"));
    let t = Instant::now();
    let model = model::load(&args.weights, args.precision)?;
    let load_s = t.elapsed().as_secs_f64();
    let weights_sha256 = report::sha256_file(model.weights_path())?;
    let t = Instant::now();
    let (classifier, classifier_cached) =
        model.classifier(&weights_sha256, &class_names, &templates, &cache_dir)?;
    let classifier_s = t.elapsed().as_secs_f64();
    if let Some(p) = &args.save_classifier {
        dev_support::Npy::f32(
            vec![classifier.n_classes(), classifier.dim()],
            classifier.weights().to_vec(),
        )
        .write(p)
        .with_context(|| format!("writing {}", p.display()))?;
    }
    writers.log(&format!(
        "model {} ({}), weights sha256 {weights_sha256}, loaded in {load_s:.2} s; classifier {} names ({}) × {} \
         templates ({}) in {classifier_s:.2} s{}",
        model.name(),
        args.weights,
        class_names.len(),
        class_names.set,
        templates.len(),
        templates.set,
        if classifier_cached { " (cached)" } else { "" },
    ))?;

    // The pipeline.
    let names = &class_names.names;
    let n_found = scan.samples.len();
    let progress = progress_bar(n_found as u64, "images");
    let mut acc = Accumulator::new(names.len(), 5);
    let mut skipped: Vec<Skipped> = Vec::new();
    let pixels_per_image = 3 * model.image_size() * model.image_size();
    let preprocess = model.preprocessor();
    let mut scorer = model::Scorer::new(&model, &classifier);
    let cfg = pipeline::Config {
        batch_size: args.batch_size,
        queue_depth: args.queue_depth,
        threads,
        k: 5,
        logit_scale: model.logit_scale(),
    };
    let width = n_found.to_string().len();
    let mut done = 0usize;
    let plain_every = (n_found / 10).max(1);
    let pipeline_started = Instant::now();
    let totals = pipeline::run(
        &scan.samples,
        pixels_per_image,
        |p: &Path| preprocess(p),
        &mut scorer,
        cfg,
        |item| {
            done += 1;
            progress.inc(1);
            if progress.is_hidden() && done.is_multiple_of(plain_every) {
                // No terminal (a log file, CI): a plain line every 10 %.
                let secs = pipeline_started.elapsed().as_secs_f64();
                eprintln!(
                    "{done}/{n_found} images, {:.2} images/s, ETA {:.0} s",
                    done as f64 / secs,
                    (n_found - done) as f64 * secs / done as f64
                );
            }
            match item {
                pipeline::Item::Scored {
                    sample,
                    top,
                    scores,
                    preprocess,
                    model,
                    top1_prob,
                } => {
                    acc.add_ranked(sample.target, &top)?;
                    let best = top.first().copied().unwrap_or(0);
                    let verdict = if best == sample.target {
                        "top-1 ✓"
                    } else if top.contains(&sample.target) {
                        "top-5 ✓"
                    } else {
                        "✗"
                    };
                    writers.log(&format!(
                        "[{done:>width$}/{n_found}] {}  most likely: {} (class {best}, p={top1_prob:.3})  \
                         target: {} (class {})  {verdict}  time {:.1} ms (decode+preprocess {:.1}, model {:.1})",
                        sample.name,
                        names[best],
                        names[sample.target],
                        sample.target,
                        ms(preprocess + model),
                        ms(preprocess),
                        ms(model),
                    ))?;
                    writers.prediction(&Prediction {
                        image: sample.name.clone(),
                        target: sample.target,
                        top5: top,
                        scores,
                    })?;
                }
                pipeline::Item::Skipped { sample, error } => {
                    writers.log(&format!(
                        "[{done:>width$}/{n_found}] {}  SKIPPED: {error}",
                        sample.name
                    ))?;
                    progress.println(format!("skipped {}: {error}", sample.name));
                    skipped.push(Skipped {
                        image: sample.name.clone(),
                        error,
                    });
                }
            }
            Ok(())
        },
    )?;
    progress.finish_and_clear();

    let counts = Counts::from_accumulator(&acc);
    let n = counts.n as usize;
    let per_image = |d: Duration| {
        if n == 0 {
            0.0
        } else {
            d.as_secs_f64() * 1000.0 / n as f64
        }
    };
    let rate = |d: Duration| {
        if d.is_zero() {
            0.0
        } else {
            n as f64 / d.as_secs_f64()
        }
    };
    let summary = Summary {
        base: clip_eval::Summary {
            model: model.name(),
            weights_sha256,
            split,
            counts,
            mean_per_class_recall: acc.mean_per_class_recall(),
            class_names: class_names.set.clone(),
            templates: templates.set.clone(),
            n_templates: templates.len(),
            timing: Timing {
                total_s: started.elapsed().as_secs_f64(),
                load_s,
                classifier_s,
                avg_ms_per_image_end_to_end: per_image(totals.wall),
                avg_ms_per_image_model: per_image(totals.model),
                images_per_s: rate(totals.wall),
            },
            machine: report::machine(model.device()),
            skipped,
        },
        model_preset: model.preset(),
        scoring: model.scoring(),
        weights: args.weights.clone(),
        image_size: model.image_size(),
        embed_dim: model.embed_dim(),
        layout: layout_name.into(),
        images: args.images.display().to_string(),
        found: n_found,
        n_skipped: totals.skipped,
        batch_size: args.batch_size,
        threads,
        timing_detail: TimingDetail {
            classifier_cached,
            pipeline_s: totals.wall.as_secs_f64(),
            avg_ms_per_image_preprocess: if n_found == 0 {
                0.0
            } else {
                totals.preprocess.as_secs_f64() * 1000.0 / n_found as f64
            },
            images_per_s_model: rate(totals.model),
        },
        most_confused: acc.most_confused(10),
        started_unix_s,
    };
    for line in final_lines(&summary) {
        writers.log(&line)?;
        eprintln!("{line}");
    }
    writers.flush()?;
    report::write_json_atomic(&args.out.join("summary.json"), &summary)?;
    eprintln!("wrote {}", args.out.display());
    Ok(summary)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The closing lines of the log (and of the terminal output), in the seed's spirit.
fn final_lines(s: &Summary) -> Vec<String> {
    let b = &s.base;
    let mut v = vec![
        format!(
            "Model family {}, scores {}, preprocessing {}",
            s.scoring.model_family, s.scoring.score_function, s.scoring.preprocessing
        ),
        format!(
            "Top-1 correct: {} / {} = {:.2} %",
            b.counts.correct_top1,
            b.counts.n,
            100.0 * b.counts.top1_accuracy
        ),
        format!(
            "Top-5 correct: {} / {} = {:.2} %",
            b.counts.correct_top5,
            b.counts.n,
            100.0 * b.counts.top5_accuracy
        ),
        format!(
            "Average time per image: {:.1} ms end to end ({:.2} images/s), {:.1} ms in the model alone \
             ({:.2} images/s); batch size {}, {} thread(s) on {}",
            b.timing.avg_ms_per_image_end_to_end,
            b.timing.images_per_s,
            b.timing.avg_ms_per_image_model,
            s.timing_detail.images_per_s_model,
            s.batch_size,
            s.threads,
            b.machine.cpu,
        ),
    ];
    if !b.skipped.is_empty() {
        v.push(format!(
            "Skipped {} image(s) that could not be read: {}",
            b.skipped.len(),
            b.skipped
                .iter()
                .map(|k| k.image.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    v
}

/// `given`, else `shared/data/<rel>` when that file exists.
fn default_shared(given: Option<PathBuf>, rel: &str) -> Option<PathBuf> {
    given.or_else(|| {
        dev_support::shared_data()
            .ok()
            .map(|d| d.join(rel))
            .filter(|p| p.is_file())
    })
}

/// A progress bar with rate and ETA on stderr when it is a terminal; hidden otherwise.
fn progress_bar(len: u64, unit: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(&format!(
        "{{elapsed_precise}} [{{wide_bar}}] {{pos}}/{{len}} {unit} {{per_sec}} ETA {{eta}}"
    )) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}
