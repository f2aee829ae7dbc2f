//! The evaluation pipeline: decode + preprocess batches in parallel on a worker pool, hand them to the model
//! through a bounded queue, and score each batch while the next ones are being prepared.
//!
//! ```text
//! producer thread ── rayon pool: decode+preprocess one batch ──► sync_channel(depth) ──► caller's thread:
//!                                                                                        model, top-5, outputs
//! ```
//!
//! The queue holds at most `queue_depth` prepared batches, so memory stays bounded however many images there are
//! and however slow the model is. A bad image becomes [`Item::Skipped`]; it never stops the run. Results come out
//! in input order.

use std::path::Path;
use std::sync::mpsc::sync_channel;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use rayon::prelude::*;

use super::dataset::Sample;

/// Scores a batch of preprocessed images against the classes.
pub trait BatchScorer {
    /// `pixels` holds `n` CHW images back to back; returns `n × num_classes` scores, row-major.
    fn score(&mut self, pixels: &[f32], n: usize) -> anyhow::Result<Vec<f32>>;
    /// Number of classes (columns of the result).
    fn num_classes(&self) -> usize;
}

/// Pipeline settings.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Images per model call.
    pub batch_size: usize,
    /// Prepared batches the queue may hold ahead of the model.
    pub queue_depth: usize,
    /// Decode + preprocess worker threads.
    pub threads: usize,
    /// How many best classes to report per image.
    pub k: usize,
    /// Multiplies the scores before the softmax that gives [`Item::Scored::top1_prob`] (CLIP's logit scale).
    pub logit_scale: f32,
}

/// One result, in input order.
#[derive(Debug)]
pub enum Item<'a> {
    /// The image was scored.
    Scored {
        /// The sample.
        sample: &'a Sample,
        /// The `k` best class indices, best first.
        top: Vec<usize>,
        /// Their scores.
        scores: Vec<f32>,
        /// Time to decode and preprocess this image.
        preprocess: Duration,
        /// This image's share of its batch's model time.
        model: Duration,
        /// Softmax probability of the best class over all classes, scores × `logit_scale`.
        top1_prob: f32,
    },
    /// The image could not be decoded or preprocessed.
    Skipped {
        /// The sample.
        sample: &'a Sample,
        /// Why.
        error: String,
    },
}

/// Totals of a pipeline run.
#[derive(Debug, Default, Clone, Copy)]
pub struct Totals {
    /// Wall-clock time of the whole run.
    pub wall: Duration,
    /// Time spent in the model (sum over batches).
    pub model: Duration,
    /// Decode + preprocess time (sum over images, across worker threads).
    pub preprocess: Duration,
    /// Images scored.
    pub scored: usize,
    /// Images skipped.
    pub skipped: usize,
}

struct Prepared {
    /// Index of the first sample of the batch.
    start: usize,
    /// Per sample of the batch: the pixels or the error, and the time it took.
    items: Vec<(Result<Vec<f32>, String>, Duration)>,
}

/// `softmax(scale · row)[i]`, computed stably (NaN scores count as zero probability).
pub fn softmax_at(row: &[f32], i: usize, scale: f32) -> f32 {
    let max = row
        .iter()
        .filter(|v| !v.is_nan())
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    if !max.is_finite() || row[i].is_nan() {
        return 0.0;
    }
    let sum: f64 = row
        .iter()
        .filter(|v| !v.is_nan())
        .map(|&v| f64::from(scale * (v - max)).exp())
        .sum();
    (f64::from(scale * (row[i] - max)).exp() / sum) as f32
}

