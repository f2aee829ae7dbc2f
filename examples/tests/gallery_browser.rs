//! The gallery page in a real browser: Debian's headless `chromium` driven through `chromedriver`
//! (WebDriver), over a server with a tiny random CLIP and the demo photos. It uploads and classifies a picture, searches by text, browses the library page
//! by page, asks for similar pictures, checks what the page shows, and saves a screenshot to
//! `target/gallery-screenshot.png`.
//!
//! Needs `/usr/bin/chromium` and `chromedriver` (`apt-get install -y chromium chromium-driver`).
//! Without them the test fails when `CI` is set and is skipped loudly otherwise.

mod common;

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clip_examples::Embedder;
use clip_examples::gallery::server::Settings;
use common::{demo_photos, demo_state, dot, photo_bytes};
use fantoccini::{Client, ClientBuilder, Locator};

const CHROMIUM: &str = "/usr/bin/chromium";

/// The chromedriver binary, or `None` (after failing in CI / printing a skip notice) when the
/// browser is not installed.
fn browser_or_skip() -> Option<PathBuf> {
    let driver = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file());
    match (Path::new(CHROMIUM).is_file(), driver) {
        (true, Some(d)) => Some(d),
        _ if in_ci() => panic!(
            "gallery_browser: {CHROMIUM} or chromedriver missing; CI must install them \
             (apt-get install -y chromium chromium-driver)"
        ),
        _ => {
            eprintln!(
                "\n*** SKIPPED gallery_browser: {CHROMIUM} or chromedriver not installed \
                 (apt-get install -y chromium chromium-driver) ***\n"
            );
            None
        }
    }
}

/// Whether `CI` is set to something other than empty, `0` or `false`.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false"))
}

/// Kills the chromedriver child when the test ends, however it ends.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_driver(bin: &Path) -> (Driver, String) {
    let port = free_port();
    let child = Command::new(bin)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let driver = Driver(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (driver, format!("http://127.0.0.1:{port}"))
}

async fn connect(webdriver: &str, profile: &Path) -> Client {
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,1500",
    ]
    .into_iter()
    .map(String::from)
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect::<Vec<_>>();
    let caps = serde_json::json!({
        "browserName": "chrome",
        "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
    });
    let serde_json::Value::Object(caps) = caps else {
        unreachable!()
    };
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(webdriver)
        .await
        .expect("WebDriver session")
}

