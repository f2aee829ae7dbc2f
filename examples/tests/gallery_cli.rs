//! The `gallery` command line with the tiny random CLIP: reading commands never create or change
//! a file, work on a library they cannot write, refuse special files and absurd numbers as
//! argument errors, and `index` reports failed files with a failing exit.
//!
//! Commands run in process through `gallery::cli`; where the process's user matters (a library
//! it may not write) they run in a child process, as user `nobody` when the tests run as root
//! (for whom file modes deny nothing).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use clip_examples::gallery::cli::{self, Cli};
use clip_examples::gallery::server::{MAX_QUERY_CHARS, Settings, query_text, router};
use common::{HashModel, demo_photos, demo_state, tiny_clip_file};

/// The environment variable carrying a child's arguments (JSON array).
const CHILD_ARGS: &str = "GALLERY_CLI_ARGS";

/// Runs the command line in process.
fn run(args: &[&str]) -> anyhow::Result<()> {
    let mut all = vec!["gallery"];
    all.extend_from_slice(args);
    cli::run(Cli::try_parse_from(all)?)
}

/// A folder (readable by every user) holding the tiny model; returns it and the model path.
fn tiny_model() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    open_to_all(dir.path());
    let path = tiny_clip_file(dir.path());
    open_to_all(&path);
    (dir, path.to_str().unwrap().to_owned())
}

/// Lets every user read `path` (and enter it, for a folder), whatever the umask.
#[cfg(unix)]
fn open_to_all(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = if path.is_dir() { 0o755 } else { 0o644 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[cfg(not(unix))]
fn open_to_all(_dir: &Path) {}

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

/// The demo photos indexed with the tiny model into `dir/lib.sqlite`.
fn indexed_library(dir: &Path, model: &str) -> PathBuf {
    let photos = dir.join("photos");
    std::fs::create_dir(&photos).unwrap();
    for p in demo_photos() {
        std::fs::copy(&p, photos.join(p.file_name().unwrap())).unwrap();
    }
    let db = dir.join("lib.sqlite");
    run(&[
        "index",
        photos.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
        "--model",
        model,
    ])
    .unwrap();
    db
}

#[test]
fn reading_commands_refuse_files_that_are_not_libraries_untouched() {
    let (_m, model) = tiny_model();
    let dir = tempfile::tempdir().unwrap();
    let photo = demo_photos()[0].clone();
    let foreign = dir.path().join("other-app.sqlite");
    {
        let conn = rusqlite::Connection::open(&foreign).unwrap();
        conn.execute_batch("CREATE TABLE notes (text TEXT); INSERT INTO notes VALUES ('mine');")
            .unwrap();
    }
    std::fs::write(dir.path().join("empty.sqlite"), b"").unwrap();
    std::fs::write(dir.path().join("noise.sqlite"), [0x5a_u8; 3000]).unwrap();
    let before = snapshot(dir.path());
    for name in ["other-app.sqlite", "empty.sqlite", "noise.sqlite"] {
        let db = dir.path().join(name);
        let db = db.to_str().unwrap();
        for args in [
            vec!["search", "a cat", "--db", db, "--model", &model],
            vec![
                "similar",
                photo.to_str().unwrap(),
                "--db",
                db,
                "--model",
                &model,
            ],
            // Writing commands create only a missing library, never one in another's file.
            vec![
                "index",
                photo.parent().unwrap().to_str().unwrap(),
                "--db",
                db,
                "--model",
                &model,
            ],
        ] {
            let e = run(&args).unwrap_err();
            let text = format!("{e:#}");
            assert!(
                text.contains(db) && text.contains("not a feature library"),
                "{args:?}: {text}"
            );
            assert_eq!(snapshot(dir.path()), before, "{args:?} changed the folder");
        }
    }
}

/// The body of the child processes of these tests: runs the command line on the arguments in
/// `GALLERY_CLI_ARGS` and exits with its status (1 and the error on standard error).
#[test]
#[ignore = "the child process of the command line tests, started by them"]
fn cli_child_process() {
    let args: Vec<String> = serde_json::from_str(
        &std::env::var(CHILD_ARGS).expect("started by the command line tests only"),
    )
    .unwrap();
    let code = match Cli::try_parse_from(std::iter::once("gallery".to_owned()).chain(args)) {
        Ok(c) => match cli::run(c) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("error: {e:#}");
                1
            }
        },
        Err(e) => {
            eprintln!("{e}");
            2
        }
    };
    std::io::stdout().flush().unwrap();
    std::process::exit(code);
}

