//! Feature-store benchmarks: exact top-10 search over 10k / 100k / 1M random 512-d vectors
//! (throughput = queries/s), bulk insertion into the SQLite store and opening it (rows/s).
//!
//! `cargo bench -p clip-benches --bench search`; the 1M case needs about 2 GiB of memory for the
//! f32 matrix and 1 GiB for the f16 one (built one after the other).

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dev_support::Rng;
use feature_store::{
    ContentHash, FeatureStore, FlatIndex, ImageId, ModelInfo, NewImage, OpenOptions, Precision,
    SearchBuffer, SearchOptions, VectorIndex,
};

const DIM: usize = 512;

fn random_index(n: usize, precision: Precision) -> FlatIndex {
    let mut rng = Rng::new(n as u64);
    let mut index = FlatIndex::new(DIM, precision);
    index.reserve(n);
    let mut v = vec![0.0f32; DIM];
    for i in 0..n {
        rng.unit(&mut v);
        if index.upsert(ImageId(i as i64), &v).is_err() {
            unreachable!("random unit vectors are finite and {DIM}-d");
        }
    }
    index
}

fn search(c: &mut Criterion) {
    let mut group = c.benchmark_group("search_top10_512d");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Elements(1));
    let mut rng = Rng::new(99);
    let queries: Vec<Vec<f32>> = (0..16)
        .map(|_| {
            let mut q = vec![0.0; DIM];
            rng.unit(&mut q);
            q
        })
        .collect();
    for (label, n) in [("10k", 10_000), ("100k", 100_000), ("1M", 1_000_000)] {
        for precision in [Precision::F32, Precision::F16] {
            let index = random_index(n, precision);
            let mut buf = SearchBuffer::new();
            let mut i = 0;
            let name = format!("{precision:?}").to_lowercase();
            group.bench_function(BenchmarkId::new(name, label), |b| {
                b.iter(|| {
                    i = (i + 1) % queries.len();
                    index
                        .search_into(black_box(&queries[i]), SearchOptions::top(10), &mut buf)
                        .map(|()| buf.hits().len())
                })
            });
        }
    }
    group.finish();
}

/// The memory-bandwidth floor: summing a 1M × 512 f32 matrix (2 GiB) with one thread per core,
/// the least any exact f32 scan of it can take.
fn memory_floor(c: &mut Criterion) {
    let n = 1_000_000 * DIM;
    let data: Vec<f32> = (0..n).map(|i| (i % 7) as f32).collect();
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let mut group = c.benchmark_group("memory_floor");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Bytes((n * 4) as u64));
    group.bench_function("sum_1M_512d_f32", |b| {
        b.iter(|| {
            std::thread::scope(|s| {
                let parts: Vec<_> = data
                    .chunks(n.div_ceil(threads))
                    .map(|part| {
                        s.spawn(move || {
                            let mut acc = [0.0f32; 16];
                            for x in part.chunks_exact(16) {
                                for j in 0..16 {
                                    acc[j] += x[j];
                                }
                            }
                            acc.iter().sum::<f32>()
                        })
                    })
                    .collect();
                parts
                    .into_iter()
                    .map(|p| p.join().unwrap_or(0.0))
                    .sum::<f32>()
            })
        })
    });
    group.finish();
}

fn bulk_insert(c: &mut Criterion) {
    const ROWS: usize = 20_000;
    const BATCH: usize = 1_000;
    let mut rng = Rng::new(5);
    let rows: Vec<NewImage> = (0..ROWS)
        .map(|i| {
            let mut v = vec![0.0; DIM];
            rng.unit(&mut v);
            NewImage {
                path: PathBuf::from(format!("/library/{:03}/{i:07}.jpg", i % 997)),
                hash: ContentHash::of(&i.to_le_bytes()),
                size: 100_000,
                mtime_ns: 1_700_000_000_000_000_000,
                vector: v,
            }
        })
        .collect();
    let model = ModelInfo::new("bench/random", DIM);
    let mut group = c.benchmark_group("bulk_insert_512d");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Elements(ROWS as u64));
    group.bench_function(format!("{ROWS}_rows_batches_of_{BATCH}"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir().expect("temporary folder");
                let mut store =
                    FeatureStore::open(dir.path().join("b.db"), &model, &OpenOptions::new())
                        .expect("new store");
                let start = Instant::now();
                for chunk in rows.chunks(BATCH) {
                    store.add_batch(chunk).expect("insert");
                }
                total += start.elapsed();
            }
            total
        })
    });
    // Opening loads every vector into memory (start-up time of a server).
    let dir = tempfile::tempdir().expect("temporary folder");
    let db = dir.path().join("open.db");
    {
        let mut store = FeatureStore::open(&db, &model, &OpenOptions::new()).expect("new store");
        for chunk in rows.chunks(BATCH) {
            store.add_batch(chunk).expect("insert");
        }
    }
    group.bench_function(format!("open_{ROWS}_rows"), |b| {
        b.iter(|| {
            FeatureStore::open(&db, &model, &OpenOptions::new())
                .expect("open")
                .len()
        })
    });
    group.finish();
}

criterion_group!(benches, search, memory_floor, bulk_insert);
criterion_main!(benches);
