//! The download path against a local server that speaks the hub's file-resolve protocol
//! (`HEAD`/`GET /{repo}/resolve/{revision}/{file}` with `X-Repo-Commit`, `X-Linked-Etag`,
//! `X-Linked-Size`, a redirect of LFS files to a content URL, range requests), serving the
//! committed tiny model. No test touches the real hub.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clip::{Clip, Error, Hub};
use sha2::Digest;

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const REPO: &str = "org/tiny-clip";

/// What the server does wrong, once.
#[derive(Clone, Debug, PartialEq)]
enum Fault {
    None,
    /// The next content GET sends only this many bytes, then closes the connection.
    CutAfter(usize),
    /// Content GETs send bytes with one flipped (the announced sha256 stays the true one).
    FlipByte,
    /// Every request gets this status.
    Status(u16),
    /// Requests are read and never answered.
    Hang,
}

#[derive(Clone, Debug)]
struct Request {
    method: String,
    path: String,
    range: Option<String>,
}

struct FakeHub {
    endpoint: String,
    requests: Arc<Mutex<Vec<Request>>>,
    fault: Arc<Mutex<Fault>>,
}

struct File {
    bytes: Vec<u8>,
    sha256: String,
    lfs: bool,
}

fn sha256(b: &[u8]) -> String {
    sha2::Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

fn tiny_model_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../xtask/tests/fixtures/eval_parity/model")
}

impl FakeHub {
    fn start() -> Self {
        let dir = tiny_model_dir();
        let mut files = HashMap::new();
        for (name, lfs) in [
            ("open_clip_model.safetensors", true),
            ("open_clip_config.json", false),
        ] {
            let bytes = std::fs::read(dir.join(name)).unwrap();
            files.insert(
                name.to_owned(),
                File {
                    sha256: sha256(&bytes),
                    bytes,
                    lfs,
                },
            );
        }
        let files = Arc::new(files);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let fault = Arc::new(Mutex::new(Fault::None));
        let (r, f) = (requests.clone(), fault.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (files, r, f) = (files.clone(), r.clone(), f.clone());
                std::thread::spawn(move || serve(stream, &files, &r, &f));
            }
        });
        Self {
            endpoint,
            requests,
            fault,
        }
    }

    fn set_fault(&self, f: Fault) {
        *self.fault.lock().unwrap() = f;
    }

    fn take_requests(&self) -> Vec<Request> {
        std::mem::take(&mut *self.requests.lock().unwrap())
    }

    fn hub(&self, cache: &Path) -> Hub {
        Hub::from_env()
            .with_endpoint(&self.endpoint)
            .with_cache_dir(cache)
            .with_timeout(Duration::from_secs(2))
            .progress_bar(false)
    }
}

