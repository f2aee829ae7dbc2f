//! The library on both backends: header checks, add-if-new, browsing, sync, typed errors on bad
//! input. Each test runs twice: `sqlite::…` on a file, `postgres::…` on a fresh database.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::{Kind, TestLib};
use feature_store::{
    AddStatus, ContentHash, EmbedInput, Error, FeatureStore, HashEmbedder, ImageEmbedder, ImageId,
    Library, ModelInfo, NewImage, OpenOptions, Store, SyncOptions,
};

on_both_backends!(
    header_records_model_and_refuses_another,
    newer_schema_version_is_refused_and_left_alone,
    not_a_library_is_an_error_naming_the_location,
    negative_size_in_a_row_is_reported_not_clamped,
    add_is_add_if_new_and_bad_input_changes_nothing,
    list_pages_in_insertion_order,
    sync_is_incremental_dedupes_and_reports_bad_images,
    add_file_skips_known_files_and_embeds_new_bytes_once,
    progress_reports_each_committed_batch,
    f16_store_refuses_values_it_cannot_hold,
    remove_missing_forgets_only_files_that_are_gone,
    refresh_picks_up_changes_committed_by_another_handle,
    read_only_searches_and_refuses_every_write,
);

fn lib(kind: Kind, test: &str) -> TestLib {
    TestLib::new(kind, test).expect("backend available")
}

const MODEL: &str = "test/hash";
const DIM: usize = 8;

fn model() -> ModelInfo {
    ModelInfo::new(MODEL, DIM)
}

fn image(path: &str, bytes: &[u8], vector: Vec<f32>) -> NewImage {
    NewImage {
        path: PathBuf::from(path),
        hash: ContentHash::of(bytes),
        size: bytes.len() as u64,
        mtime_ns: 0,
        vector,
    }
}

fn unit(i: usize) -> Vec<f32> {
    let mut v = vec![0.0; DIM];
    v[i % DIM] = 1.0;
    v
}

/// Sets a file's mtime an hour back, so that `sync` may skip it without reading.
fn age(path: &Path) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
}

/// Wraps `HashEmbedder`, counting calls and failing on bytes that start with `BAD`, returning a
/// wrong-length vector for `SHORT` and NaN for `NAN`.
struct Picky {
    inner: HashEmbedder,
    embedded: Vec<PathBuf>,
}

impl Picky {
    fn new() -> Self {
        Picky {
            inner: HashEmbedder::new(MODEL, DIM),
            embedded: Vec::new(),
        }
    }
}

impl ImageEmbedder for Picky {
    type Error = String;
    fn model_id(&self) -> &str {
        MODEL
    }
    fn dim(&self) -> usize {
        DIM
    }
    fn embed_batch(&mut self, batch: &[EmbedInput<'_>]) -> Vec<Result<Vec<f32>, String>> {
        batch
            .iter()
            .map(|item| {
                self.embedded.push(item.path.to_path_buf());
                if item.bytes.starts_with(b"BAD") {
                    Err("cannot decode".to_string())
                } else if item.bytes.starts_with(b"SHORT") {
                    Ok(vec![0.5; DIM - 1])
                } else if item.bytes.starts_with(b"NAN") {
                    Ok(vec![f32::NAN; DIM])
                } else {
                    Ok(self.inner.embed(item.bytes))
                }
            })
            .collect()
    }
}

fn header_records_model_and_refuses_another(kind: Kind) {
    let lib = lib(kind, "header");
    let db = lib.shown();
    {
        let mut store = lib.open(&model(), &OpenOptions::new()).unwrap();
        store.add(&image("/a.png", b"a", unit(0))).unwrap();
        assert_eq!(store.model(), &model());
        assert_eq!(store.location(), db.display().to_string());
    }
    let header = Library::read_header(&lib.location).unwrap();
    assert_eq!(header.model, model());
    let dtype = match kind {
        Kind::Sqlite => "f32le",
        Kind::Postgres => "pgvector:vector",
    };
    assert_eq!(header.dtype, dtype);
    assert_eq!(header.schema_version, 1);

    match lib.open(&ModelInfo::new("other/model", DIM), &OpenOptions::new()) {
        Err(Error::ModelMismatch {
            file,
            stored,
            requested,
        }) => {
            assert_eq!(
                (file, stored.as_str(), requested.as_str()),
                (db.clone(), MODEL, "other/model")
            );
        }
        other => panic!("expected ModelMismatch, got {other:?}"),
    }
    let err = lib
        .open(&ModelInfo::new(MODEL, 16), &OpenOptions::new())
        .unwrap_err();
    assert!(
        matches!(&err, Error::DimMismatch { stored: 8, requested: 16, file } if *file == db),
        "{err:?}"
    );
    let message = err.to_string();
    let name = db.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        message.contains(&name) && message.contains('8') && message.contains("16"),
        "{message}"
    );

