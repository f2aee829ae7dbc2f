//! Crash safety: an indexing process (`feature-store-crash-helper`) is killed with SIGKILL at
//! random moments, 20 times, on each backend. After each kill the library must be sound (SQLite:
//! `PRAGMA integrity_check`), open, hold every batch the helper reported as committed, and a
//! following sync must finish the job: one image per distinct content, one row per file, nothing
//! embedded twice.
//!
//! Rounds alternate between a fresh store (full indexing) and an existing store after the folder
//! was changed (edited, new, deleted and duplicated files). Seed: `CRASH_TEST_SEED` (default 2026).

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{Kind, TestLib};
use dev_support::Rng;
use feature_store::{ContentHash, HashEmbedder, ModelInfo, OpenOptions, Store, SyncOptions};

on_both_backends!(sigkill_at_random_moments_loses_nothing_committed);

const MODEL: &str = "test/hash-embedder";
const DIM: usize = 32;
const ROUNDS: usize = 20;
const INITIAL_FILES: usize = 400;
const BATCH: usize = 20;

/// The folder as the test wrote it: path → bytes.
struct Folder {
    root: PathBuf,
    files: HashMap<PathBuf, Vec<u8>>,
    next_name: usize,
}

impl Folder {
    fn write(&mut self, path: PathBuf, bytes: Vec<u8>) {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, &bytes).unwrap();
        self.files.insert(path, bytes);
    }
    fn add_new(&mut self, rng: &mut Rng) {
        let name = self.next_name;
        self.next_name += 1;
        let path = self
            .root
            .join(format!("d{}", name % 7))
            .join(format!("img{name:05}.bin"));
        let len = 16 + rng.below(2000);
        self.write(path, rng.bytes(len));
    }
    fn add_duplicate(&mut self, rng: &mut Rng) {
        let paths = self.sorted_paths();
        let bytes = self.files[&paths[rng.below(paths.len())]].clone();
        let name = self.next_name;
        self.next_name += 1;
        self.write(self.root.join(format!("dup{name:05}.bin")), bytes);
    }
    fn edit(&mut self, rng: &mut Rng) {
        let paths = self.sorted_paths();
        let path = paths[rng.below(paths.len())].clone();
        // A different length, so the change shows in the size whatever the mtime granularity.
        let old_len = self.files[&path].len();
        let mut len = 16 + rng.below(2000);
        if len == old_len {
            len += 1;
        }
        self.write(path, rng.bytes(len));
    }
    fn delete(&mut self, rng: &mut Rng) {
        let paths = self.sorted_paths();
        let path = paths[rng.below(paths.len())].clone();
        std::fs::remove_file(&path).unwrap();
        self.files.remove(&path);
    }
    fn sorted_paths(&self) -> Vec<PathBuf> {
        let mut p: Vec<PathBuf> = self.files.keys().cloned().collect();
        p.sort();
        p
    }
    fn distinct_contents(&self) -> HashSet<ContentHash> {
        self.files.values().map(|b| ContentHash::of(b)).collect()
    }
}

/// Runs the helper; kills it after `kill_after` (if still running). Returns the paths of the
/// batches it reported as committed and whether it finished on its own.
fn run_helper(db: &str, dir: &Path, delay_ms: u64, kill_after: Duration) -> (Vec<PathBuf>, bool) {
    let deadline = Instant::now() + kill_after;
    let mut child = Command::new(env!("CARGO_BIN_EXE_feature-store-crash-helper"))
        .arg(db)
        .arg(dir)
        .arg(BATCH.to_string())
        .arg(delay_ms.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    });
    while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(1).min(kill_after));
    }
    let finished = child.try_wait().unwrap().is_some();
    // `Child::kill` sends SIGKILL on Unix.
    let _ = child.kill();
    let status = child.wait().unwrap();
    let lines = reader.join().unwrap();
    if finished {
        assert!(status.success(), "helper failed: {status}");
    }
    let committed = lines
        .iter()
        .filter_map(|l| l.strip_prefix("batch\t"))
        .flat_map(|l| l.split('\t').map(PathBuf::from))
        .collect();
    (committed, finished)
}

fn raw_integrity(db: &str) -> String {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0))
        .unwrap()
}

fn counts(lib: &TestLib) -> (i64, i64, i64, i64) {
    let images = lib.query_ints("SELECT COUNT(*), COUNT(DISTINCT hash) FROM images");
    let files = lib.query_ints("SELECT COUNT(*), COUNT(DISTINCT path) FROM files");
    (images[0], images[1], files[0], files[1])
}

