//! Scale-out indexing on PostgreSQL: three worker processes (`feature-store-crash-helper` with a
//! per-image delay) sync the 816 sample photos into one library at once; one is killed with
//! SIGKILL while it holds claims. Afterwards every picture must be stored exactly once, every
//! path recorded with its bytes, no picture embedded by two live workers, the dead worker's
//! claimed pictures taken over by the others after the lease, and the library equal to what a
//! single process syncing the folder into SQLite produces.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use common::{Kind, TestLib};
use feature_store::{
    ContentHash, HashEmbedder, Library, ModelInfo, OpenOptions, Store, SyncOptions,
};

const MODEL: &str = "test/hash-embedder";
const DIM: usize = 32;
const WORKERS: usize = 3;
const BATCH: usize = 8;
const PER_IMAGE_MS: u64 = 10;
const LEASE_MS: u64 = 1500;

fn spawn(location: &str, dir: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_feature-store-crash-helper"))
        .arg(location)
        .arg(dir)
        .arg(BATCH.to_string())
        .arg("0")
        .arg(PER_IMAGE_MS.to_string())
        .arg(LEASE_MS.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// What one worker printed: hashes it started embedding, paths of its committed batches.
#[derive(Default)]
struct Output {
    embedded: Vec<String>,
    committed: Vec<PathBuf>,
    done: Option<String>,
}

fn parse(lines: &[String]) -> Output {
    let mut out = Output::default();
    for line in lines {
        if let Some(h) = line.strip_prefix("embed\t") {
            out.embedded.push(h.to_owned());
        } else if let Some(paths) = line.strip_prefix("batch\t") {
            out.committed.extend(paths.split('\t').map(PathBuf::from));
        } else if let Some(done) = line.strip_prefix("done ") {
            out.done = Some(done.to_owned());
        }
    }
    out
}

type Contents = (
    HashSet<(PathBuf, ContentHash)>,
    HashMap<ContentHash, Vec<f32>>,
);

/// Every (path, hash) and (hash, vector) of a library.
fn contents(store: &dyn Store) -> Contents {
    let (mut paths, mut vectors) = (HashSet::new(), HashMap::new());
    let mut offset = 0;
    loop {
        let page = store.list(offset, 200).unwrap();
        if page.is_empty() {
            break;
        }
        offset += page.len();
        for record in page {
            for path in store.paths(record.id).unwrap() {
                paths.insert((path, record.hash));
            }
            vectors.insert(
                record.hash,
                store.stored_vector(record.id).unwrap().unwrap(),
            );
        }
    }
    (paths, vectors)
}

#[test]
fn three_workers_one_killed_store_every_picture_once() {
    let Some(pg) = TestLib::new(Kind::Postgres, "scale_out") else {
        return;
    };
    let Some(data) = dev_support::shared_data_or_skip("scale_out") else {
        return;
    };
    let photos = data.join("imagenet-sample").canonicalize().unwrap();
    let mut expected: HashMap<PathBuf, ContentHash> = HashMap::new();
    for entry in std::fs::read_dir(&photos).unwrap() {
        let path = entry.unwrap().path();
        expected.insert(
            path.clone(),
            ContentHash::of(&std::fs::read(&path).unwrap()),
        );
    }
    let distinct: HashSet<ContentHash> = expected.values().copied().collect();
    assert_eq!(expected.len(), 816, "the sample holds 816 photos");

    let started = Instant::now();
    let mut workers: Vec<Child> = (0..WORKERS).map(|_| spawn(&pg.location, &photos)).collect();
    // Workers 1 and 2 are read on threads; worker 0 here, to kill it at a chosen moment.
    let readers: Vec<_> = workers[1..]
        .iter_mut()
        .map(|w| {
            let stdout = w.stdout.take().unwrap();
            std::thread::spawn(move || {
                BufReader::new(stdout)
                    .lines()
                    .map_while(Result::ok)
                    .collect::<Vec<String>>()
            })
        })
        .collect();
    let mut victim_lines = Vec::new();
    let mut batches = 0;
    let mut lines = BufReader::new(workers[0].stdout.take().unwrap()).lines();
    // After three committed batches, kill worker 0 as soon as it starts embedding a new batch:
    // it dies holding claims on those pictures, mid-embedding.
    for line in lines.by_ref() {
        let line = line.unwrap();
        let embedding = line.starts_with("embed\t");
        if line.starts_with("batch\t") {
            batches += 1;
        }
        victim_lines.push(line);
        if batches >= 3 && embedding {
            break;
        }
    }
    workers[0].kill().unwrap();
    let status = workers[0].wait().unwrap();
    assert!(!status.success(), "worker 0 was killed, not finished");
    victim_lines.extend(lines.map_while(Result::ok));
    let killed_at = started.elapsed();

    let mut outputs = vec![parse(&victim_lines)];
    for (w, reader) in workers[1..].iter_mut().zip(readers) {
        let status = w.wait().unwrap();
        assert!(status.success(), "worker failed: {status}");
        outputs.push(parse(&reader.join().unwrap()));
    }
    let elapsed = started.elapsed();
    assert!(outputs[0].done.is_none());
    assert!(outputs[1..].iter().all(|o| o.done.is_some()));

    // Exactly once: one image per distinct content, one row per path, nothing claimed left.
    let counts = pg.query_ints(
        "SELECT (SELECT count(*) FROM images), (SELECT count(DISTINCT hash) FROM images),
                (SELECT count(*) FROM files), (SELECT count(*) FROM claims)",
    );
    assert_eq!(
        counts,
        [distinct.len() as i64, distinct.len() as i64, 816, 0]
    );
    let model = ModelInfo::new(MODEL, DIM);
    let library = Library::open(&pg.location, &model, &OpenOptions::new()).unwrap();
    assert!(library.integrity_check().unwrap().is_empty());
    let embedder = HashEmbedder::new(MODEL, DIM);
    for (path, hash) in &expected {
        let id = library
            .find_path(path)
            .unwrap()
            .unwrap_or_else(|| panic!("{} not recorded", path.display()));
        assert_eq!(library.get(id).unwrap().unwrap().hash, *hash);
    }

    // Embedded once: the live workers never embedded the same picture twice, nor one the killed
    // worker had committed; what the killed worker was embedding when it died (its claims) was
    // taken over by the others once the lease expired.
    // (Its batches also list paths whose bytes a live worker had stored: those it did not embed.)
    let in_victim_batches: HashSet<String> = outputs[0]
        .committed
        .iter()
        .map(|p| expected[p].to_hex())
        .collect();
    let committed_by_victim: HashSet<String> = outputs[0]
        .embedded
        .iter()
        .filter(|h| in_victim_batches.contains(*h))
        .cloned()
        .collect();
    let mut by_survivors: HashMap<&str, usize> = HashMap::new();
    for o in &outputs[1..] {
        for h in &o.embedded {
            *by_survivors.entry(h.as_str()).or_default() += 1;
        }
    }
    let twice: Vec<_> = by_survivors.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "embedded twice by live workers: {twice:?}"
    );
    for h in &committed_by_victim {
        assert!(
            !by_survivors.contains_key(h.as_str()),
            "{h} re-embedded after its commit"
        );
    }
    let in_flight: Vec<&String> = outputs[0]
        .embedded
        .iter()
        .filter(|h| !committed_by_victim.contains(*h))
        .collect();
    assert!(!in_flight.is_empty(), "worker 0 died mid-embedding");
    for h in &in_flight {
        assert!(
            by_survivors.contains_key(h.as_str()),
            "claim of the dead worker on {h} not taken over"
        );
    }
    let all_embedded: HashSet<&str> = outputs
        .iter()
        .flat_map(|o| o.embedded.iter().map(String::as_str))
        .collect();
    assert_eq!(all_embedded.len(), distinct.len());
    let total: usize = outputs.iter().map(|o| o.embedded.len()).sum();
    assert_eq!(
        total,
        distinct.len() + in_flight.len(),
        "only the dead worker's unfinished work is redone"
    );

    // The same library as one process syncing the folder into SQLite.
    let single = TestLib::new(Kind::Sqlite, "scale_out_single").unwrap();
    let mut reference = single.open(&model, &OpenOptions::new()).unwrap();
    reference
        .sync(
            &photos,
            &mut embedder.clone(),
            &SyncOptions::new().extensions(None),
        )
        .unwrap();
    let (pg_paths, pg_vectors) = contents(&library);
    let (ref_paths, ref_vectors) = contents(&reference);
    assert_eq!(pg_paths, ref_paths);
    assert_eq!(pg_vectors, ref_vectors);

    println!(
        "{WORKERS} workers, {} photos ({} distinct): worker 0 killed at {:.1} s after {} committed \
         batches with {} pictures in flight; done in {:.1} s; embeddings per worker {:?}; \
         waited/embedded reported by the live workers: {:?}",
        expected.len(),
        distinct.len(),
        killed_at.as_secs_f64(),
        batches,
        in_flight.len(),
        elapsed.as_secs_f64(),
        outputs.iter().map(|o| o.embedded.len()).collect::<Vec<_>>(),
        outputs[1..]
            .iter()
            .map(|o| o.done.clone().unwrap_or_default())
            .collect::<Vec<_>>(),
    );
}

#[test]
fn claims_of_a_hung_worker_are_taken_over_when_their_lease_expires() {
    let Some(pg) = TestLib::new(Kind::Postgres, "hung_worker") else {
        return;
    };
    let photos = pg.dir().join("photos");
    std::fs::create_dir(&photos).unwrap();
    for i in 0..12 {
        std::fs::write(photos.join(format!("{i:02}.jpg")), format!("picture {i}")).unwrap();
    }
    let photos = photos.canonicalize().unwrap();
    // A worker that claims its first batch of 4 and then hangs (10 minutes per picture) with its
    // database session open: only the lease frees its claims.
    let mut hung = Command::new(env!("CARGO_BIN_EXE_feature-store-crash-helper"))
        .arg(&pg.location)
        .arg(&photos)
        .args(["4", "0", "600000", "1000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(hung.stdout.take().unwrap()).lines();
    let mut claimed = HashSet::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(h) = line.strip_prefix("embed\t") {
            claimed.insert(h.to_owned());
            if claimed.len() == 4 {
                break;
            }
        }
    }
    let model = ModelInfo::new(MODEL, DIM);
    let mut library = Library::open(&pg.location, &model, &OpenOptions::new()).unwrap();
    let t0 = Instant::now();
    let report = library
        .sync(
            &photos,
            &mut HashEmbedder::new(MODEL, DIM),
            &SyncOptions::new()
                .extensions(None)
                .claim_lease(std::time::Duration::from_millis(1000)),
        )
        .unwrap();
    let waited = t0.elapsed();
    let _ = hung.kill();
    let _ = hung.wait();
    assert_eq!((report.added, report.embedded, report.waited), (12, 12, 4));
    assert!(
        waited.as_millis() >= 500,
        "the claims were taken over only after their lease: {waited:?}"
    );
    assert_eq!(library.len().unwrap(), 12);
    assert_eq!(pg.query_ints("SELECT count(*) FROM claims"), [0]);
    println!(
        "hung worker's 4 claims taken over after {:.2} s",
        waited.as_secs_f64()
    );
}