    let store = Library::open_existing(&lib.location, &OpenOptions::new()).unwrap();
    assert_eq!(store.len().unwrap(), 1);
    let missing = TestLib::new(kind, "header_missing").unwrap();
    assert!(matches!(
        Library::open_existing(&missing.location, &OpenOptions::new()),
        Err(Error::Missing { .. })
    ));
    assert!(!missing.exists(), "nothing was created");
}

fn newer_schema_version_is_refused_and_left_alone(kind: Kind) {
    let lib = lib(kind, "newer_schema");
    lib.open(&model(), &OpenOptions::new())
        .unwrap()
        .add(&image("/a.png", b"a", unit(0)))
        .unwrap();
    lib.exec("UPDATE meta SET value = '2' WHERE key = 'schema_version'");
    match lib.open(&model(), &OpenOptions::new()) {
        Err(Error::UnsupportedSchema {
            file,
            expected: 1,
            found,
        }) => assert_eq!((file, found.as_str()), (lib.shown(), "2")),
        other => panic!("expected UnsupportedSchema, got {other:?}"),
    }
    assert!(matches!(
        Library::read_header(&lib.location),
        Err(Error::UnsupportedSchema { .. })
    ));
    // Nothing was written: the header still says 2 and the image is still there.
    assert_eq!(
        lib.query_ints("SELECT CAST(value AS BIGINT) FROM meta WHERE key = 'schema_version'"),
        [2]
    );
    assert_eq!(lib.query_ints("SELECT COUNT(*) FROM images"), [1]);
}

fn not_a_library_is_an_error_naming_the_location(kind: Kind) {
    let lib = lib(kind, "not_a_library");
    match kind {
        Kind::Sqlite => std::fs::write(&lib.location, vec![0x42u8; 4096]).unwrap(),
        Kind::Postgres => lib.exec("CREATE TABLE meta (x integer)"),
    }
    let err = lib.open(&model(), &OpenOptions::new()).unwrap_err();
    let name = lib
        .shown()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(err.to_string().contains(&name), "{err}");
}

#[test]
fn corrupt_vector_blob_is_reported_not_reinterpreted() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("lib.db");
    let id = {
        let mut store = FeatureStore::open(&db, &model(), &OpenOptions::new()).unwrap();
        store.add(&image("/a.png", b"a", unit(0))).unwrap().id
    };
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute(
        "UPDATE images SET vector = x'00112233' WHERE id = ?1",
        [id.0],
    )
    .unwrap();
    drop(conn);
    match FeatureStore::open(&db, &model(), &OpenOptions::new()) {
        Err(Error::BadVectorBlob {
            file,
            id: bad,
            expected_bytes,
            found_bytes,
            ..
        }) => assert_eq!((file, bad, expected_bytes, found_bytes), (db, id, 32, 4)),
        other => panic!("expected BadVectorBlob, got {other:?}"),
    }
}

fn negative_size_in_a_row_is_reported_not_clamped(kind: Kind) {
    let lib = lib(kind, "negative_size");
    let id = {
        let mut store = lib.open(&model(), &OpenOptions::new()).unwrap();
        store.add(&image("/a.png", b"a", unit(0))).unwrap().id
    };
    lib.exec(&format!("UPDATE images SET size = -5 WHERE id = {}", id.0));
    let store = lib.open(&model(), &OpenOptions::new()).unwrap();
    let got = store.get(id);
    assert!(
        matches!(
            got,
            Err(Error::BadHeader {
                key: "images.size",
                ..
            })
        ),
        "{got:?}"
    );
}