/// Runs `samples` through `preprocess` and `scorer`, calling `on_item` once per sample in input order.
///
/// `preprocess` returns a CHW image of `pixels_per_image` values or an error message. An error from `scorer`
/// or `on_item` stops the run (the producer notices the closed queue and stops too).
pub fn run<'a, P, S, F>(
    samples: &'a [Sample],
    pixels_per_image: usize,
    preprocess: P,
    scorer: &mut S,
    cfg: Config,
    mut on_item: F,
) -> anyhow::Result<Totals>
where
    P: Fn(&Path) -> Result<Vec<f32>, String> + Sync,
    S: BatchScorer + ?Sized,
    F: FnMut(Item<'a>) -> anyhow::Result<()>,
{
    ensure!(cfg.batch_size > 0, "batch size must be at least 1");
    let classes = scorer.num_classes();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.threads.max(1))
        .thread_name(|i| format!("preprocess-{i}"))
        .build()
        .context("starting the preprocessing threads")?;
    let started = Instant::now();
    let mut totals = Totals::default();
    let (tx, rx) = sync_channel::<Prepared>(cfg.queue_depth.max(1));
    let preprocess = &preprocess;

    std::thread::scope(|scope| -> anyhow::Result<()> {
        scope.spawn(move || {
            for (b, chunk) in samples.chunks(cfg.batch_size).enumerate() {
                let items = pool.install(|| {
                    chunk
                        .par_iter()
                        .map(|s| {
                            let t = Instant::now();
                            let r = preprocess(&s.path).and_then(|px| {
                                if px.len() == pixels_per_image {
                                    Ok(px)
                                } else {
                                    Err(format!(
                                        "preprocessing gave {} values, expected {pixels_per_image}",
                                        px.len()
                                    ))
                                }
                            });
                            (r, t.elapsed())
                        })
                        .collect()
                });
                let batch = Prepared {
                    start: b * cfg.batch_size,
                    items,
                };
                if tx.send(batch).is_err() {
                    // The consumer stopped (error); nothing more to do.
                    return;
                }
            }
        });

        let mut pixels = Vec::with_capacity(cfg.batch_size * pixels_per_image);
        for batch in rx {
            pixels.clear();
            let mut ok = Vec::with_capacity(batch.items.len());
            for (i, (r, _)) in batch.items.iter().enumerate() {
                if let Ok(px) = r {
                    pixels.extend_from_slice(px);
                    ok.push(i);
                }
            }
            let (scores, model_time) = if ok.is_empty() {
                (Vec::new(), Duration::ZERO)
            } else {
                let t = Instant::now();
                let s = scorer.score(&pixels, ok.len()).with_context(|| {
                    format!(
                        "model failed on the batch starting at {}",
                        samples[batch.start].name
                    )
                })?;
                let dt = t.elapsed();
                ensure!(
                    s.len() == ok.len() * classes,
                    "model returned {} scores for {} images × {classes} classes",
                    s.len(),
                    ok.len()
                );
                (s, dt)
            };
            totals.model += model_time;
            let share = if ok.is_empty() {
                Duration::ZERO
            } else {
                model_time / ok.len() as u32
            };
            let mut row = 0;
            for (i, (r, dt)) in batch.items.into_iter().enumerate() {
                let sample = &samples[batch.start + i];
                totals.preprocess += dt;
                match r {
                    Ok(_) => {
                        let row_scores = &scores[row * classes..(row + 1) * classes];
                        row += 1;
                        let top = clip_eval::top_k(row_scores, cfg.k);
                        let top_scores = top.iter().map(|&c| row_scores[c]).collect();
                        let top1_prob = top
                            .first()
                            .map_or(0.0, |&c| softmax_at(row_scores, c, cfg.logit_scale));
                        totals.scored += 1;
                        on_item(Item::Scored {
                            sample,
                            top,
                            scores: top_scores,
                            preprocess: dt,
                            model: share,
                            top1_prob,
                        })?;
                    }
                    Err(error) => {
                        totals.skipped += 1;
                        on_item(Item::Skipped { sample, error })?;
                    }
                }
            }
        }
        Ok(())
    })?;
    totals.wall = started.elapsed();
    Ok(totals)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn softmax_matches_direct_formula() {
        let row = [0.2f32, 0.3, -0.1, 0.25];
        let z: f64 = row.iter().map(|&v| (100.0 * f64::from(v)).exp()).sum();
        for i in 0..4 {
            let want = (100.0 * f64::from(row[i])).exp() / z;
            assert!((f64::from(softmax_at(&row, i, 100.0)) - want).abs() < 1e-6);
        }
        assert_eq!(softmax_at(&[f32::NAN, 1.0], 0, 1.0), 0.0);
        assert_eq!(softmax_at(&[f32::NAN, 1.0], 1, 1.0), 1.0);
    }

    /// Scores image i (whose pixels are all equal to i) highest for class i % classes.
    struct Fake {
        classes: usize,
        calls: Vec<usize>,
    }

    impl BatchScorer for Fake {
        fn score(&mut self, pixels: &[f32], n: usize) -> anyhow::Result<Vec<f32>> {
            self.calls.push(n);
            let per = pixels.len() / n;
            let mut out = vec![0.0; n * self.classes];
            for r in 0..n {
                let v = pixels[r * per] as usize;
                out[r * self.classes + v % self.classes] = 1.0;
                out[r * self.classes + (v + 1) % self.classes] = 0.5;
            }
            Ok(out)
        }
        fn num_classes(&self) -> usize {
            self.classes
        }
    }

    fn samples(n: usize) -> Vec<Sample> {
        (0..n)
            .map(|i| Sample {
                path: PathBuf::from(format!("{i}")),
                name: format!("img{i}"),
                target: i % 4,
            })
            .collect()
    }

    #[test]
    fn keeps_order_skips_bad_images_and_batches() {
        let s = samples(23);
        let mut fake = Fake {
            classes: 4,
            calls: vec![],
        };
        let pre = |p: &Path| -> Result<Vec<f32>, String> {
            let i: usize = p.to_str().unwrap().parse().unwrap();
            if i % 7 == 3 {
                Err(format!("bad {i}"))
            } else {
                Ok(vec![i as f32; 6])
            }
        };
        let cfg = Config {
            batch_size: 5,
            queue_depth: 1,
            threads: 2,
            k: 2,
            logit_scale: 1.0,
        };
        let mut seen = Vec::new();
        let totals = run(&s, 6, pre, &mut fake, cfg, |item| {
            match item {
                Item::Scored {
                    sample,
                    top,
                    scores,
                    ..
                } => {
                    let i: usize = sample.name[3..].parse().unwrap();
                    assert_eq!(top, [i % 4, (i + 1) % 4]);
                    assert_eq!(scores, [1.0, 0.5]);
                    seen.push(i);
                }
                Item::Skipped { sample, error } => {
                    assert_eq!(error, format!("bad {}", &sample.name[3..]));
                    seen.push(sample.name[3..].parse().unwrap());
                }
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, (0..23).collect::<Vec<_>>());
        assert_eq!(totals.skipped, 3); // 3, 10, 17
        assert_eq!(totals.scored, 20);
        // Batches of 5 minus their bad images; the last batch is short.
        assert_eq!(fake.calls, [4, 5, 4, 4, 3]);
    }

    #[test]
    fn wrong_pixel_count_is_a_skip_and_consumer_error_stops() {
        let s = samples(10);
        let mut fake = Fake {
            classes: 4,
            calls: vec![],
        };
        let cfg = Config {
            batch_size: 2,
            queue_depth: 1,
            threads: 1,
            k: 5,
            logit_scale: 1.0,
        };
        let pre = |_: &Path| Ok(vec![0.0; 5]);
        let t = run(&s, 6, pre, &mut fake, cfg, |_| Ok(())).unwrap();
        assert_eq!((t.scored, t.skipped), (0, 10));
        assert!(fake.calls.is_empty());

        let pre = |_: &Path| Ok(vec![0.0; 6]);
        let mut n = 0;
        let r = run(&s, 6, pre, &mut fake, cfg, |_| {
            n += 1;
            anyhow::ensure!(n < 3, "stop");
            Ok(())
        });
        assert!(r.is_err());
        assert_eq!(n, 3);
    }
}