/// Polls `f` until it returns `Some`, for at most 30 s.
async fn until<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn text(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn click(c: &Client, what: Locator<'_>) {
    c.find(what).await.unwrap().click().await.unwrap();
}

async fn count(c: &Client, css: &str) -> usize {
    c.find_all(Locator::Css(css)).await.unwrap().len()
}

/// `(label, percent)` of the classification list, in the order shown.
async fn classify_results(c: &Client) -> Vec<(String, f32)> {
    let mut shown = Vec::new();
    for r in c
        .find_all(Locator::Css("#classify-results li"))
        .await
        .unwrap()
    {
        let label = r.find(Locator::Css(".label")).await.unwrap();
        let pct = r.find(Locator::Css(".prob")).await.unwrap();
        let pct: f32 = pct
            .text()
            .await
            .unwrap()
            .trim_end_matches(" %")
            .parse()
            .unwrap();
        shown.push((label.text().await.unwrap(), pct));
    }
    shown
}

/// `(id, name, score)` of the cards of a grid.
async fn cards(c: &Client, grid: &str) -> Vec<(i64, String, Option<f32>)> {
    let mut out = Vec::new();
    for card in c
        .find_all(Locator::Css(&format!("{grid} .card")))
        .await
        .unwrap()
    {
        let id = card
            .attr("data-id")
            .await
            .unwrap()
            .unwrap()
            .parse()
            .unwrap();
        let name = card
            .find(Locator::Css(".name"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let score = match card.find(Locator::Css(".score")).await {
            Ok(s) => Some(s.text().await.unwrap().parse().unwrap()),
            Err(_) => None,
        };
        out.push((id, name, score));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gallery_page_in_headless_chromium() {
    let Some(driver_bin) = browser_or_skip() else {
        return;
    };
    let model_dir = tempfile::tempdir().unwrap();
    let weights = common::tiny_clip_file(model_dir.path());
    let model: Arc<dyn Embedder> = Arc::new(clip::Clip::load(weights.to_str().unwrap()).unwrap());
    let (lib_dir, state) = demo_state(model.clone(), Settings::default(), 16);
    let n = demo_photos().len();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(clip_examples::gallery::serve(listener, state));

    let (_driver, webdriver) = start_driver(&driver_bin).await;
    let profile = tempfile::tempdir().unwrap();
    let c = connect(&webdriver, profile.path()).await;
    let result = tokio::time::timeout(
        Duration::from_secs(180),
        drive(&c, &base, model.as_ref(), lib_dir.path(), n),
    )
    .await;
    // Screenshot whatever happened, then report.
    let shot = c.screenshot().await.unwrap();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    std::fs::create_dir_all(&target).unwrap();
    let out = target.join("gallery-screenshot.png");
    std::fs::write(&out, &shot).unwrap();
    eprintln!("screenshot: {}", out.display());
    c.close().await.unwrap();
    result.expect("the browser test timed out");
}

async fn drive(c: &Client, base: &str, model: &dyn Embedder, lib_dir: &Path, n: usize) {
    // 1. The page loads and shows the model and the library size; 4 per page → paging.
    c.goto(&format!("{base}/?per_page=4")).await.unwrap();
    c.wait()
        .for_element(Locator::Css("body[data-ready='1']"))
        .await
        .unwrap();
    assert_eq!(text(c, "#model-name").await, model.model_id());
    assert_eq!(text(c, "#library-size").await, n.to_string());
    assert_eq!(count(c, "#library-grid .card").await, 4.min(n));
    let pages = n.div_ceil(4);
    assert_eq!(
        text(c, "#page-info").await,
        format!("Page 1 of {pages} ({n} images)")
    );

    // 2. A file that is not a picture: the page shows the server's error, nothing is added.
    let junk = lib_dir.join("notes.txt");
    std::fs::write(&junk, "not a picture").unwrap();
    c.find(Locator::Id("file"))
        .await
        .unwrap()
        .send_keys(junk.to_str().unwrap())
        .await
        .unwrap();
    click(c, Locator::Id("classify-btn")).await;
    let err = until("the error banner", || async {
        let e = c.find(Locator::Id("error")).await.unwrap();
        let t = e.text().await.unwrap();
        (!t.is_empty()).then_some(t)
    })
    .await;
    assert!(err.contains("HTTP 415"), "{err}");
    assert_eq!(text(c, "#library-size").await, n.to_string());

    // 3. Upload a new picture and classify it among typed labels.
    let upload = lib_dir.join("upload-test.jpg");
    let mut bytes = photo_bytes("rocket.jpg");
    bytes.extend_from_slice(b"browser");
    std::fs::write(&upload, &bytes).unwrap();
    c.find(Locator::Id("file"))
        .await
        .unwrap()
        .send_keys(upload.to_str().unwrap())
        .await
        .unwrap();
    let labels = c.find(Locator::Id("labels")).await.unwrap();
    labels.clear().await.unwrap();
    labels.send_keys("rocket, cat, dog").await.unwrap();
    click(c, Locator::Id("classify-btn")).await;
    let note = until("the classification", || async {
        let t = text(c, "#classify-note").await;
        t.starts_with("Added").then_some(t)
    })
    .await;
    let id: i64 = note
        .trim_start_matches("Added to the library as #")
        .trim_end_matches('.')
        .parse()
        .unwrap();
    let shown = classify_results(c).await;
    let mut names: Vec<&str> = shown.iter().map(|(l, _)| l.as_str()).collect();
    names.sort();
    assert_eq!(names, ["cat", "dog", "rocket"]);
    assert!(shown.windows(2).all(|w| w[0].1 >= w[1].1), "{shown:?}");
    let total: f32 = shown.iter().map(|(_, p)| p).sum();
    assert!((total - 100.0).abs() < 0.2, "{shown:?}");
    // The percentages are the zero-shot probabilities computed independently.
    let img = model.embed_image(&bytes).unwrap();
    let logits: Vec<f32> = shown
        .iter()
        .map(|(l, _)| {
            100.0
                * dot(
                    &img,
                    &model.embed_text(&format!("a photo of a {l}.")).unwrap(),
                )
        })
        .collect();
    let m = logits.iter().cloned().fold(f32::MIN, f32::max);
    let z: f32 = logits.iter().map(|l| (l - m).exp()).sum();
    for ((label, pct), l) in shown.iter().zip(&logits) {
        let want = 100.0 * (l - m).exp() / z;
        assert!(
            (pct - want).abs() <= 0.051,
            "{label}: shown {pct} %, expected {want}"
        );
    }
    // The library now has the upload, first (newest first).
    assert_eq!(text(c, "#library-size").await, (n + 1).to_string());
    let first = cards(c, "#library-grid").await;
    assert_eq!(first[0].0, id);
    assert!(first[0].1.ends_with(".jpg"));
    assert!(
        !c.find(Locator::Id("preview"))
            .await
            .unwrap()
            .attr("src")
            .await
            .unwrap()
            .unwrap()
            .is_empty()
    );

    // 4. Browse: page through the whole library; every image appears once.
    let total = n + 1;
    let pages = total.div_ceil(4);
    let mut seen = first.iter().map(|c| c.0).collect::<Vec<_>>();
    for p in 2..=pages {
        click(c, Locator::Id("next")).await;
        let info = format!("Page {p} of {pages} ({total} images)");
        until("the next page", || async {
            (text(c, "#page-info").await == info).then_some(())
        })
        .await;
        let page = cards(c, "#library-grid").await;
        assert_eq!(page.len(), (total - (p - 1) * 4).min(4));
        seen.extend(page.iter().map(|c| c.0));
    }
    let next = c.find(Locator::Id("next")).await.unwrap();
    assert_eq!(
        next.prop("disabled").await.unwrap().as_deref(),
        Some("true")
    );
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), total);
    click(c, Locator::Id("prev")).await;
    until("the previous page", || async {
        text(c, "#page-info")
            .await
            .starts_with(&format!("Page {} of", pages - 1))
            .then_some(())
    })
    .await;

    // 5. Search by text: k results, best first, scores = text·image dot products.
    let q = c.find(Locator::Id("query")).await.unwrap();
    q.send_keys("a rocket launch").await.unwrap();
    click(c, Locator::Css("#k option[value='4']")).await;
    click(c, Locator::Id("search-btn")).await;
    until("search results", || async {
        text(c, "#search-note")
            .await
            .contains("best matches")
            .then_some(())
    })
    .await;
    let hits = cards(c, "#search-results").await;
    assert_eq!(hits.len(), 4);
    let t = model.embed_text("a rocket launch").unwrap();
    let scores: Vec<f32> = hits.iter().map(|h| h.2.unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    for (hid, name, score) in &hits {
        let file = if *hid == id {
            bytes.clone()
        } else {
            photo_bytes(name)
        };
        let want = dot(&t, &model.embed_image(&file).unwrap());
        assert!(
            (score.unwrap() - want).abs() <= 0.0006,
            "{name}: {score:?} vs {want}"
        );
    }

    // 6. Similar: clicking a library picture lists its neighbours, itself left out.
    let card = c.find(Locator::Css("#library-grid .card")).await.unwrap();
    let clicked: i64 = card
        .attr("data-id")
        .await
        .unwrap()
        .unwrap()
        .parse()
        .unwrap();
    card.click().await.unwrap();
    until("similar pictures", || async {
        text(c, "#search-note")
            .await
            .starts_with("Most similar")
            .then_some(())
    })
    .await;
    let sim = cards(c, "#search-results").await;
    assert_eq!(sim.len(), 4);
    assert!(sim.iter().all(|s| s.0 != clicked));

    // The error of step 2 was cleared by the later successful requests.
    let hidden = c
        .find(Locator::Id("error"))
        .await
        .unwrap()
        .attr("hidden")
        .await
        .unwrap();
    assert!(hidden.is_some(), "error banner still shown");
}

/// Chinese queries in the browser: the gallery over the tiny random Chinese-CLIP of the facade's
/// fixtures (cn_clip naming, cn_clip's 21,128-token vocabulary; `tools/reference/facade_parity.py`).
/// A Chinese query typed into the page gives the best matches with scores equal to the query's
/// embedding · each picture's (computed here through the model, independently of the server), and
/// classifying among Chinese labels uses the Chinese prompt `{}的照片。` and a softmax.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gallery_answers_chinese_queries_in_headless_chromium() {
    let Some(driver_bin) = browser_or_skip() else {
        return;
    };
    let weights = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/clip/tests/fixtures/families/cn_clip");
    let clip = clip::Clip::load(weights.to_str().unwrap()).unwrap();
    assert_eq!(clip.family(), clip::ModelFamily::ChineseClip);
    let model: Arc<dyn Embedder> = Arc::new(clip);
    let (lib_dir, state) = demo_state(model.clone(), Settings::default(), 16);
    let n = demo_photos().len();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(clip_examples::gallery::serve(listener, state));

    let (_driver, webdriver) = start_driver(&driver_bin).await;
    let profile = tempfile::tempdir().unwrap();
    let c = connect(&webdriver, profile.path()).await;
    let result = tokio::time::timeout(
        Duration::from_secs(120),
        drive_chinese(&c, &base, model.as_ref(), lib_dir.path(), n),
    )
    .await;
    c.close().await.unwrap();
    result.expect("the browser test timed out");
}

async fn drive_chinese(c: &Client, base: &str, model: &dyn Embedder, lib_dir: &Path, n: usize) {
    c.goto(base).await.unwrap();
    c.wait()
        .for_element(Locator::Css("body[data-ready='1']"))
        .await
        .unwrap();
    assert_eq!(text(c, "#library-size").await, n.to_string());

    // Search with a Chinese query.
    let query = "一枚火箭发射";
    let q = c.find(Locator::Id("query")).await.unwrap();
    q.send_keys(query).await.unwrap();
    click(c, Locator::Css("#k option[value='4']")).await;
    click(c, Locator::Id("search-btn")).await;
    until("search results", || async {
        text(c, "#search-note")
            .await
            .contains("best matches")
            .then_some(())
    })
    .await;
    let hits = cards(c, "#search-results").await;
    assert_eq!(hits.len(), 4.min(n));
    let t = model.embed_text(query).unwrap();
    let mut want: Vec<(String, f32)> = demo_photos()
        .iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let s = dot(&t, &model.embed_image(&photo_bytes(&name)).unwrap());
            (name, s)
        })
        .collect();
    want.sort_by(|a, b| b.1.total_cmp(&a.1));
    for ((_, name, score), (want_name, want_score)) in hits.iter().zip(&want) {
        assert_eq!(name, want_name, "{hits:?} vs {want:?}");
        assert!(
            (score.unwrap() - want_score).abs() <= 0.0006,
            "{name}: {score:?} vs {want_score}"
        );
    }

    // Classify an upload among Chinese labels.
    let upload = lib_dir.join("上传.jpg");
    let mut bytes = photo_bytes("rocket.jpg");
    bytes.extend_from_slice(b"zh");
    std::fs::write(&upload, &bytes).unwrap();
    c.find(Locator::Id("file"))
        .await
        .unwrap()
        .send_keys(upload.to_str().unwrap())
        .await
        .unwrap();
    let labels = c.find(Locator::Id("labels")).await.unwrap();
    labels.clear().await.unwrap();
    labels.send_keys("火箭, 猫, 狗").await.unwrap();
    click(c, Locator::Id("classify-btn")).await;
    until("the classification", || async {
        text(c, "#classify-note")
            .await
            .starts_with("Added")
            .then_some(())
    })
    .await;
    let shown = classify_results(c).await;
    let img = model.embed_image(&bytes).unwrap();
    let scale = model.logit_scale();
    let logits: Vec<f32> = shown
        .iter()
        .map(|(l, _)| scale * dot(&img, &model.embed_text(&format!("{l}的照片。")).unwrap()))
        .collect();
    let m = logits.iter().cloned().fold(f32::MIN, f32::max);
    let z: f32 = logits.iter().map(|l| (l - m).exp()).sum();
    assert_eq!(shown.len(), 3);
    for ((label, pct), l) in shown.iter().zip(&logits) {
        let want = 100.0 * (l - m).exp() / z;
        assert!(
            (pct - want).abs() <= 0.051,
            "{label}: shown {pct} %, expected {want}"
        );
    }
}