fn sigkill_at_random_moments_loses_nothing_committed(kind: Kind) {
    let seed: u64 = std::env::var("CRASH_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2026);
    let mut rng = Rng::new(seed);
    let lib = TestLib::new(kind, "crash").unwrap();
    let calibration = TestLib::new(kind, "crash_calibration").unwrap();
    std::fs::create_dir_all(lib.dir().join("photos")).unwrap();
    let root = lib.dir().join("photos").canonicalize().unwrap();
    let db = lib.location.as_str();
    let model = ModelInfo::new(MODEL, DIM);
    let embedder = HashEmbedder::new(MODEL, DIM);
    let mut folder = Folder {
        root: root.clone(),
        files: HashMap::new(),
        next_name: 0,
    };
    for _ in 0..INITIAL_FILES {
        folder.add_new(&mut rng);
    }
    for _ in 0..INITIAL_FILES / 10 {
        folder.add_duplicate(&mut rng);
    }

    // Calibration: one uninterrupted run without delay, so kill moments spread over the whole
    // run (start-up, scan, batches, commits) rather than only its first milliseconds.
    // The fastest of two runs, so that a slow first start does not push kills past the end.
    let mut full_run_ms = u64::MAX;
    for _ in 0..2 {
        let t0 = Instant::now();
        let (_, finished) = run_helper(&calibration.location, &root, 0, Duration::from_secs(600));
        assert!(finished);
        full_run_ms = full_run_ms.min(t0.elapsed().as_millis() as u64);
        calibration.wipe();
    }

    let started = Instant::now();
    let (mut mid_run_kills, mut total_committed_checked) = (0, 0);
    println!(
        "full run of {} files without delay: {full_run_ms} ms",
        folder.files.len()
    );
    println!(
        "round  kind   delay  kill@ms  reported  images_after_kill  embedded_by_resume  final_images  files"
    );
    for round in 0..ROUNDS {
        let fresh = round % 2 == 0;
        if fresh {
            lib.wipe();
        } else {
            for _ in 0..60 {
                folder.edit(&mut rng);
            }
            for _ in 0..40 {
                folder.add_new(&mut rng);
            }
            for _ in 0..30 {
                folder.delete(&mut rng);
            }
            for _ in 0..10 {
                folder.add_duplicate(&mut rng);
            }
        }
        let delay_ms = 1 + rng.below(8) as u64;
        let work = if fresh { folder.files.len() } else { 140 };
        let estimate_ms = full_run_ms + (work / BATCH + 1) as u64 * delay_ms;
        let kill_ms = rng.below((estimate_ms * 9 / 10).max(1) as usize) as u64;
        let (committed, finished) = run_helper(db, &root, delay_ms, Duration::from_millis(kill_ms));
        if !finished {
            mid_run_kills += 1;
        }

        // The library is sound and opens for the same model.
        if kind == Kind::Sqlite && lib.exists() {
            assert_eq!(raw_integrity(db), "ok", "round {round}: integrity_check");
        }
        let mut store = lib.open(&model, &OpenOptions::new()).unwrap();
        assert!(store.integrity_check().unwrap().is_empty(), "round {round}");
        let after_kill = store.len().unwrap();

        // Every path of a reported batch is there, with the bytes the folder holds now.
        for path in &committed {
            let id = store
                .find_path(path)
                .unwrap()
                .unwrap_or_else(|| panic!("round {round}: committed {} missing", path.display()));
            let record = store.get(id).unwrap().unwrap();
            assert_eq!(
                record.hash,
                ContentHash::of(&folder.files[path]),
                "round {round}"
            );
        }
        total_committed_checked += committed.len();

        // The next sync does exactly what is left.
        let contents = folder.distinct_contents();
        let missing = contents
            .iter()
            .filter(|h| store.find_hash(h).unwrap().is_none())
            .count();
        let options = SyncOptions::new()
            .batch_size(BATCH)
            .remove_missing(true)
            .extensions(None);
        let report = store.sync(&root, &mut embedder.clone(), &options).unwrap();
        assert!(
            report.failed.is_empty(),
            "round {round}: {:?}",
            report.failed
        );
        assert_eq!(
            report.embedded, missing,
            "round {round}: embedded by the resuming sync"
        );

        // Done: one image per distinct content, one row per file, no duplicates.
        assert_eq!(store.len().unwrap(), contents.len(), "round {round}");
        let (images, hashes, files, paths) = counts(&lib);
        assert_eq!(images as usize, contents.len(), "round {round}");
        assert_eq!(hashes, images, "round {round}: duplicate hashes");
        assert_eq!(paths, files, "round {round}: duplicate paths");
        assert_eq!(files as usize, folder.files.len(), "round {round}");
        for (path, bytes) in &folder.files {
            let id = store.find_path(path).unwrap().unwrap();
            assert_eq!(store.get(id).unwrap().unwrap().hash, ContentHash::of(bytes));
            assert_eq!(
                store.stored_vector(id).unwrap().unwrap(),
                embedder.embed(bytes),
                "round {round}"
            );
        }
        assert!(store.integrity_check().unwrap().is_empty(), "round {round}");
        println!(
            "{round:>5}  {:<5}  {delay_ms:>3}ms  {kill_ms:>7}  {:>8}  {after_kill:>17}  {:>18}  {:>12}  {files:>5}{}",
            if fresh { "fresh" } else { "edit" },
            committed.len(),
            report.embedded,
            store.len().unwrap(),
            if finished {
                "  (finished before the kill)"
            } else {
                ""
            },
        );
    }
    println!(
        "{kind:?}: {ROUNDS} SIGKILLs, {mid_run_kills} of them mid-run; {total_committed_checked} committed paths checked; {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        mid_run_kills >= ROUNDS / 2,
        "most kills should land while the helper runs ({mid_run_kills} of {ROUNDS})"
    );
}
