//! Crash safety: an indexing process (`feature-store-crash-helper`) is killed with SIGKILL at
//! random moments, 20 times. After each kill the store must pass `PRAGMA integrity_check`, open,
//! hold every batch the helper reported as committed, and a following sync must finish the job:
//! one image per distinct content, one row per file, nothing embedded twice.
//!
//! Rounds alternate between a fresh store (full indexing) and an existing store after the folder
//! was changed (edited, new, deleted and duplicated files). Seed: `CRASH_TEST_SEED` (default 2026).

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dev_support::Rng;
use feature_store::{ContentHash, FeatureStore, HashEmbedder, ModelInfo, OpenOptions, SyncOptions};

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
fn run_helper(db: &Path, dir: &Path, delay_ms: u64, kill_after: Duration) -> (Vec<PathBuf>, bool) {
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

fn raw_integrity(db: &Path) -> String {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0))
        .unwrap()
}

fn counts(db: &Path) -> (i64, i64, i64, i64) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let (images, hashes): (i64, i64) = conn
        .query_row(
            "SELECT COUNT(*), COUNT(DISTINCT hash) FROM images",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let (files, paths): (i64, i64) = conn
        .query_row(
            "SELECT COUNT(*), COUNT(DISTINCT path) FROM files",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    (images, hashes, files, paths)
}

fn remove_store(db: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

#[test]
fn sigkill_at_random_moments_loses_nothing_committed() {
    let seed: u64 = std::env::var("CRASH_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2026);
    let mut rng = Rng::new(seed);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp
        .path()
        .join("photos")
        .canonicalize()
        .unwrap_or_else(|_| {
            std::fs::create_dir_all(tmp.path().join("photos")).unwrap();
            tmp.path().join("photos").canonicalize().unwrap()
        });
    let db = tmp.path().join("library.db");
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
    let calibration_db = tmp.path().join("calibration.db");
    let mut full_run_ms = u64::MAX;
    for _ in 0..2 {
        let t0 = Instant::now();
        let (_, finished) = run_helper(&calibration_db, &root, 0, Duration::from_secs(600));
        assert!(finished);
        full_run_ms = full_run_ms.min(t0.elapsed().as_millis() as u64);
        remove_store(&calibration_db);
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
            remove_store(&db);
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
        let (committed, finished) =
            run_helper(&db, &root, delay_ms, Duration::from_millis(kill_ms));
        if !finished {
            mid_run_kills += 1;
        }

        // The file is sound and opens for the same model.
        if db.exists() {
            assert_eq!(raw_integrity(&db), "ok", "round {round}: integrity_check");
        }
        let mut store = FeatureStore::open(&db, &model, &OpenOptions::new()).unwrap();
        assert!(store.integrity_check().unwrap().is_empty(), "round {round}");
        let after_kill = store.len();

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
        assert_eq!(store.len(), contents.len(), "round {round}");
        let (images, hashes, files, paths) = counts(&db);
        assert_eq!(images as usize, contents.len(), "round {round}");
        assert_eq!(hashes, images, "round {round}: duplicate hashes");
        assert_eq!(paths, files, "round {round}: duplicate paths");
        assert_eq!(files as usize, folder.files.len(), "round {round}");
        for (path, bytes) in &folder.files {
            let id = store.find_path(path).unwrap().unwrap();
            assert_eq!(store.get(id).unwrap().unwrap().hash, ContentHash::of(bytes));
            assert_eq!(
                store.vector(id).unwrap(),
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
            store.len(),
            if finished {
                "  (finished before the kill)"
            } else {
                ""
            },
        );
    }
    println!(
        "{ROUNDS} SIGKILLs, {mid_run_kills} of them mid-run; {total_committed_checked} committed paths checked; {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        mid_run_kills >= ROUNDS / 2,
        "most kills should land while the helper runs ({mid_run_kills} of {ROUNDS})"
    );
}