/// The command line in a child process, as user `nobody` when this runs as root.
fn child(args: &[&str]) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--ignored", "--exact", "cli_child_process", "--nocapture"])
        .env(CHILD_ARGS, serde_json::to_string(args).unwrap());
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            cmd.uid(65534).gid(65534);
        }
    }
    cmd
}

/// Makes a file and its folder read-only for the test's duration.
#[cfg(unix)]
struct ReadOnly(Vec<(PathBuf, u32)>);

#[cfg(unix)]
impl ReadOnly {
    fn new(paths: &[(&Path, u32)]) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let mut old = Vec::new();
        for (p, mode) in paths {
            let was = std::fs::metadata(p).unwrap().permissions().mode();
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(*mode)).unwrap();
            old.push((p.to_path_buf(), was));
        }
        Self(old)
    }
}

#[cfg(unix)]
impl Drop for ReadOnly {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        for (p, mode) in self.0.iter().rev() {
            let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(*mode));
        }
    }
}

/// Ends a child process when the test ends, however it ends.
struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 request over a fresh connection; returns the status and the body.
fn http(addr: &str, request: &str, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[cfg(unix)]
#[test]
fn a_library_that_cannot_be_written_is_searched_and_served() {
    let (_m, model) = tiny_model();
    let dir = tempfile::tempdir().unwrap();
    open_to_all(dir.path());
    let lib_dir = dir.path().join("library");
    std::fs::create_dir(&lib_dir).unwrap();
    let db = indexed_library(&lib_dir, &model);
    let db_text = db.to_str().unwrap();
    let before = snapshot(&lib_dir);
    let _ro = ReadOnly::new(&[(&db, 0o444), (&lib_dir, 0o555)]);

    let out = child(&[
        "search", "a photo", "--db", db_text, "-k", "2", "--model", &model,
    ])
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "search failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hits: Vec<&str> = stdout.lines().filter(|l| l.contains("photos/")).collect();
    assert_eq!(hits.len(), 2, "{stdout}");

    let photo = demo_photos()[1].clone();
    let out = child(&[
        "similar",
        photo.to_str().unwrap(),
        "--db",
        db_text,
        "--model",
        &model,
    ])
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "similar failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        snapshot(&lib_dir),
        before,
        "reading changed the library folder"
    );

    // The server: serves the library read-only and says so; new pictures are refused.
    let mut server = Kill(
        child(&[
            "serve",
            "--db",
            db_text,
            "--addr",
            "127.0.0.1:0",
            "--model",
            &model,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap(),
    );
    let mut lines = BufReader::new(server.0.stdout.take().unwrap()).lines();
    let started = Instant::now();
    let addr = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(rest) = line.strip_prefix("serving on http://") {
                    break rest.split_whitespace().next().unwrap().to_owned();
                }
            }
            _ => {
                let mut err = String::new();
                let _ = server.0.stderr.take().unwrap().read_to_string(&mut err);
                panic!("the server did not start: {err}");
            }
        }
        assert!(started.elapsed() < Duration::from_secs(120), "no address");
    };
    let (status, body) = http(
        &addr,
        &format!(
            "GET /api/search?q=a%20photo&k=3 HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        ),
        b"",
    );
    assert_eq!(status, 200, "{body}");
    let hits: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(hits["results"].as_array().unwrap().len(), 3, "{body}");
    let picture = {
        let mut b = std::fs::read(&photo).unwrap();
        b.extend_from_slice(b"new bytes");
        b
    };
    let (status, body) = http(
        &addr,
        &format!(
            "POST /api/classify HTTP/1.1\r\nHost: {addr}\r\nContent-Type: image/png\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            picture.len()
        ),
        &picture,
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("read-only"), "{body}");
    drop(server);
    assert_eq!(
        snapshot(&lib_dir),
        before,
        "serving changed the library folder"
    );
}

