//! The gallery server under hostile or careless use: DNS rebinding, cross-site writes, the access
//! token, upload floods (with the server's memory measured), slow and idle connections, shutdown
//! with a half-sent request, the upload quota, a FIFO where a picture was, hardening headers and
//! JSON bodies on every error.
//!
//! The model is the hash-based stand-in of `common`; the server runs on loopback, driven in
//! process through the router or over raw TCP where the HTTP layer matters.

mod common;

use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, header};
use clip_examples::gallery::guard::AccessToken;
use clip_examples::gallery::server::{AppState, Classified, Info, LibraryPage, Settings, router};
use common::{HashModel, demo_photos, demo_state, photo_bytes};
use http_body_util::BodyExt;
use tokio::net::TcpStream;
use tower::ServiceExt;

// ---------------------------------------------------------------------------------------------
// Helpers

fn state(settings: Settings) -> (tempfile::TempDir, Arc<AppState>) {
    demo_state(Arc::new(HashModel::new(16)), settings, 64)
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `error` field of a JSON body (panics when the body is not such an object).
    fn error(&self) -> String {
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "status {}: {}",
            self.status,
            String::from_utf8_lossy(&self.body)
        );
        let v: serde_json::Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)));
        v["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error field in {v}"))
            .to_owned()
    }

    fn json<T: serde::de::DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

/// One request through the router, in process.
async fn call(app: &axum::Router, req: Request<Body>) -> Reply {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

fn get(uri: &str, host: &str) -> Request<Body> {
    Request::get(uri)
        .header(header::HOST, host)
        .body(Body::empty())
        .unwrap()
}

/// A picture the library does not hold yet (a demo photo with bytes appended).
fn new_picture(tag: &str) -> Vec<u8> {
    let mut b = photo_bytes("horse.png");
    b.extend_from_slice(tag.as_bytes());
    b
}

async fn library_size(app: &axum::Router) -> usize {
    call(app, get("/api/info", "127.0.0.1"))
        .await
        .json::<Info>()
        .library_size
}

/// A server on a loopback port (or `bind`), stopped by dropping or calling `stop`.
struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

async fn start(settings: Settings, bind: &str) -> Server {
    let (dir, st) = state(settings);
    let listener = tokio::net::TcpListener::bind(bind).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(clip_examples::gallery::serve_until(listener, st, async {
        let _ = rx.await;
    }));
    Server {
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        stop: Some(tx),
        task,
        _dir: dir,
    }
}

impl Server {
    /// Asks the server to stop and returns how long it took to finish.
    async fn stop(mut self, within: Duration) -> Duration {
        let t = Instant::now();
        let _ = self.stop.take().map(|s| s.send(()));
        tokio::time::timeout(within, &mut self.task)
            .await
            .unwrap_or_else(|_| panic!("the server did not stop within {within:?}"))
            .unwrap()
            .unwrap();
        t.elapsed()
    }
}

/// Writes all of `buf` (tokio's `io-util` extension traits are not enabled in this crate).
async fn send(s: &TcpStream, mut buf: &[u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        s.writable().await?;
        match s.try_write(buf) {
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads what is there (at least a byte; 0 at the end).
async fn recv(s: &TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        s.readable().await?;
        match s.try_read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            r => return r,
        }
    }
}

/// Reads one response head (up to the blank line) within `limit`, with any body bytes after it.
async fn read_head(s: &mut TcpStream, limit: Duration) -> Result<(String, Vec<u8>), String> {
    let mut buf = Vec::new();
    let deadline = Instant::now() + limit;
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            return Ok((head, buf[end + 4..].to_vec()));
        }
        let mut chunk = [0u8; 4096];
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, recv(s, &mut chunk)).await {
            Err(_) => return Err(format!("no response within {limit:?}")),
            Ok(Ok(0)) => return Err("closed without a response".into()),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) => return Err(format!("read failed: {e}")),
        }
    }
}

fn parse_head(head: &str) -> (u16, Vec<(String, String)>) {
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers)
}