fn add_is_add_if_new_and_bad_input_changes_nothing(kind: Kind) {
    let lib = lib(kind, "add_if_new");
    let mut store = lib.open(&model(), &OpenOptions::new()).unwrap();
    let a = store.add(&image("/x/a.png", b"aaa", unit(0))).unwrap();
    assert_eq!(a.status, AddStatus::Added);
    // Same bytes, another path: stored once, path recorded.
    let a2 = store.add(&image("/y/copy.png", b"aaa", unit(5))).unwrap();
    assert_eq!((a2.id, a2.status), (a.id, AddStatus::Duplicate));
    assert_eq!(store.len().unwrap(), 1);
    assert_eq!(
        store.stored_vector(a.id).unwrap().unwrap(),
        unit(0),
        "the first vector stays"
    );
    assert_eq!(
        store.paths(a.id).unwrap(),
        vec![PathBuf::from("/x/a.png"), PathBuf::from("/y/copy.png")]
    );
    // Same path and bytes again: unchanged.
    let a3 = store.add(&image("/x/a.png", b"aaa", unit(0))).unwrap();
    assert_eq!((a3.id, a3.status), (a.id, AddStatus::Unchanged));

    // Wrong dimension, NaN: typed errors, nothing stored (one bad item fails the whole batch).
    let good = image("/x/b.png", b"bbb", unit(1));
    let short = image("/x/c.png", b"ccc", vec![1.0; DIM - 1]);
    let err = store.add_batch(&[good.clone(), short]).unwrap_err();
    assert!(
        matches!(&err, Error::VectorDim { expected: 8, found: 7, item } if item.contains("c.png")),
        "{err:?}"
    );
    let mut nan = unit(2);
    nan[3] = f32::NAN;
    let err = store.add(&image("/x/d.png", b"ddd", nan)).unwrap_err();
    assert!(
        matches!(err, Error::NonFiniteVector { index: 3, .. }),
        "{err:?}"
    );
    assert_eq!(store.len().unwrap(), 1);
    assert_eq!(store.find_path(Path::new("/x/b.png")).unwrap(), None);
    drop(store);
    let store = lib.open(&model(), &OpenOptions::new()).unwrap();
    assert_eq!(store.len().unwrap(), 1);
    assert!(store.integrity_check().unwrap().is_empty());

    // A path whose bytes change moves to the new content; the old image goes with its last path.
    let mut store = store;
    let b = store.add(&good).unwrap();
    let moved = store.add(&image("/x/b.png", b"BBB", unit(3))).unwrap();
    assert_eq!(
        (moved.status, moved.removed),
        (AddStatus::Added, Some(b.id))
    );
    assert!(store.get(b.id).unwrap().is_none());
    // The first path of `a` changes: `a` stays (its copy still holds the bytes), under the copy.
    let changed = store.add(&image("/x/a.png", b"zzz", unit(4))).unwrap();
    assert_eq!(changed.removed, None);
    assert_eq!(
        store.get(a.id).unwrap().unwrap().path,
        PathBuf::from("/y/copy.png")
    );
    assert_eq!(store.len().unwrap(), 3);
    assert!(store.integrity_check().unwrap().is_empty());
}

fn list_pages_in_insertion_order(kind: Kind) {
    let lib = lib(kind, "list_pages");
    let mut store = lib.open(&model(), &OpenOptions::new()).unwrap();
    let items: Vec<NewImage> = (0..25)
        .map(|i| {
            image(
                &format!("/p/{i:02}.png"),
                format!("img{i}").as_bytes(),
                unit(i),
            )
        })
        .collect();
    let ids: Vec<ImageId> = store
        .add_batch(&items)
        .unwrap()
        .iter()
        .map(|o| o.id)
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    assert!(store.remove(ids[3]).unwrap());
    assert!(!store.remove(ids[3]).unwrap());
    assert_eq!(store.len().unwrap(), 24);
    let mut seen = Vec::new();
    let mut offset = 0;
    loop {
        let page = store.list(offset, 10).unwrap();
        if page.is_empty() {
            break;
        }
        offset += page.len();
        seen.extend(page);
    }
    let expected: Vec<ImageId> = ids.iter().copied().filter(|&id| id != ids[3]).collect();
    assert_eq!(seen.iter().map(|r| r.id).collect::<Vec<_>>(), expected);
    assert_eq!(seen[0].path, PathBuf::from("/p/00.png"));
    assert_eq!(seen[0].hash, ContentHash::of(b"img0"));
    assert_eq!(
        store.get(ids[10]).unwrap().unwrap().path,
        PathBuf::from("/p/10.png")
    );
    assert_eq!(store.get(ids[3]).unwrap(), None);
    assert_eq!(store.list(100, 10).unwrap(), vec![]);
}

