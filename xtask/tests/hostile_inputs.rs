//! `cargo xtask` under careless or hostile input, run as the built binary: absurd numbers are
//! argument errors (exit 2) before any work, special files fail at once instead of hanging,
//! damaged weights fail instead of writing NaN (`null`) embeddings or NaN probabilities.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs xtask with `args`; fails the test if it takes more than `limit` (a hang).
fn xtask(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("xtask {args:?} hung (killed after {limit:?})");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn photo(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/photos")
        .join(name)
}

#[test]
fn absurd_numbers_are_argument_errors_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.npy");
    let horse = photo("horse.png");
    let (horse, out) = (horse.to_str().unwrap(), out.to_str().unwrap());
    for args in [
        // 70000² × 3 float32 is 59 GB: it aborted on the allocation.
        &["preprocess", horse, "--size", "70000", "--out", out][..],
        &["preprocess", horse, "--size", "0", "--out", out],
        &[
            "eval-imagenet",
            "--weights",
            "w",
            "--images",
            ".",
            "--batch-size",
            "100000000",
        ],
        &[
            "eval-imagenet",
            "--weights",
            "w",
            "--images",
            ".",
            "--batch-size",
            "0",
        ],
        &[
            "eval-imagenet",
            "--weights",
            "w",
            "--images",
            ".",
            "--queue-depth",
            "18446744073709551615",
        ],
        &[
            "eval-imagenet",
            "--weights",
            "w",
            "--images",
            ".",
            "--threads",
            "0",
        ],
    ] {
        let o = xtask(args, Duration::from_secs(30));
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("invalid value"),
            "{args:?}: {}",
            stderr(&o)
        );
    }
    assert!(!Path::new(out).exists());
}

#[cfg(unix)]
#[test]
fn special_files_fail_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("photo.png");
    dev_support::mkfifo(&fifo);
    let weights = dev_support::tiny_clip::write(dir.path()).unwrap();
    let out = dir.path().join("out");
    let (fifo_s, weights_s, out_s) = (
        fifo.to_str().unwrap(),
        weights.to_str().unwrap(),
        out.to_str().unwrap(),
    );
    for (args, named) in [
        (vec!["preprocess", fifo_s, "--out", out_s], fifo_s),
        (vec!["preprocess", "/dev/zero", "--out", out_s], "/dev/zero"),
        (
            vec!["embed", "--weights", fifo_s, "--text", "a cat"],
            fifo_s,
        ),
        (
            vec!["embed", "--weights", weights_s, "--image", fifo_s],
            fifo_s,
        ),
        (
            vec!["embed", "--weights", weights_s, "--image", "/dev/zero"],
            "/dev/zero",
        ),
    ] {
        let o = xtask(&args, Duration::from_secs(60));
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {e}");
        assert!(
            e.contains(named) && e.contains("not a regular file"),
            "{args:?}: {e}"
        );
    }
}

#[test]
fn damaged_weights_are_errors_not_nan_output() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("e.json");
    let horse = photo("horse.png");
    for (tensor, value, what) in [
        ("visual.proj", f32::NAN, "horse.png"),
        ("text_projection", f32::INFINITY, "a cat"),
        ("logit_scale", f32::NAN, "logit_scale"),
    ] {
        let weights = dev_support::tiny_clip::write_poisoned(dir.path(), tensor, value).unwrap();
        let o = xtask(
            &[
                "embed",
                "--weights",
                weights.to_str().unwrap(),
                "--image",
                horse.to_str().unwrap(),
                "--text",
                "a cat",
                "--out",
                json.to_str().unwrap(),
            ],
            Duration::from_secs(120),
        );
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{tensor}: {e}");
        assert!(e.contains(what), "{tensor}: {e}");
        assert!(!json.exists(), "{tensor}: embeddings were written");
    }
}

/// A FIFO among the images is one skipped image, not a hung evaluation.
#[cfg(unix)]
#[test]
fn eval_imagenet_skips_a_fifo_among_the_images() {
    let Some(shared) = dev_support::shared_data_or_skip("eval_imagenet_skips_a_fifo") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("sample");
    std::fs::create_dir(&images).unwrap();
    std::fs::copy(photo("horse.png"), images.join("n02389026_horse.png")).unwrap();
    dev_support::mkfifo(&images.join("n01440764_fifo.JPEG"));
    let weights = dev_support::tiny_clip::write(dir.path()).unwrap();
    let out = dir.path().join("out");
    let meta = shared.join("imagenet-devkit/meta.mat");
    let o = xtask(
        &[
            "eval-imagenet",
            "--weights",
            weights.to_str().unwrap(),
            "--images",
            images.to_str().unwrap(),
            "--meta",
            meta.to_str().unwrap(),
            "--templates",
            "single",
            "--classnames",
            "devkit",
            "--out",
            out.to_str().unwrap(),
        ],
        Duration::from_secs(300),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["found"], 2);
    assert_eq!(summary["n_skipped"], 1);
    let skipped = &summary["skipped"][0];
    assert_eq!(skipped["image"], "n01440764_fifo.JPEG");
    assert!(
        skipped["error"]
            .as_str()
            .unwrap()
            .contains("not a regular file"),
        "{skipped}"
    );
}
