//! Opening never changes what it opens: files that are not libraries are refused untouched, a
//! library opened read-only is only read (and can be searched where it cannot be written), and a
//! reader notices what other handles commit.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use feature_store::{
    ContentHash, Error, FeatureStore, ImageId, Library, ModelInfo, NewImage, OpenOptions, Store,
};

const DIM: usize = 4;

fn model() -> ModelInfo {
    ModelInfo::new("test/untouched", DIM)
}

fn image(path: &str, bytes: &[u8], axis: usize) -> NewImage {
    let mut vector = vec![0.0; DIM];
    vector[axis] = 1.0;
    NewImage {
        path: PathBuf::from(path),
        hash: ContentHash::of(bytes),
        size: bytes.len() as u64,
        mtime_ns: 0,
        vector,
    }
}

/// Every file in `dir` with its bytes, sorted by name.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let bytes = if e.file_type().unwrap().is_file() {
                std::fs::read(e.path()).unwrap()
            } else {
                Vec::new()
            };
            (e.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    v.sort();
    v
}

/// Another program's SQLite database (rollback journal, its own table).
fn foreign_database(path: &Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT);
         INSERT INTO notes (text) VALUES ('do not touch');",
    )
    .unwrap();
}

/// Every way of opening a location, read-write (creating) and read-only.
fn open_all_ways(file: &Path) -> Vec<(&'static str, Error)> {
    let mut errors = Vec::new();
    let mut push = |how, r: feature_store::Result<()>| match r {
        Ok(()) => panic!("{how} opened {} as a library", file.display()),
        Err(e) => errors.push((how, e)),
    };
    push(
        "FeatureStore::open (create)",
        FeatureStore::open(file, &model(), &OpenOptions::new()).map(drop),
    );
    push(
        "FeatureStore::open_existing",
        FeatureStore::open_existing(file, &OpenOptions::new()).map(drop),
    );
    push(
        "FeatureStore::open (read-only)",
        FeatureStore::open(file, &model(), &OpenOptions::new().read_only(true)).map(drop),
    );
    push(
        "Library::open (create)",
        Library::open(file, &model(), &OpenOptions::new()).map(drop),
    );
    push("Library::read_header", Library::read_header(file).map(drop));
    errors
}

#[test]
fn files_that_are_not_libraries_are_refused_untouched() {
    // (file name, expected reason, how to make the file)
    type Case = (&'static str, &'static str, fn(&Path));
    let cases: [Case; 3] = [
        (
            "other-app.sqlite",
            "a SQLite database without",
            foreign_database,
        ),
        ("empty.sqlite", "an empty file", |p| {
            std::fs::write(p, b"").unwrap()
        }),
        ("noise.sqlite", "not a SQLite database", |p| {
            std::fs::write(
                p,
                (0..4096u32)
                    .map(|i| (i * 7919 % 251) as u8)
                    .collect::<Vec<_>>(),
            )
            .unwrap()
        }),
    ];
    for (name, reason, make) in cases {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(name);
        make(&file);
        let before = snapshot(dir.path());
        for (how, e) in open_all_ways(&file) {
            match &e {
                Error::NotALibrary { file: f, reason: r } => {
                    assert_eq!(f, &file, "{how}");
                    assert!(r.starts_with(reason), "{how}: {r}");
                }
                other => panic!("{how} on {name}: expected NotALibrary, got {other:?}"),
            }
            let text = e.to_string();
            assert!(
                text.contains(&file.display().to_string())
                    && text.contains("not a feature library"),
                "{text}"
            );
            // Byte for byte, and no journal, -wal or -shm file beside it.
            assert_eq!(snapshot(dir.path()), before, "{how} changed {name}");
        }
    }
}

#[cfg(unix)]
#[test]
fn a_fifo_or_device_as_library_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("lib.sqlite");
    dev_support::mkfifo(&fifo);
    for file in [fifo, PathBuf::from("/dev/zero")] {
        let f = file.clone();
        let errors = dev_support::within_10s(&format!("opening {}", file.display()), move || {
            open_all_ways(&f)
        });
        for (how, e) in errors {
            assert!(
                matches!(&e, Error::File(safe_file::Error::NotRegular { path, .. }) if *path == file),
                "{how}: {e:?}"
            );
        }
    }
}

/// A library of three images in `dir/lib.sqlite`, closed.
fn library(dir: &Path) -> PathBuf {
    let file = dir.join("lib.sqlite");
    let mut store = FeatureStore::open(&file, &model(), &OpenOptions::new()).unwrap();
    store
        .add_batch(&[
            image("/p/a.png", b"a", 0),
            image("/p/b.png", b"b", 1),
            image("/p/c.png", b"c", 2),
        ])
        .unwrap();
    file
}

/// Makes `path` read-only (file 0444, folder 0555); returns a guard that restores 0755 / 0644.
struct ReadOnlyPerms(Vec<(PathBuf, u32)>);

impl ReadOnlyPerms {
    #[cfg(unix)]
    fn set(paths: &[(&Path, u32)]) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let mut restore = Vec::new();
        for (p, mode) in paths {
            let old = std::fs::metadata(p).unwrap().permissions().mode();
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(*mode)).unwrap();
            restore.push((p.to_path_buf(), old));
        }
        Self(restore)
    }
}

impl Drop for ReadOnlyPerms {
    fn drop(&mut self) {
        #[cfg(unix)]
        for (p, mode) in self.0.iter().rev() {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(*mode));
        }
    }
}

