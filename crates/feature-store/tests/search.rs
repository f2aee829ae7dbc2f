//! Exact top-k search checked against a brute-force reference (f64 dot products, full sort), on
//! the in-memory index and on both backends; HNSW search on PostgreSQL checked for recall.

mod common;

use std::path::PathBuf;

use common::{Kind, TestLib};
use dev_support::Rng;
use feature_store::{
    ContentHash, FlatIndex, HnswParams, ImageId, ModelInfo, NewImage, OpenOptions, Precision,
    SearchBuffer, SearchMethod, SearchOptions, Store, VectorIndex,
};
use half::f16;

on_both_backends!(store_search_and_similar_map_back_to_paths);

/// Reference: every score in f64, sorted by score (descending) then id (ascending).
fn brute_force(
    data: &[(ImageId, Vec<f32>)],
    query: &[f32],
    k: usize,
    exclude: Option<ImageId>,
) -> Vec<(ImageId, f64)> {
    let mut all: Vec<(ImageId, f64)> = data
        .iter()
        .filter(|(id, _)| Some(*id) != exclude)
        .map(|(id, v)| {
            (
                *id,
                v.iter()
                    .zip(query)
                    .map(|(a, b)| f64::from(*a) * f64::from(*b))
                    .sum(),
            )
        })
        .collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    all.truncate(k);
    all
}

/// Our results must be the reference's up to rounding: same scores position by position
/// (tolerance `tol`), and each returned id's own reference score equal to its returned score.
fn check(
    ours: &[feature_store::Scored],
    reference: &[(ImageId, f64)],
    all: &[(ImageId, Vec<f32>)],
    query: &[f32],
    tol: f64,
    what: &str,
) -> f64 {
    assert_eq!(ours.len(), reference.len(), "{what}: result count");
    let mut max_err: f64 = 0.0;
    for (pos, (hit, want)) in ours.iter().zip(reference).enumerate() {
        let err = (f64::from(hit.score) - want.1).abs();
        max_err = max_err.max(err);
        assert!(
            err <= tol,
            "{what}: position {pos} score {} vs reference {}",
            hit.score,
            want.1
        );
        let v = &all.iter().find(|(id, _)| *id == hit.id).unwrap().1;
        let own: f64 = v
            .iter()
            .zip(query)
            .map(|(a, b)| f64::from(*a) * f64::from(*b))
            .sum();
        assert!(
            (own - f64::from(hit.score)).abs() <= tol,
            "{what}: id {} score",
            hit.id
        );
        if hit.id != want.0 {
            // Only allowed where the reference itself cannot separate them.
            assert!(
                (own - want.1).abs() <= 2.0 * tol,
                "{what}: position {pos} id {} vs {}",
                hit.id,
                want.0
            );
        }
    }
    let ids: std::collections::HashSet<ImageId> = ours.iter().map(|h| h.id).collect();
    assert_eq!(ids.len(), ours.len(), "{what}: duplicate ids");
    max_err
}

#[test]
fn random_data_matches_brute_force_for_several_k() {
    // More rows than one parallel chunk (4096), a dimension that is not a multiple of 16.
    let (n, dim) = (9_000, 37);
    let mut rng = Rng::new(1);
    let data: Vec<(ImageId, Vec<f32>)> = (0..n)
        .map(|i| {
            (
                ImageId(10 * i as i64 + 3),
                (0..dim).map(|_| rng.uniform()).collect(),
            )
        })
        .collect();
    let mut f32_index = FlatIndex::new(dim, Precision::F32);
    let mut f16_index = FlatIndex::new(dim, Precision::F16);
    for (id, v) in &data {
        f32_index.upsert(*id, v).unwrap();
        f16_index.upsert(*id, v).unwrap();
    }
    // f16-rounded copy of the data: the reference for the f16 index.
    let data16: Vec<(ImageId, Vec<f32>)> = data
        .iter()
        .map(|(id, v)| (*id, v.iter().map(|&x| f16::from_f32(x).to_f32()).collect()))
        .collect();
    let mut buf = SearchBuffer::new();
    let (mut worst32, mut worst16) = (0.0f64, 0.0f64);
    for trial in 0..5 {
        let query: Vec<f32> = (0..dim).map(|_| rng.uniform()).collect();
        for k in [1, 5, 10, 100, 1000, n, n + 7] {
            let exclude = (trial % 2 == 1).then(|| data[rng.below(n)].0);
            let opts = SearchOptions { k, exclude };
            let reference = brute_force(&data, &query, k, exclude);
            f32_index.search_into(&query, opts, &mut buf).unwrap();
            // f32 sums of 37 products of magnitude <= 1: rounding stays far below 1e-4.
            worst32 = worst32.max(check(
                buf.hits(),
                &reference,
                &data,
                &query,
                1e-4,
                &format!("f32 k={k}"),
            ));
            let reference16 = brute_force(&data16, &query, k, exclude);
            f16_index.search_into(&query, opts, &mut buf).unwrap();
            worst16 = worst16.max(check(
                buf.hits(),
                &reference16,
                &data16,
                &query,
                1e-4,
                &format!("f16 k={k}"),
            ));
            if let Some(x) = exclude {
                assert!(buf.hits().iter().all(|h| h.id != x));
            }
        }
    }
    println!("max |score - f64 reference|: f32 index {worst32:.2e}, f16 index {worst16:.2e}");
}