fn sync_is_incremental_dedupes_and_reports_bad_images(kind: Kind) {
    let lib = lib(kind, "sync_incremental");
    let dir = lib.dir();
    let photos = dir.join("photos");
    std::fs::create_dir_all(photos.join("sub/deeper")).unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let p = photos.join(name);
        std::fs::write(&p, bytes).unwrap();
        age(&p);
        p
    };
    write("a.jpg", b"alpha");
    write("sub/b.PNG", b"bravo");
    write("sub/deeper/c.webp", b"charlie");
    write("sub/copy-of-a.jpeg", b"alpha");
    write("notes.txt", b"not an image");
    write("broken.jpg", b"BAD bytes");
    write("short.png", b"SHORT vector");
    write("nan.png", b"NAN vector");
    let mut store = lib.open(&model(), &OpenOptions::new()).unwrap();
    let mut embedder = Picky::new();
    let options = SyncOptions::new().batch_size(2);

    let r = store.sync(&photos, &mut embedder, &options).unwrap();
    assert_eq!(r.scanned, 7, "notes.txt is not an image extension");
    assert_eq!((r.added, r.duplicates, r.embedded), (3, 1, 6));
    let mut failed: Vec<String> = r
        .failed
        .iter()
        .map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    failed.sort();
    assert_eq!(failed, ["broken.jpg", "nan.png", "short.png"]);
    assert!(r.failed.iter().any(|f| f.reason.contains("cannot decode")));
    assert_eq!(store.len().unwrap(), 3);
    assert_eq!(r.batches, 4);

    // Nothing changed: only the three failed files are read again (and fail again).
    embedder.embedded.clear();
    let r = store.sync(&photos, &mut embedder, &options).unwrap();
    assert_eq!((r.skipped, r.read, r.embedded, r.added), (4, 3, 3, 0));
    assert_eq!(r.failed.len(), 3);

    // A rewritten file is re-embedded; a touched one is re-hashed but not re-embedded; a removed
    // one is forgotten with `remove_missing`.
    std::fs::remove_file(photos.join("broken.jpg")).unwrap();
    std::fs::remove_file(photos.join("short.png")).unwrap();
    std::fs::remove_file(photos.join("nan.png")).unwrap();
    let old_c = store
        .find_path(&photos.canonicalize().unwrap().join("sub/deeper/c.webp"))
        .unwrap()
        .unwrap();
    write("sub/deeper/c.webp", b"charlie, edited");
    let b = photos.join("sub/b.PNG");
    std::fs::File::options()
        .write(true)
        .open(&b)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(60))
        .unwrap();
    std::fs::remove_file(photos.join("a.jpg")).unwrap();
    embedder.embedded.clear();
    let r = store
        .sync(
            &photos,
            &mut embedder,
            &options.clone().remove_missing(true),
        )
        .unwrap();
    assert_eq!((r.read, r.embedded, r.added, r.unchanged), (2, 1, 1, 1));
    assert_eq!(embedder.embedded.len(), 1);
    assert!(embedder.embedded[0].ends_with("sub/deeper/c.webp"));
    assert_eq!(
        (r.removed_paths, r.removed_images),
        (1, 1),
        "a.jpg's copy keeps the image"
    );
    assert!(store.get(old_c).unwrap().is_none());
    assert_eq!(store.len().unwrap(), 3);
    let alpha = store
        .find_hash(&ContentHash::of(b"alpha"))
        .unwrap()
        .unwrap();
    assert!(
        store
            .get(alpha)
            .unwrap()
            .unwrap()
            .path
            .ends_with("sub/copy-of-a.jpeg")
    );
    assert!(store.integrity_check().unwrap().is_empty());

    // The wrong embedder is refused before anything is read.
    let mut other = HashEmbedder::new("another/model", DIM);
    assert!(matches!(
        store.sync(&photos, &mut other, &options),
        Err(Error::EmbedderMismatch { .. })
    ));
    assert!(matches!(
        store.sync(photos.join("sub/b.PNG"), &mut embedder, &options),
        Err(Error::NotAFolder { .. })
    ));
}