#[cfg(unix)]
#[test]
fn a_library_opened_read_only_is_searched_and_never_changed() {
    let dir = tempfile::tempdir().unwrap();
    let file = library(dir.path());
    let before = snapshot(dir.path());
    // A read-only file in a read-only folder. (Run as root, the modes do not deny anything; the
    // store's own read-only opening is then what is checked: nothing written, writes refused.)
    let _perms = ReadOnlyPerms::set(&[(&file, 0o444), (dir.path(), 0o555)]);
    let mut store =
        FeatureStore::open(&file, &model(), &OpenOptions::new().read_only(true)).unwrap();
    assert!(store.is_read_only());
    assert_eq!(store.len(), 3);
    let hits = store.search(&[0.0, 1.0, 0.0, 0.0], 2).unwrap();
    assert_eq!(hits[0].path, Path::new("/p/b.png"));
    assert_eq!(store.similar(hits[0].id, 5).unwrap().len(), 2);
    assert!(matches!(
        store.add(&image("/p/d.png", b"d", 3)),
        Err(Error::ReadOnly { .. })
    ));
    assert!(matches!(
        store.remove(ImageId(1)),
        Err(Error::ReadOnly { .. })
    ));
    assert!(matches!(
        store.remove_path(Path::new("/p/a.png")),
        Err(Error::ReadOnly { .. })
    ));
    assert_eq!(store.refresh().unwrap(), (0, 0));
    drop(store);
    let lib = Library::open_existing(&file, &OpenOptions::new().read_only(true)).unwrap();
    assert!(lib.is_read_only());
    assert_eq!(lib.len().unwrap(), 3);
    drop(lib);
    assert_eq!(snapshot(dir.path()), before, "reading changed the folder");
    // Read-only never creates: a missing library is an error, not a new file.
    assert!(matches!(
        FeatureStore::open(
            dir.path().join("new.sqlite"),
            &model(),
            &OpenOptions::new().read_only(true)
        ),
        Err(Error::Missing { .. })
    ));
}

/// A reader must not wait for writers: the old opening took the write lock and, while an indexer
/// held it, waited 10 s and failed with "database is locked".
#[test]
fn reading_does_not_wait_for_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let file = library(dir.path());
    let writer = rusqlite::Connection::open(&file).unwrap();
    writer.execute_batch("BEGIN IMMEDIATE").unwrap();
    let t = Instant::now();
    let store = FeatureStore::open(&file, &model(), &OpenOptions::new().read_only(true)).unwrap();
    assert_eq!(store.len(), 3);
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    writer.execute_batch("ROLLBACK").unwrap();
}

/// What a server asks before each read: has anyone else committed?
#[test]
fn readers_notice_commits_of_other_handles() {
    for read_only in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let file = library(dir.path());
        let options = OpenOptions::new().read_only(read_only);
        let mut reader = FeatureStore::open(&file, &model(), &options).unwrap();
        assert!(!reader.changed().unwrap(), "read_only {read_only}");
        {
            let mut writer = FeatureStore::open(&file, &model(), &OpenOptions::new()).unwrap();
            writer.add(&image("/p/d.png", b"d", 3)).unwrap();
            assert!(reader.changed().unwrap(), "read_only {read_only}");
            assert_eq!(reader.refresh_if_changed().unwrap(), Some((1, 0)));
            assert!(!reader.changed().unwrap(), "read_only {read_only}");
            assert_eq!(reader.len(), 4);
            let hit = &reader.search(&[0.0, 0.0, 0.0, 1.0], 1).unwrap()[0];
            assert_eq!(hit.path, Path::new("/p/d.png"));
            writer.remove_path(Path::new("/p/a.png")).unwrap();
            assert!(reader.changed().unwrap(), "read_only {read_only}");
            assert_eq!(reader.refresh_if_changed().unwrap(), Some((0, 1)));
        }
        // The writer closed (its log is checkpointed and removed): still current, still quiet.
        assert_eq!(reader.refresh_if_changed().unwrap(), None);
        assert_eq!(reader.len(), 3);
        // The reader's own writes are mirrored at once and are no change to load.
        if !read_only {
            reader.add(&image("/p/e.png", b"e", 0)).unwrap();
            assert!(!reader.changed().unwrap());
        }
    }
}

/// `gallery index MISSING` printed "No such file or directory (os error 2): No such file or
/// directory (os error 2)": the cause was in the message and again as the source.
#[test]
fn errors_show_their_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut store =
        FeatureStore::open(dir.path().join("lib.sqlite"), &model(), &OpenOptions::new()).unwrap();
    let mut embedder = feature_store::HashEmbedder::new("test/untouched", DIM);
    let e = store
        .sync(
            dir.path().join("missing"),
            &mut embedder,
            &feature_store::SyncOptions::new(),
        )
        .unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e:?}");
    dev_support::assert_cause_once(&e);
    #[cfg(unix)]
    assert_eq!(
        dev_support::error_chain(&e).matches("(os error 2)").count(),
        1,
        "{}",
        dev_support::error_chain(&e)
    );
    // A SQLite failure too: the library file's folder is gone.
    let e = Library::open(
        dir.path().join("no/such/lib.sqlite"),
        &model(),
        &OpenOptions::new(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::Sqlite { .. }), "{e:?}");
    dev_support::assert_cause_once(&e);
}