fn serve(
    stream: TcpStream,
    files: &HashMap<String, File>,
    log: &Mutex<Vec<Request>>,
    fault: &Mutex<Fault>,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or("").to_owned(),
        parts.next().unwrap_or("").to_owned(),
    );
    let mut range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("range")
        {
            range = Some(v.trim().to_owned());
        }
    }
    log.lock().unwrap().push(Request {
        method: method.clone(),
        path: path.clone(),
        range: range.clone(),
    });
    let current = fault.lock().unwrap().clone();
    let mut out = stream;
    let respond = |out: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &[u8]| {
        let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let _ = out.write_all(head.as_bytes());
        if method != "HEAD" {
            let _ = out.write_all(body);
        }
        let _ = out.flush();
    };
    match current {
        Fault::Hang => {
            std::thread::sleep(Duration::from_secs(30));
            return;
        }
        Fault::Status(s) => {
            let body = b"{\"error\":\"boom\"}";
            respond(
                &mut out,
                &format!("{s} Error"),
                &[("Content-Length", body.len().to_string())],
                body,
            );
            return;
        }
        _ => {}
    }
    // Content URL of an LFS file.
    if let Some(sha) = path.strip_prefix("/cdn/") {
        let Some(file) = files.values().find(|f| f.sha256 == sha) else {
            respond(
                &mut out,
                "404 Not Found",
                &[("Content-Length", "0".into())],
                b"",
            );
            return;
        };
        let start = range
            .as_deref()
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|s| s.parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = file.bytes[start.min(file.bytes.len())..].to_vec();
        if current == Fault::FlipByte && !body.is_empty() {
            let mid = body.len() / 2;
            body[mid] ^= 0x55;
        }
        let status = if start > 0 {
            "206 Partial Content"
        } else {
            "200 OK"
        };
        let mut headers = vec![("Content-Length", body.len().to_string())];
        if start > 0 {
            headers.push((
                "Content-Range",
                format!(
                    "bytes {start}-{}/{}",
                    file.bytes.len() - 1,
                    file.bytes.len()
                ),
            ));
        }
        if let Fault::CutAfter(n) = current {
            *fault.lock().unwrap() = Fault::None;
            let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
            for (k, v) in &headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            let _ = out.write_all(head.as_bytes());
            let _ = out.write_all(&body[..n.min(body.len())]);
            let _ = out.flush();
            return; // closes early
        }
        respond(&mut out, status, &headers, &body);
        return;
    }
    let prefix = format!("/{REPO}/resolve/");
    let Some(rest) = path.strip_prefix(&prefix) else {
        respond(
            &mut out,
            "404 Not Found",
            &[
                ("Content-Length", "0".into()),
                ("X-Error-Code", "RepoNotFound".into()),
            ],
            b"",
        );
        return;
    };
    let (_revision, name) = rest.split_once('/').unwrap_or((rest, ""));
    let Some(file) = files.get(name) else {
        respond(
            &mut out,
            "404 Not Found",
            &[
                ("Content-Length", "0".into()),
                ("X-Error-Code", "EntryNotFound".into()),
            ],
            b"",
        );
        return;
    };
    if file.lfs {
        respond(
            &mut out,
            "302 Found",
            &[
                ("Location", format!("/cdn/{}", file.sha256)),
                ("X-Repo-Commit", COMMIT.into()),
                ("X-Linked-Etag", format!("\"{}\"", file.sha256)),
                ("X-Linked-Size", file.bytes.len().to_string()),
                ("Content-Length", "0".into()),
            ],
            b"",
        );
    } else {
        // A small file: git blob id as the etag, bytes in place.
        let etag = &file.sha256[..40];
        respond(
            &mut out,
            "200 OK",
            &[
                ("X-Repo-Commit", COMMIT.into()),
                ("ETag", format!("\"{etag}\"")),
                ("Content-Length", file.bytes.len().to_string()),
            ],
            &file.bytes,
        );
    }
}

fn load(hub: Hub) -> Result<Clip, Error> {
    Clip::builder().hub(hub).load(REPO)
}

fn weights_size() -> usize {
    std::fs::metadata(tiny_model_dir().join("open_clip_model.safetensors"))
        .unwrap()
        .len() as usize
}

#[test]
fn first_run_downloads_with_progress_then_the_cache_answers_alone() {
    let server = FakeHub::start();
    let cache = tempfile::tempdir().unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let hub =
        server
            .hub(cache.path())
            .on_progress(Arc::new(move |p: &clip::hub::DownloadProgress| {
                seen.lock().unwrap().push(p.clone())
            }));
    let clip = load(hub.clone()).unwrap();
    let first = server.take_requests();
    let gets: Vec<&Request> = first.iter().filter(|r| r.method == "GET").collect();
    assert!(
        first
            .iter()
            .any(|r| r.method == "HEAD" && r.path.ends_with("/open_clip_model.safetensors")),
        "{first:?}"
    );
    assert!(
        gets.iter().any(|r| r.path.starts_with("/cdn/")),
        "{first:?}"
    );
    let events = events.lock().unwrap();
    let last = events
        .iter()
        .rfind(|e| e.file == "open_clip_model.safetensors")
        .unwrap();
    assert_eq!(
        (last.done, last.total),
        (weights_size() as u64, weights_size() as u64)
    );

    // The hub cache layout: refs/main → commit, snapshot file → blob named by the sha256.
    let repo_dir = cache.path().join("models--org--tiny-clip");
    assert_eq!(
        std::fs::read_to_string(repo_dir.join("refs/main")).unwrap(),
        COMMIT
    );
    let snap = repo_dir
        .join("snapshots")
        .join(COMMIT)
        .join("open_clip_model.safetensors");
    let bytes = std::fs::read(&snap).unwrap();
    assert_eq!(
        bytes,
        std::fs::read(tiny_model_dir().join("open_clip_model.safetensors")).unwrap()
    );
    assert!(repo_dir.join("blobs").join(sha256(&bytes)).is_file());

    // Works: the model embeds.
    assert_eq!(clip.embed_text("a cat").unwrap().len(), clip.dim());

    // Second run: no request at all.
    let again = load(hub).unwrap();
    assert_eq!(again.model_id(), clip.model_id());
    assert!(server.take_requests().is_empty());
}