fn add_file_skips_known_files_and_embeds_new_bytes_once(kind: Kind) {
    let lib = lib(kind, "add_file");
    let dir = lib.dir();
    let mut store = lib.open(&model(), &OpenOptions::new()).unwrap();
    let mut embedder = Picky::new();
    let a = dir.join("a.png");
    std::fs::write(&a, b"upload").unwrap();
    age(&a);
    let first = store.add_file(&a, &mut embedder).unwrap();
    assert_eq!(first.status, AddStatus::Added);
    let again = store.add_file(&a, &mut embedder).unwrap();
    assert_eq!((again.id, again.status), (first.id, AddStatus::Unchanged));
    let copy = dir.join("copy.png");
    std::fs::write(&copy, b"upload").unwrap();
    let dup = store.add_file(&copy, &mut embedder).unwrap();
    assert_eq!((dup.id, dup.status), (first.id, AddStatus::Duplicate));
    assert_eq!(embedder.embedded.len(), 1);
    let bad = dir.join("bad.png");
    std::fs::write(&bad, b"BAD").unwrap();
    assert!(matches!(
        store.add_file(&bad, &mut embedder),
        Err(Error::Embed { .. })
    ));
    assert_eq!(store.len().unwrap(), 1);
}

fn progress_reports_each_committed_batch(kind: Kind) {
    let lib = lib(kind, "progress");
    let photos = lib.dir().join("photos");
    std::fs::create_dir(&photos).unwrap();
    for i in 0..7 {
        std::fs::write(photos.join(format!("{i}.jpg")), format!("image {i}")).unwrap();
    }
    let mut store = lib.open(&model(), &OpenOptions::new()).unwrap();
    let mut events = Vec::new();
    let mut sink =
        |p: &feature_store::SyncProgress<'_>| events.push((p.done, p.total, p.committed.len()));
    let options = SyncOptions::new().batch_size(3);
    store
        .sync_with_progress(
            &photos,
            &mut HashEmbedder::new(MODEL, DIM),
            &options,
            &mut sink,
        )
        .unwrap();
    assert_eq!(events, [(0, 7, 0), (3, 7, 3), (6, 7, 3), (7, 7, 1)]);
    // The terminal bar works (and stays hidden) without a terminal.
    #[cfg(feature = "progress-bar")]
    {
        let mut bar = feature_store::TerminalProgress::new();
        let r = store
            .sync_with_progress(
                &photos,
                &mut HashEmbedder::new(MODEL, DIM),
                &options,
                &mut bar,
            )
            .unwrap();
        assert_eq!(r.added, 0);
    }
}

#[test]
fn store_is_shareable_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<FeatureStore>();
    assert_send_sync::<Library>();
}

fn f16_store_refuses_values_it_cannot_hold(kind: Kind) {
    let lib = lib(kind, "f16_range");
    let options = OpenOptions::new().precision(feature_store::Precision::F16);
    let mut store = lib.open(&model(), &options).unwrap();
    let mut v = unit(0);
    v[2] = 1e6;
    let err = store.add(&image("/big.png", b"big", v)).unwrap_err();
    assert!(matches!(err, Error::OutOfRange { index: 2, .. }), "{err:?}");
    assert_eq!(store.len().unwrap(), 0);
    assert!(
        store.list(0, 10).unwrap().is_empty(),
        "nothing reached the file"
    );
}