#[test]
fn ties_are_broken_by_smaller_id_deterministically() {
    // Small integer coordinates: every dot product is exact in f32, so many scores tie exactly
    // and the expected order (score desc, id asc) is known without rounding doubt.
    let (n, dim) = (10_000, 20);
    let mut rng = Rng::new(7);
    let mut index = FlatIndex::new(dim, Precision::F32);
    let mut data: Vec<(ImageId, Vec<f32>)> = Vec::new();
    // Insert in shuffled id order so ids do not follow row positions.
    let mut ids: Vec<i64> = (0..n as i64).collect();
    for i in (1..ids.len()).rev() {
        ids.swap(i, rng.below(i + 1));
    }
    for &id in &ids {
        let v: Vec<f32> = (0..dim).map(|_| rng.below(3) as f32 - 1.0).collect();
        index.upsert(ImageId(id), &v).unwrap();
        data.push((ImageId(id), v));
    }
    // Remove some rows (moves others into their slots), re-insert a few with new vectors.
    for _ in 0..500 {
        let i = rng.below(data.len());
        let (id, _) = data.swap_remove(i);
        assert!(index.remove(id));
    }
    for id in n as i64..n as i64 + 50 {
        let v: Vec<f32> = (0..dim).map(|_| rng.below(3) as f32 - 1.0).collect();
        index.upsert(ImageId(id), &v).unwrap();
        data.push((ImageId(id), v));
    }
    assert_eq!(index.len(), data.len());
    let mut buf = SearchBuffer::new();
    for _ in 0..10 {
        let query: Vec<f32> = (0..dim).map(|_| rng.below(3) as f32 - 1.0).collect();
        for k in [1, 3, 10, 64, 500] {
            let reference = brute_force(&data, &query, k, None);
            index
                .search_into(&query, SearchOptions::top(k), &mut buf)
                .unwrap();
            let ours: Vec<(ImageId, f64)> = buf
                .hits()
                .iter()
                .map(|h| (h.id, f64::from(h.score)))
                .collect();
            assert_eq!(ours, reference, "k={k}");
        }
    }
}

fn random_items(rng: &mut Rng, n: usize, dim: usize) -> Vec<NewImage> {
    (0..n)
        .map(|i| {
            let mut v: Vec<f32> = (0..dim).map(|_| rng.uniform()).collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter_mut().for_each(|x| *x /= norm);
            NewImage {
                path: PathBuf::from(format!("/lib/{i}.png")),
                hash: ContentHash::of(format!("{i}").as_bytes()),
                size: 1,
                mtime_ns: 0,
                vector: v,
            }
        })
        .collect()
}

fn store_search_and_similar_map_back_to_paths(kind: Kind) {
    let dim = 16;
    let model = ModelInfo::new("test/random", dim);
    let mut rng = Rng::new(3);
    let items = random_items(&mut rng, 300, dim);
    for precision in [Precision::F32, Precision::F16] {
        let lib = TestLib::new(kind, &format!("search_{precision:?}")).unwrap();
        let options = OpenOptions::new().precision(precision);
        let mut data = Vec::new();
        {
            let mut store = lib.open(&model, &options).unwrap();
            for (o, item) in store.add_batch(&items).unwrap().iter().zip(&items) {
                data.push((o.id, item.vector.clone()));
            }
        }
        let store = lib.open(&model, &options).unwrap();
        let query: Vec<f32> = (0..dim).map(|_| rng.uniform()).collect();
        let hits = store.search(&query, 10).unwrap();
        let reference = brute_force(&data, &query, 10, None);
        // f16 storage: each value off by <= 2^-11 relative, |q| <= 4, |v| = 1: error < 4e-3.
        let tol = if precision == Precision::F32 {
            1e-5
        } else {
            4e-3
        };
        assert_eq!(hits.len(), 10);
        for (h, r) in hits.iter().zip(&reference) {
            assert!(
                (f64::from(h.score) - r.1).abs() < tol,
                "{kind:?} {precision:?}"
            );
            assert_eq!(store.get(h.id).unwrap().unwrap().path, h.path);
        }
        if precision == Precision::F32 {
            assert_eq!(
                hits.iter().map(|h| h.id).collect::<Vec<_>>(),
                reference.iter().map(|r| r.0).collect::<Vec<_>>()
            );
        }
        // Image → image: the query image is left out, the rest is the brute-force order.
        let (qid, qv) = &data[42];
        let similar = store.similar(*qid, 5).unwrap();
        assert_eq!(similar.len(), 5);
        assert!(similar.iter().all(|h| h.id != *qid));
        let reference = brute_force(&data, qv, 5, Some(*qid));
        if precision == Precision::F32 {
            assert_eq!(
                similar.iter().map(|h| h.id).collect::<Vec<_>>(),
                reference.iter().map(|r| r.0).collect::<Vec<_>>()
            );
        }
        // Without exclusion the image finds itself first (unit vectors).
        let mut buf = SearchBuffer::new();
        let own = store.stored_vector(*qid).unwrap().unwrap();
        let top = store
            .search_scored(&own, SearchOptions::top(1), &mut buf)
            .unwrap();
        assert_eq!(top[0].id, *qid);
        // Wrong query length: typed error.
        assert!(matches!(
            store.search(&[1.0; 3], 5),
            Err(feature_store::Error::VectorDim {
                expected: 16,
                found: 3,
                ..
            })
        ));
        assert!(matches!(
            store.similar(ImageId(999_999), 5),
            Err(feature_store::Error::UnknownId { .. })
        ));
    }
}