/// Reads a whole response (its body by `Content-Length`, else to the end) within `limit`.
async fn read_reply(s: &mut TcpStream, limit: Duration) -> Reply {
    let (head, mut body) = read_head(s, limit).await.unwrap();
    let (status, headers) = parse_head(&head);
    let len = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map(|(_, v)| v.parse::<usize>().unwrap());
    let mut chunk = [0u8; 8192];
    while len.is_none_or(|n| body.len() < n) {
        match tokio::time::timeout(limit, recv(s, &mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => body.extend_from_slice(&chunk[..n]),
            Err(_) => panic!("body not complete within {limit:?}"),
        }
    }
    Reply {
        status,
        headers,
        body,
    }
}

/// Sends raw request bytes on a new connection and reads the response.
async fn exchange(addr: SocketAddr, request: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).await.unwrap();
    send(&s, request).await.unwrap();
    read_reply(&mut s, Duration::from_secs(10)).await
}

fn request(method: &str, path: &str, extra: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in extra {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        r.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    r.push_str("\r\n");
    let mut bytes = r.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Whether the server closes `s` within `limit` (a read returns end of file or an error).
async fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut chunk = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, recv(s, &mut chunk)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {} // a response (408) before the close
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Host allow-list, origin, token

#[tokio::test]
async fn rebinding_host_is_refused() {
    let settings = Settings {
        access: clip_examples::gallery::guard::Access {
            token: None,
            allowed_hosts: vec!["gallery.lan".into()],
        },
        ..Settings::default()
    };
    let (_d, st) = state(settings);
    let app = router(st);
    for uri in [
        "/",
        "/api/library",
        "/api/search?q=cat",
        "/api/info",
        "/image/1",
    ] {
        for host in [
            "attacker.example",
            "attacker.example:8080",
            "127.0.0.1.nip.io",
        ] {
            let r = call(&app, get(uri, host)).await;
            assert_eq!(r.status, 403, "{uri} with Host {host}");
            assert!(r.error().contains("host"), "{uri}");
        }
        for host in [
            "localhost:8080",
            "127.0.0.1:8080",
            "[::1]:8080",
            "gallery.lan",
            "GALLERY.lan:8080",
        ] {
            let r = call(&app, get(uri, host)).await;
            assert_eq!(r.status, 200, "{uri} with Host {host}");
        }
    }
}

#[tokio::test]
async fn cross_origin_and_form_posts_cannot_write() {
    let (_d, st) = state(Settings::default());
    let app = router(st);
    let n = library_size(&app).await;
    let post = |extra: &[(&str, &str)], body: Vec<u8>| {
        let mut b =
            Request::post("/api/classify?labels=a,b").header(header::HOST, "127.0.0.1:8080");
        for (k, v) in extra {
            b = b.header(*k, *v);
        }
        b.body(Body::from(body)).unwrap()
    };
    let refused: Vec<(Vec<(&str, &str)>, u16)> = vec![
        (vec![("origin", "http://attacker.example")], 403),
        (vec![("origin", "http://127.0.0.1:9999")], 403),
        (vec![("origin", "null")], 403),
        (vec![("sec-fetch-site", "cross-site")], 403),
        // The content types a cross-site form can send without a preflight.
        (vec![("content-type", "text/plain")], 415),
        (vec![("content-type", "text/plain;charset=UTF-8")], 415),
        (
            vec![("content-type", "application/x-www-form-urlencoded")],
            415,
        ),
        (
            vec![("content-type", "multipart/form-data; boundary=x")],
            415,
        ),
    ];
    for (i, (extra, want)) in refused.iter().enumerate() {
        let r = call(&app, post(extra.as_slice(), new_picture(&format!("x{i}")))).await;
        assert_eq!(
            r.status,
            *want,
            "{extra:?}: {}",
            String::from_utf8_lossy(&r.body)
        );
        r.error();
    }
    assert_eq!(
        library_size(&app).await,
        n,
        "a refused request added a picture"
    );
    // The page's own request: same origin, octet-stream.
    let r = call(
        &app,
        post(
            &[
                ("origin", "http://127.0.0.1:8080"),
                ("sec-fetch-site", "same-origin"),
                ("content-type", "application/octet-stream"),
            ],
            new_picture("ok"),
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.json::<Classified>().added);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exposed_server_needs_the_token() {
    // Without a token, a non-loopback listener is refused.
    let (_d, st) = state(Settings::default());
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let err = clip_examples::gallery::serve_until(listener, st, async {})
        .await
        .expect_err("served on 0.0.0.0 without a token");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");

    let secret = "correct-horse-battery-staple";
    let mut settings = Settings::default();
    settings.access.token = Some(AccessToken::new(secret).unwrap());
    let server = start(settings, "0.0.0.0:0").await;
    let a = server.addr;
    let bearer = format!("Bearer {secret}");
    let cookie = format!("gallery_token={secret}");
    // No token, a wrong one: reads and writes are refused.
    for auth in [
        None,
        Some("Bearer wrong-token-wrong-token"),
        Some("Basic abc"),
    ] {
        let extra: Vec<(&str, &str)> = auth.map(|v| ("authorization", v)).into_iter().collect();
        for (method, path) in [
            ("GET", "/api/info"),
            ("GET", "/api/library"),
            ("GET", "/api/search?q=cat"),
            ("GET", "/api/similar/1"),
            ("GET", "/image/1"),
            ("POST", "/api/classify?labels=a,b"),
        ] {
            let body = if method == "POST" {
                new_picture("t")
            } else {
                Vec::new()
            };
            let r = exchange(a, &request(method, path, &extra, &body)).await;
            assert_eq!(r.status, 401, "{method} {path} with {auth:?}");
            assert!(r.error().contains("token"));
            assert!(r.header("www-authenticate").is_some());
        }
        let r = exchange(
            a,
            &request("GET", "/?token=wrong-token-wrong-token", &extra, b""),
        )
        .await;
        assert_eq!(r.status, 401);
    }
    // The page itself loads (it shows the API's 401 message until the token is given).
    let r = exchange(a, &request("GET", "/", &[], b"")).await;
    assert_eq!(r.status, 200);
    // Bearer token.
    let auth = [("authorization", bearer.as_str())];
    let r = exchange(a, &request("GET", "/api/info", &auth, b"")).await;
    assert_eq!(r.status, 200);
    let n = r.json::<Info>().library_size;
    assert_eq!(
        n,
        demo_photos().len(),
        "the 401 upload must not have been added"
    );
    // The link printed at start sets the cookie and sends the browser to the page without it.
    let r = exchange(
        a,
        &request("GET", &format!("/?token={secret}&per_page=3"), &[], b""),
    )
    .await;
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/?per_page=3"));
    let set = r.header("set-cookie").unwrap();
    assert!(
        set.starts_with(&cookie) && set.contains("HttpOnly") && set.contains("SameSite=Strict")
    );
    let with_cookie = [("cookie", cookie.as_str())];
    let r = exchange(a, &request("GET", "/api/library", &with_cookie, b"")).await;
    assert_eq!(r.status, 200);
    let id = r.json::<LibraryPage>().items[0].id;
    let r = exchange(
        a,
        &request("GET", &format!("/image/{id}"), &with_cookie, b""),
    )
    .await;
    assert_eq!(r.status, 200);
    let pic = new_picture("with the token");
    let r = exchange(a, &request("POST", "/api/classify", &with_cookie, &pic)).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    server.stop(Duration::from_secs(10)).await;
}

// ---------------------------------------------------------------------------------------------
// 2. Admission before the body is read

/// A request head announcing a body of `len` bytes.
fn upload_head(len: usize, extra: &str) -> Vec<u8> {
    format!(
        "POST /api/classify?labels=a,b HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {len}\r\n{extra}\r\n"
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_uploads_get_503_before_their_body_is_read() {
    let settings = Settings {
        max_uploads_in_flight: 1,
        ..Settings::default()
    };
    let server = start(settings, "127.0.0.1:0").await;
    // One upload takes the only slot and sends its body slowly.
    let first = TcpStream::connect(server.addr).await.unwrap();
    send(&first, &upload_head(100_000, "")).await.unwrap();
    send(&first, &photo_bytes("horse.png")[..100])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The next one is answered at once, before (and without) its body.
    let mut second = TcpStream::connect(server.addr).await.unwrap();
    send(&second, &upload_head(100_000, "")).await.unwrap();
    let t = Instant::now();
    let (head, _) = read_head(&mut second, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 1"),
        "{head}"
    );
    // Once the first is gone, uploads are admitted again.
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pic = new_picture("after");
    let r = exchange(server.addr, &request("POST", "/api/classify", &[], &pic)).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    server.stop(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_expect_continue_gets_413_at_once() {
    let settings = Settings {
        max_upload: 1 << 20,
        ..Settings::default()
    };
    let server = start(settings, "127.0.0.1:0").await;
    // Within the limit: the server asks for the body.
    let mut ok = TcpStream::connect(server.addr).await.unwrap();
    send(&ok, &upload_head(1000, "Expect: 100-continue\r\n"))
        .await
        .unwrap();
    let (head, _) = read_head(&mut ok, Duration::from_secs(5)).await.unwrap();
    assert!(head.starts_with("HTTP/1.1 100"), "{head}");
    // Over it: 413 at once, the body never asked for.
    let mut big = TcpStream::connect(server.addr).await.unwrap();
    send(
        &big,
        &upload_head((1 << 20) + 1, "Expect: 100-continue\r\n"),
    )
    .await
    .unwrap();
    let r = read_reply(&mut big, Duration::from_secs(5)).await;
    assert_eq!(r.status, 413);
    assert!(r.error().contains("limit"));
    server.stop(Duration::from_secs(10)).await;
}

/// Resident and peak memory of a process, in bytes (`VmRSS`, `VmHWM`).
fn memory_of(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
            * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

const BURST_UPLOAD: usize = 8 << 20;
const BURST_CLIENTS: usize = 48;
const BURST_IN_FLIGHT: usize = 2;

/// The server half of `upload_burst_memory_returns_to_baseline`, in its own process so that its
/// memory is the server's alone: prints its address, serves until its stdin closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "the server process of upload_burst_memory_returns_to_baseline, started by it"]
async fn burst_server_process() {
    assert!(
        std::env::var_os("GALLERY_BURST_SERVER").is_some(),
        "started by upload_burst_memory_returns_to_baseline only"
    );
    let settings = Settings {
        max_upload: BURST_UPLOAD + 1024,
        max_uploads_in_flight: BURST_IN_FLIGHT,
        ..Settings::default()
    };
    let (_d, st) = state(settings);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("ADDR {}", listener.local_addr().unwrap());
    std::io::stdout().flush().unwrap();
    let stdin_closed = tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
    });
    clip_examples::gallery::serve_until(listener, st, async {
        let _ = stdin_closed.await;
    })
    .await
    .unwrap();
}

/// Ends the server process when the test ends, however it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upload_burst_memory_returns_to_baseline() {
    let mut child = Child(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "burst_server_process",
                "--ignored",
                "--nocapture",
            ])
            .env("GALLERY_BURST_SERVER", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let pid = child.0.id();
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    let addr: SocketAddr = loop {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the server process ended"
        );
        if let Some(a) = line.trim().strip_prefix("ADDR ") {
            break a.parse().unwrap();
        }
    };
    // Warm up (first request, first upload), then take the baseline.
    let mut body = photo_bytes("horse.png");
    body.resize(BURST_UPLOAD, 0);
    let r = exchange(addr, &request("POST", "/api/classify", &[], &body)).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (base, _) = memory_of(pid);

    // The burst: every client sends a whole body unless it is answered first.
    body[BURST_UPLOAD - 1] = 1; // a new picture, the same for everyone (stored once)
    let body: Arc<[u8]> = body.into();
    let mut tasks = Vec::new();
    for _ in 0..BURST_CLIENTS {
        let body = Arc::clone(&body);
        tasks.push(tokio::spawn(async move {
            let s = TcpStream::connect(addr).await.unwrap();
            let write = async {
                // Stops at the first error: a refused upload's connection is closed.
                if send(&s, &upload_head(body.len(), "Connection: close\r\n"))
                    .await
                    .is_ok()
                {
                    let _ = send(&s, &body).await;
                }
            };
            let read = async {
                let mut resp = Vec::new();
                let mut chunk = [0u8; 4096];
                while let Ok(n @ 1..) = recv(&s, &mut chunk).await {
                    resp.extend_from_slice(&chunk[..n]);
                }
                resp
            };
            let both = async { tokio::join!(write, read).1 };
            let resp = tokio::time::timeout(Duration::from_secs(120), both)
                .await
                .expect("no answer within 120 s");
            String::from_utf8_lossy(&resp)
                .split(' ')
                .nth(1)
                .unwrap_or("reset")
                .to_owned()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    // Back near the baseline once the burst is over. On a loaded machine (the whole test suite
    // on two cores) the last admitted requests take a while to drop their buffers: poll for up
    // to 10 s before judging.
    let upload = BURST_UPLOAD as u64;
    let settle = BURST_IN_FLIGHT as u64 * upload + (32 << 20);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (after, peak) = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (after, peak) = memory_of(pid);
        if after.saturating_sub(base) <= settle || std::time::Instant::now() >= deadline {
            break (after, peak);
        }
    };
    let ok = statuses.iter().filter(|s| *s == "200").count();
    let busy = statuses.iter().filter(|s| *s == "503").count();
    let mb = |b: u64| b as f64 / (1 << 20) as f64;
    eprintln!(
        "{BURST_CLIENTS} concurrent {} MB uploads, {BURST_IN_FLIGHT} admitted at once: \
         {ok} x 200, {busy} x 503, {} refused by reset; RSS {:.0} MB before, peak {:.0} MB, \
         {:.0} MB after",
        BURST_UPLOAD >> 20,
        BURST_CLIENTS - ok - busy,
        mb(base),
        mb(peak),
        mb(after)
    );
    assert!(ok >= 1, "{statuses:?}");
    assert!(
        statuses
            .iter()
            .all(|s| s == "200" || s == "503" || s == "reset"),
        "{statuses:?}"
    );
    // Each admitted upload holds its body about twice (the collected body and the model's copy);
    // hyper's buffers and the allocator's slack add some tens of MB.
    let bound = BURST_IN_FLIGHT as u64 * 3 * upload + (48 << 20);
    assert!(
        peak.saturating_sub(base) <= bound,
        "peak {:.0} MB over a {:.0} MB baseline (bound {:.0} MB)",
        mb(peak),
        mb(base),
        mb(bound)
    );
    assert!(
        after.saturating_sub(base) <= settle,
        "{:.0} MB after the burst over a {:.0} MB baseline (bound {:.0} MB)",
        mb(after),
        mb(base),
        mb(settle)
    );
    // No log line per refused request: the server wrote nothing to stderr.
    drop(child.0.stdin.take());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.0.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!err.contains("503") && !err.contains("busy"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// 3. Timeouts and shutdown

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_connections_are_closed() {
    let mut settings = Settings::default();
    settings.timeouts.header_read = Duration::from_secs(1);
    settings.timeouts.body_read = Duration::from_secs(2);
    settings.timeouts.idle = Duration::from_millis(700);
    let server = start(settings, "127.0.0.1:0").await;
    let a = server.addr;
    let bound = Duration::from_secs(4);
    // Connected, nothing sent.
    let mut idle = TcpStream::connect(a).await.unwrap();
    // Half a request head.
    let mut half = TcpStream::connect(a).await.unwrap();
    send(
        &half,
        b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ",
    )
    .await
    .unwrap();
    // A body that stops.
    let mut stalled = TcpStream::connect(a).await.unwrap();
    send(&stalled, &upload_head(10_000, "")).await.unwrap();
    send(&stalled, &photo_bytes("horse.png")[..10])
        .await
        .unwrap();
    // A keep-alive connection after its response.
    let mut kept = TcpStream::connect(a).await.unwrap();
    send(&kept, b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_reply(&mut kept, bound).await.status, 200);
    let t = Instant::now();
    for (what, s) in [
        ("idle", &mut idle),
        ("half head", &mut half),
        ("stalled body", &mut stalled),
        ("keep-alive", &mut kept),
    ] {
        assert!(
            closed_within(s, bound).await,
            "{what} still open after {bound:?}"
        );
    }
    // A body trickling in (a byte every 200 ms, never a pause long enough for the idle limit) is
    // cut by the body deadline: 408.
    let trickle = TcpStream::connect(a).await.unwrap();
    send(&trickle, &upload_head(10_000, "")).await.unwrap();
    let pic = photo_bytes("horse.png");
    let start = Instant::now();
    let mut answered = None;
    for b in pic.iter().take(100) {
        if send(&trickle, &[*b]).await.is_err() {
            break;
        }
        let mut chunk = [0u8; 512];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(200), recv(&trickle, &mut chunk)).await
        {
            answered = Some(String::from_utf8_lossy(&chunk[..n]).into_owned());
            break;
        }
    }
    let answer = answered.expect("the trickled upload was never cut");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    eprintln!(
        "idle, half-sent, stalled and kept-alive connections closed after {:?}",
        t.elapsed()
    );
    // The server still answers.
    let r = exchange(a, &request("GET", "/api/info", &[], b"")).await;
    assert_eq!(r.status, 200);
    server.stop(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_bounded_with_a_half_sent_request() {
    let mut settings = Settings::default();
    // Long request deadlines: only the shutdown bound can end these connections in time.
    settings.timeouts.header_read = Duration::from_secs(60);
    settings.timeouts.body_read = Duration::from_secs(60);
    settings.timeouts.idle = Duration::from_secs(60);
    settings.timeouts.shutdown_grace = Duration::from_secs(1);
    let server = start(settings, "127.0.0.1:0").await;
    let mut half = TcpStream::connect(server.addr).await.unwrap();
    send(&half, b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let mut body = TcpStream::connect(server.addr).await.unwrap();
    send(&body, &upload_head(10_000, "")).await.unwrap();
    send(&body, &photo_bytes("horse.png")[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let took = server.stop(Duration::from_secs(5)).await;
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
    assert!(closed_within(&mut half, Duration::from_secs(1)).await);
    assert!(closed_within(&mut body, Duration::from_secs(1)).await);
}

// ---------------------------------------------------------------------------------------------
// 4. Upload quota

#[tokio::test]
async fn upload_quota_limits_library_growth() {
    let mut settings = Settings::default();
    settings.quota.max_count = 2;
    let (_d, st) = state(settings);
    let app = router(st);
    let n = library_size(&app).await;
    let post = |body: Vec<u8>| {
        Request::post("/api/classify?labels=a,b")
            .body(Body::from(body))
            .unwrap()
    };
    for i in 0..2 {
        let r = call(&app, post(new_picture(&format!("q{i}")))).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
    let r = call(&app, post(new_picture("q2"))).await;
    assert_eq!(r.status, 429);
    assert!(r.error().contains("2 new pictures"));
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=3600).contains(&retry), "{retry}");
    // A picture already in the library is still classified: it costs nothing.
    let r = call(&app, post(photo_bytes("horse.png"))).await;
    assert_eq!(r.status, 200);
    assert!(!r.json::<Classified>().added);
    assert_eq!(library_size(&app).await, n + 2);

    // Bytes: 150 kB per window takes one 112 kB picture, not two.
    let mut settings = Settings::default();
    settings.quota.max_bytes = 150_000;
    let (_d, st) = state(settings);
    let app = router(st);
    let mut a = photo_bytes("rocket.jpg");
    a.push(1);
    let mut b = photo_bytes("rocket.jpg");
    b.push(2);
    assert_eq!(call(&app, post(a)).await.status, 200);
    let r = call(&app, post(b)).await;
    assert_eq!(r.status, 429);
    assert!(r.error().contains("bytes"));
}

// ---------------------------------------------------------------------------------------------
// 5. Image files

/// The library id of the demo photo `name`.
async fn id_of(app: &axum::Router, name: &str) -> i64 {
    let page: LibraryPage = call(app, get("/api/library?per_page=100", "127.0.0.1"))
        .await
        .json();
    page.items.iter().find(|i| i.name == name).unwrap().id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_files_are_checked_before_serving() {
    let settings = Settings {
        max_image_bytes: 200_000,
        ..Settings::default()
    };
    let (dir, st) = state(settings);
    let app = router(st);
    let photos = dir.path().join("photos");
    // A FIFO where a picture was: an error at once, not a thread blocked for ever.
    let fifo = photos.join("horse.png");
    let id = id_of(&app, "horse.png").await;
    std::fs::remove_file(&fifo).unwrap();
    dev_support::mkfifo(&fifo);
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        call(&app, get(&format!("/image/{id}"), "127.0.0.1")),
    )
    .await;
    // Release a reader blocked on the FIFO, if any, before judging.
    {
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo);
    }
    let r = r.expect("GET /image/{id} of a FIFO hung");
    assert_eq!(r.status, 404);
    assert!(r.error().contains("regular file"));
    // Larger than the cap.
    let id = id_of(&app, "chelsea.png").await;
    let r = call(&app, get(&format!("/image/{id}"), "127.0.0.1")).await;
    assert_eq!(r.status, 404);
    assert!(r.error().contains("limit"));
    // A folder, and a file that is no longer a picture.
    let id = id_of(&app, "camera.png").await;
    std::fs::remove_file(photos.join("camera.png")).unwrap();
    std::fs::create_dir(photos.join("camera.png")).unwrap();
    let r = call(&app, get(&format!("/image/{id}"), "127.0.0.1")).await;
    assert_eq!(r.status, 404);
    r.error();
    let id = id_of(&app, "rocket.jpg").await;
    std::fs::write(photos.join("rocket.jpg"), b"<html>not a picture</html>").unwrap();
    let r = call(&app, get(&format!("/image/{id}"), "127.0.0.1")).await;
    assert_eq!(r.status, 404);
    r.error();
    // Within the cap: served whole, with its length.
    let id = id_of(&app, "coffee.png").await;
    std::fs::write(photos.join("coffee.png"), photo_bytes("horse.png")).unwrap();
    let r = call(&app, get(&format!("/image/{id}"), "127.0.0.1")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, photo_bytes("horse.png"));
    assert_eq!(
        r.header("content-length"),
        Some(photo_bytes("horse.png").len().to_string().as_str())
    );
}

// ---------------------------------------------------------------------------------------------
// 6. Headers and error bodies

fn assert_hardened(r: &Reply, what: &str) {
    assert_eq!(r.header("x-frame-options"), Some("DENY"), "{what}");
    assert_eq!(
        r.header("x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    let csp = r.header("content-security-policy").unwrap_or("");
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
}

#[tokio::test]
async fn every_response_is_hardened() {
    let (_d, st) = state(Settings::default());
    let app = router(st);
    let id = id_of(&app, "horse.png").await;
    let image = format!("/image/{id}");
    let cases: Vec<(Request<Body>, u16)> = vec![
        (get("/", "127.0.0.1"), 200),
        (get("/static/app.js", "127.0.0.1"), 200),
        (get("/static/style.css", "127.0.0.1"), 200),
        (get("/api/info", "127.0.0.1"), 200),
        (get(&image, "127.0.0.1"), 200),
        (get("/api/search", "127.0.0.1"), 400),
        (get("/nope", "127.0.0.1"), 404),
        (get("/api/classify", "127.0.0.1"), 405),
        (get("/api/info", "attacker.example"), 403),
    ];
    for (req, want) in cases {
        let what = format!("{} {}", req.method(), req.uri());
        let r = call(&app, req).await;
        assert_eq!(r.status, want, "{what}");
        assert_hardened(&r, &what);
        if want >= 400 {
            assert!(!r.error().is_empty(), "{what}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_layer_errors_have_json_bodies() {
    let settings = Settings {
        max_upload: 1 << 20,
        ..Settings::default()
    };
    let server = start(settings, "127.0.0.1:0").await;
    let a = server.addr;
    let long_uri = format!("/api/search?q={}", "a".repeat(20_000));
    let many: Vec<(String, String)> = (0..100).map(|i| (format!("x-h{i}"), "v".into())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let big = "v".repeat(20_000);
    let huge_len = ((1 << 20) + 1).to_string();
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (request("GET", "/api/classify", &[], b""), 405),
        (request("DELETE", "/api/info", &[], b""), 405),
        (request("GET", &long_uri, &[], b""), 414),
        (request("GET", "/api/info", &many, b""), 431),
        (
            request("GET", "/api/info", &[("x-big", big.as_str())], b""),
            431,
        ),
        (
            request(
                "POST",
                "/api/classify",
                &[("content-length", huge_len.as_str())],
                b"",
            ),
            413,
        ),
        (request("GET", "/api/library?page=x", &[], b""), 400),
    ];
    for (req, want) in cases {
        let what = String::from_utf8_lossy(&req[..req.len().min(40)]).into_owned();
        let r = exchange(a, &req).await;
        assert_eq!(r.status, want, "{what}");
        assert!(!r.error().is_empty(), "{what}");
        assert_hardened(&r, &what);
    }
    server.stop(Duration::from_secs(10)).await;
}

#[tokio::test]
async fn server_errors_name_no_path() {
    let (dir, st) = state(Settings::default());
    let app = router(st);
    // The media folder cannot be created: a file is in its place.
    std::fs::write(dir.path().join("media"), b"in the way").unwrap();
    let r = call(
        &app,
        Request::post("/api/classify")
            .body(Body::from(new_picture("no room")))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 500);
    let msg = r.error();
    let root = dir.path().to_string_lossy().into_owned();
    assert!(!msg.contains(&root) && !msg.contains("/tmp"), "{msg}");
    assert!(!String::from_utf8_lossy(&r.body).contains("media"), "{msg}");
}