fn remove_missing_forgets_only_files_that_are_gone(kind: Kind) {
    let lib = lib(kind, "remove_missing");
    let photos = lib.dir().join("photos");
    std::fs::create_dir(&photos).unwrap();
    std::fs::write(photos.join("a.jpg"), b"a").unwrap();
    std::fs::write(photos.join("b.bin"), b"b").unwrap();
    let mut store = lib.open(&model(), &OpenOptions::new()).unwrap();
    let mut embedder = HashEmbedder::new(MODEL, DIM);
    let all = SyncOptions::new().extensions(None);
    assert_eq!(store.sync(&photos, &mut embedder, &all).unwrap().added, 2);
    // b.bin is filtered out by the default extensions but still exists: kept.
    let images_only = SyncOptions::new().remove_missing(true);
    let r = store.sync(&photos, &mut embedder, &images_only).unwrap();
    assert_eq!((r.removed_paths, store.len().unwrap()), (0, 2));
    std::fs::remove_file(photos.join("b.bin")).unwrap();
    let r = store.sync(&photos, &mut embedder, &images_only).unwrap();
    assert_eq!(
        (r.removed_paths, r.removed_images, store.len().unwrap()),
        (1, 1, 1)
    );
}

fn refresh_picks_up_changes_committed_by_another_handle(kind: Kind) {
    let lib = lib(kind, "refresh");
    let mut writer = lib.open(&model(), &OpenOptions::new()).unwrap();
    let mut reader = lib.open(&model(), &OpenOptions::new()).unwrap();
    let a = writer.add(&image("/a.png", b"a", unit(0))).unwrap().id;
    let b = writer.add(&image("/b.png", b"b", unit(1))).unwrap().id;
    match kind {
        // SQLite searches its in-memory copy: new rows show after `refresh`.
        Kind::Sqlite => {
            assert_eq!(reader.len().unwrap(), 0);
            assert_eq!(reader.refresh().unwrap(), (2, 0));
        }
        // PostgreSQL searches in the server: always current.
        Kind::Postgres => {
            assert_eq!(reader.len().unwrap(), 2);
            assert_eq!(reader.refresh().unwrap(), (0, 0));
        }
    }
    assert_eq!(reader.search(&unit(1), 1).unwrap()[0].id, b);
    writer.remove(a).unwrap();
    if kind == Kind::Sqlite {
        assert_eq!(reader.refresh().unwrap(), (0, 1));
    }
    assert_eq!(reader.len().unwrap(), 1);
    assert_eq!(reader.refresh().unwrap(), (0, 0));
    assert!(reader.integrity_check().unwrap().is_empty());
}

/// Opened read-only, a library answers searches and refuses every change with
/// [`Error::ReadOnly`] naming it; nothing it holds changes, and read-only never creates one.
fn read_only_searches_and_refuses_every_write(kind: Kind) {
    let lib = lib(kind, "read_only");
    {
        let mut store = lib.open(&model(), &OpenOptions::new()).unwrap();
        for (i, name) in ["/a.png", "/b.png", "/c.png"].into_iter().enumerate() {
            store.add(&image(name, name.as_bytes(), unit(i))).unwrap();
        }
    }
    let photos = lib.dir().join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    std::fs::write(photos.join("new.png"), b"a new picture").unwrap();

    let read_only = OpenOptions::new().read_only(true);
    let mut store = lib.open(&model(), &read_only).unwrap();
    assert!(store.is_read_only());
    assert_eq!(store.len().unwrap(), 3);
    let hit = store.search(&unit(1), 1).unwrap().remove(0);
    assert_eq!(hit.path, Path::new("/b.png"));
    assert_eq!(store.similar(hit.id, 5).unwrap().len(), 2);
    let refused = |r: Result<(), Error>, what: &str| match r {
        Err(Error::ReadOnly { file }) => assert_eq!(file, lib.shown(), "{what}"),
        other => panic!("{what}: expected a read-only error, got {other:?}"),
    };
    refused(store.add(&image("/d.png", b"d", unit(3))).map(drop), "add");
    refused(store.remove(hit.id).map(drop), "remove");
    refused(
        store.remove_path(Path::new("/a.png")).map(drop),
        "remove_path",
    );
    let mut embedder = HashEmbedder::new(MODEL, DIM);
    refused(
        store
            .sync(&photos, &mut embedder, &SyncOptions::new())
            .map(drop),
        "sync",
    );
    drop(store);
    let store = lib.open(&model(), &OpenOptions::new()).unwrap();
    assert_eq!(store.len().unwrap(), 3, "nothing changed");
    drop(store);

    // A location holding no library stays empty.
    let empty = self::lib(kind, "read_only_empty");
    assert!(matches!(
        empty.open(&model(), &read_only),
        Err(Error::Missing { .. })
    ));
    assert!(!empty.exists(), "read-only created a library");
}