#[test]
fn postgres_exact_search_breaks_ties_like_sqlite() {
    // Small integer coordinates: dot products are exact, many scores tie; both backends must
    // return the brute-force order (score desc, id asc) exactly.
    let Some(pg) = TestLib::new(Kind::Postgres, "pg_ties") else {
        return;
    };
    let dim = 12;
    let model = ModelInfo::new("test/ties", dim);
    let mut rng = Rng::new(11);
    let items: Vec<NewImage> = (0..2000)
        .map(|i| NewImage {
            path: PathBuf::from(format!("/t/{i}.png")),
            hash: ContentHash::of(format!("t{i}").as_bytes()),
            size: 1,
            mtime_ns: 0,
            vector: (0..dim).map(|_| rng.below(3) as f32 - 1.0).collect(),
        })
        .collect();
    let mut store = pg.open(&model, &OpenOptions::new()).unwrap();
    let data: Vec<(ImageId, Vec<f32>)> = store
        .add_batch(&items)
        .unwrap()
        .iter()
        .zip(&items)
        .map(|(o, i)| (o.id, i.vector.clone()))
        .collect();
    let mut buf = SearchBuffer::new();
    for _ in 0..5 {
        let query: Vec<f32> = (0..dim).map(|_| rng.below(3) as f32 - 1.0).collect();
        for k in [1, 10, 100] {
            let exclude = Some(data[rng.below(data.len())].0);
            let reference = brute_force(&data, &query, k, exclude);
            let ours: Vec<(ImageId, f64)> = store
                .search_scored(&query, SearchOptions { k, exclude }, &mut buf)
                .unwrap()
                .iter()
                .map(|h| (h.id, f64::from(h.score)))
                .collect();
            assert_eq!(ours, reference, "k={k}");
        }
    }
}

#[test]
fn postgres_hnsw_search_finds_the_exact_neighbours() {
    let Some(pg) = TestLib::new(Kind::Postgres, "pg_hnsw") else {
        return;
    };
    let (n, dim) = (3000, 32);
    let model = ModelInfo::new("test/hnsw", dim);
    let mut rng = Rng::new(5);
    let items = random_items(&mut rng, n, dim);
    let exact = {
        let mut store = pg.open(&model, &OpenOptions::new()).unwrap();
        store.add_batch(&items).unwrap();
        store
    };
    let hnsw = pg
        .open(
            &model,
            &OpenOptions::new().search(SearchMethod::Hnsw(HnswParams::default().ef_search(100))),
        )
        .unwrap();
    // The planner uses the index: EXPLAIN of the search query names it.
    let plan = {
        let mut c = ::postgres::Client::connect(&pg.location, ::postgres::NoTls).unwrap();
        c.batch_execute("SET enable_seqscan = off").unwrap();
        let rows = c
            .query(
                "EXPLAIN SELECT id FROM images ORDER BY embedding <#> (SELECT embedding FROM images LIMIT 1) LIMIT 10",
                &[],
            )
            .unwrap();
        rows.iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(plan.contains("images_embedding_hnsw"), "{plan}");
    let (mut found, mut wanted) = (0, 0);
    let mut buf = SearchBuffer::new();
    for _ in 0..20 {
        let query: Vec<f32> = (0..dim).map(|_| rng.uniform() - 0.5).collect();
        let want: Vec<ImageId> = exact
            .search_scored(&query, SearchOptions::top(10), &mut buf)
            .unwrap()
            .iter()
            .map(|h| h.id)
            .collect();
        let got = hnsw
            .search_scored(&query, SearchOptions::top(10), &mut buf)
            .unwrap();
        assert!(got.len() <= 10);
        assert!(
            got.windows(2).all(|w| w[0].score > w[1].score
                || (w[0].score == w[1].score && w[0].id < w[1].id)),
            "ordered by score, then id"
        );
        found += got.iter().filter(|h| want.contains(&h.id)).count();
        wanted += want.len();
    }
    let recall = found as f64 / wanted as f64;
    println!("HNSW recall@10 on {n} random {dim}-d vectors: {recall:.3}");
    // ef_search 100 over 3000 points: HNSW is near-exact; 0.9 leaves room for graph randomness.
    assert!(recall >= 0.9, "recall@10 {recall}");
    let similar = hnsw.similar(ImageId(1), 5).unwrap();
    assert_eq!(similar.len(), 5);
    assert!(similar.iter().all(|h| h.id != ImageId(1)));
}