#[test]
fn a_download_cut_midway_resumes_on_the_next_run() {
    let server = FakeHub::start();
    let cache = tempfile::tempdir().unwrap();
    let half = weights_size() / 2;
    server.set_fault(Fault::CutAfter(half));
    let err = load(server.hub(cache.path())).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, Error::Download { .. } | Error::Corrupt { .. }),
        "{msg}"
    );
    assert!(
        msg.contains("/cdn/") || msg.contains("resolve/main/open_clip_model.safetensors"),
        "{msg}"
    );
    let blobs = cache.path().join("models--org--tiny-clip/blobs");
    let partial: Vec<_> = std::fs::read_dir(&blobs)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(partial.len(), 1, "{partial:?}");
    assert!(partial[0].to_string_lossy().ends_with(".incomplete"));
    assert_eq!(std::fs::metadata(&partial[0]).unwrap().len() as usize, half);
    server.take_requests();

    let clip = load(server.hub(cache.path())).unwrap();
    let resumed = server.take_requests();
    let get = resumed
        .iter()
        .find(|r| r.method == "GET" && r.path.starts_with("/cdn/"))
        .unwrap();
    assert_eq!(
        get.range.as_deref(),
        Some(format!("bytes={half}-").as_str()),
        "{resumed:?}"
    );
    assert_eq!(clip.embed_text("a dog").unwrap().len(), clip.dim());
}

#[test]
fn bytes_that_do_not_match_the_etag_are_refused_and_discarded() {
    let server = FakeHub::start();
    let cache = tempfile::tempdir().unwrap();
    server.set_fault(Fault::FlipByte);
    let err = load(server.hub(cache.path())).unwrap_err();
    match &err {
        Error::Corrupt { what, .. } => assert_eq!(*what, "sha256"),
        other => panic!("damaged download accepted or wrong error: {other}"),
    }
    assert!(err.to_string().contains("discarded"), "{err}");
    let repo_dir = cache.path().join("models--org--tiny-clip");
    let left: Vec<_> = std::fs::read_dir(repo_dir.join("blobs"))
        .unwrap()
        .flatten()
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(
        !repo_dir
            .join("snapshots")
            .join(COMMIT)
            .join("open_clip_model.safetensors")
            .exists()
    );
    // A good server afterwards: loads.
    server.set_fault(Fault::None);
    load(server.hub(cache.path())).unwrap();
}

#[test]
fn not_found_and_server_errors_are_clear() {
    let server = FakeHub::start();
    let cache = tempfile::tempdir().unwrap();
    let err = Clip::builder()
        .hub(server.hub(cache.path()))
        .load("org/no-such-model")
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::NotOnHub { status: 404, .. }), "{msg}");
    assert!(
        msg.contains(&format!(
            "{}/org/no-such-model/resolve/main/open_clip_model.safetensors",
            server.endpoint
        )),
        "{msg}"
    );

    server.set_fault(Fault::Status(500));
    let err = load(server.hub(cache.path())).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Download { .. }), "{msg}");
    assert!(msg.contains("HTTP 500") && msg.contains(REPO), "{msg}");
}

#[test]
fn a_server_that_hangs_hits_the_timeout() {
    let server = FakeHub::start();
    let cache = tempfile::tempdir().unwrap();
    server.set_fault(Fault::Hang);
    let t = Instant::now();
    let hub = server
        .hub(cache.path())
        .with_timeout(Duration::from_millis(500));
    let err = load(hub).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Download { .. }), "{msg}");
    assert!(
        msg.to_lowercase().contains("timed out") || msg.contains("timeout"),
        "{msg}"
    );
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
}

#[test]
fn offline_names_the_file_the_url_and_the_cache() {
    let server = FakeHub::start();
    let cache = tempfile::tempdir().unwrap();
    let err = load(server.hub(cache.path()).offline(true)).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Offline { .. }), "{msg}");
    assert!(msg.contains("open_clip_model.safetensors"), "{msg}");
    assert!(
        msg.contains(&format!(
            "{}/{REPO}/resolve/main/open_clip_model.safetensors",
            server.endpoint
        )),
        "{msg}"
    );
    assert!(msg.contains(&cache.path().display().to_string()), "{msg}");
    assert!(server.take_requests().is_empty());

    // Once cached, offline works.
    load(server.hub(cache.path())).unwrap();
    server.take_requests();
    load(server.hub(cache.path()).offline(true)).unwrap();
    assert!(server.take_requests().is_empty());
}

#[test]
fn an_unknown_server_without_hub_headers_is_refused() {
    // A plain web server: 200 without X-Repo-Commit.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
            );
        }
    });
    let cache = tempfile::tempdir().unwrap();
    let hub = Hub::from_env()
        .with_endpoint(endpoint)
        .with_cache_dir(cache.path())
        .progress_bar(false);
    let err = Clip::builder().hub(hub).load(REPO).unwrap_err();
    assert!(err.to_string().contains("X-Repo-Commit"), "{err}");
}
