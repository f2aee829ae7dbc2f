//! Special files in place of regular ones: refused at once, never read; atomic writes leave no
//! temporary file behind when they fail.

use std::path::Path;

use dev_support::{mkfifo, within_10s};
use safe_file::Error;

#[cfg(unix)]
#[test]
fn a_fifo_is_refused_without_waiting_for_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("photo.jpg");
    mkfifo(&fifo);
    let f = fifo.clone();
    let e = within_10s("reading a FIFO", move || safe_file::read(&f, 1 << 20)).unwrap_err();
    assert!(
        matches!(&e, Error::NotRegular { kind: "a FIFO", path } if path == &fifo),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        format!("{}: a FIFO, not a regular file", fifo.display())
    );
    // Through a symbolic link too (links are followed, the target is checked).
    let link = dir.path().join("link.jpg");
    std::os::unix::fs::symlink(&fifo, &link).unwrap();
    let e = within_10s("opening a link to a FIFO", move || {
        safe_file::open(&link, 1 << 20).map(|_| ())
    })
    .unwrap_err();
    assert!(
        matches!(e, Error::NotRegular { kind: "a FIFO", .. }),
        "{e:?}"
    );
}

#[cfg(unix)]
#[test]
fn dev_zero_is_refused_not_read_forever() {
    let e = within_10s("reading /dev/zero", || {
        safe_file::read("/dev/zero", 1 << 20)
    })
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::NotRegular {
                kind: "a character device",
                ..
            }
        ),
        "{e:?}"
    );
    let e = within_10s("reading /dev/zero as text", || {
        safe_file::read_to_string("/dev/zero", u64::MAX)
    })
    .unwrap_err();
    assert!(matches!(e, Error::NotRegular { .. }), "{e:?}");
}

#[test]
fn folders_missing_files_and_oversize_files_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let e = safe_file::read(dir.path(), 10).unwrap_err();
    assert!(
        matches!(
            e,
            Error::NotRegular {
                kind: "a folder",
                ..
            }
        ),
        "{e:?}"
    );

    let missing = dir.path().join("missing.png");
    let e = safe_file::read(&missing, 10).unwrap_err();
    assert_eq!(e.io_kind(), Some(std::io::ErrorKind::NotFound));
    assert_eq!(e.path(), missing);
    // The cause appears once: in the message, not again as a source.
    let text = e.to_string();
    assert!(text.starts_with(&missing.display().to_string()), "{text}");
    #[cfg(unix)]
    assert_eq!(text.matches("(os error 2)").count(), 1, "{text}");
    assert!(std::error::Error::source(&e).is_none());

    let big = dir.path().join("big.bin");
    std::fs::write(&big, vec![7u8; 1000]).unwrap();
    let e = safe_file::read(&big, 999).unwrap_err();
    assert!(
        matches!(
            e,
            Error::TooLarge {
                size: 1000,
                limit: 999,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(safe_file::read(&big, 1000).unwrap().len(), 1000);

    std::fs::write(&big, b"\xff\xfe not text").unwrap();
    assert!(matches!(
        safe_file::read_to_string(&big, 100),
        Err(Error::NotUtf8 { .. })
    ));
}

/// Names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn atomic_write_replaces_and_a_failed_one_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("cache.bin");
    safe_file::write_atomic(&target, b"old").unwrap();
    safe_file::write_atomic(&target, b"new bytes").unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), b"new bytes");
    assert_eq!(listing(dir.path()), ["cache.bin"]);

    // The rename fails (the target is a folder that is not empty, which root cannot override
    // either): an error naming the target, and the temporary file is gone.
    let blocked = dir.path().join("blocked");
    std::fs::create_dir(&blocked).unwrap();
    std::fs::write(blocked.join("inside"), b"x").unwrap();
    let e = safe_file::write_atomic(&blocked, b"bytes").unwrap_err();
    assert_eq!(e.path(), blocked);
    assert_eq!(listing(dir.path()), ["blocked", "cache.bin"]);
    assert_eq!(listing(&blocked), ["inside"]);

    // The folder cannot be written at all: nothing is created.
    let e = safe_file::write_atomic(dir.path().join("no/such/dir/file"), b"x").unwrap_err();
    assert_eq!(e.io_kind(), Some(std::io::ErrorKind::NotFound));
    assert_eq!(listing(dir.path()), ["blocked", "cache.bin"]);
}