#[test]
fn index_fails_when_files_fail_and_says_how_many() {
    let (_m, model) = tiny_model();
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    std::fs::create_dir(&photos).unwrap();
    for p in &demo_photos()[..2] {
        std::fs::copy(p, photos.join(p.file_name().unwrap())).unwrap();
    }
    std::fs::write(photos.join("broken.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let db = dir.path().join("lib.sqlite");
    let e = run(&[
        "index",
        photos.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
        "--model",
        &model,
    ])
    .unwrap_err();
    let text = format!("{e:#}");
    assert!(text.contains("1 of 3 files could not be added"), "{text}");
    // The good ones were added all the same; a second run fails the same way.
    let lib = clip_examples::gallery::library::Library::open_existing(
        &db,
        clip::Clip::load(&model).unwrap().model_id(),
        32,
    )
    .unwrap();
    assert_eq!(lib.len(), 2);
    drop(lib);
    std::fs::remove_file(photos.join("broken.png")).unwrap();
    run(&[
        "index",
        photos.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
        "--model",
        &model,
    ])
    .unwrap();
}

#[tokio::test]
async fn an_empty_query_is_refused_alike_on_the_command_line_and_by_the_server() {
    let expected = query_text("   ", MAX_QUERY_CHARS).unwrap_err();
    assert!(expected.contains("empty"), "{expected}");
    for text in ["", "   ", "\t\n"] {
        let e = Cli::try_parse_from(["gallery", "search", text, "--db", "x.sqlite"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(e.to_string().contains(&expected), "{e}");
    }
    let (_d, st) = demo_state(
        std::sync::Arc::new(HashModel::new(16)),
        Settings::default(),
        8,
    );
    let app = router(st);
    for q in ["", "%20%20%20", "%09%0A"] {
        let uri = format!("/api/search?q={q}");
        let resp = tower::ServiceExt::oneshot(
            app.clone(),
            axum::http::Request::get(&uri)
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(resp.status(), 400, "{uri}");
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"], expected.as_str(), "{uri}");
    }
}

#[test]
fn absurd_numbers_are_argument_errors() {
    for args in [
        &["gallery", "search", "a cat", "--db", "x", "-k", "0"][..],
        &[
            "gallery",
            "search",
            "a cat",
            "--db",
            "x",
            "-k",
            "100000000000",
        ],
        &["gallery", "similar", "a.png", "--db", "x", "-k", "0"],
        &[
            "gallery",
            "serve",
            "--db",
            "x",
            "--queue",
            "18446744073709551615",
        ],
        &["gallery", "serve", "--db", "x", "--queue", "100000000"],
        &["gallery", "serve", "--db", "x", "--queue", "0"],
    ] {
        let e = Cli::try_parse_from(args).unwrap_err();
        assert_eq!(
            e.kind(),
            clap::error::ErrorKind::ValueValidation,
            "{args:?}: {e}"
        );
    }
    let ok = Cli::try_parse_from(["gallery", "serve", "--db", "x", "--queue", "4096"]);
    assert!(ok.is_ok());
}

#[cfg(unix)]
#[test]
fn a_fifo_given_as_the_picture_is_refused_at_once() {
    let (_m, model) = tiny_model();
    let dir = tempfile::tempdir().unwrap();
    let db = indexed_library(dir.path(), &model);
    let fifo = dir.path().join("photo.png");
    dev_support::mkfifo(&fifo);
    let (tx, rx) = std::sync::mpsc::channel();
    let args = [
        "similar".to_owned(),
        fifo.to_str().unwrap().to_owned(),
        "--db".into(),
        db.to_str().unwrap().to_owned(),
        "--model".into(),
        model.clone(),
    ];
    std::thread::spawn(move || {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let _ = tx.send(run(&refs).map_err(|e| format!("{e:#}")));
    });
    let e = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("`gallery similar FIFO` hung")
        .unwrap_err();
    assert!(
        e.contains(fifo.to_str().unwrap()) && e.contains("not a regular file"),
        "{e}"
    );
}
