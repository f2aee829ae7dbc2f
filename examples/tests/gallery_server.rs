//! The gallery server's API and safety properties, driven in-process through the router.
//!
//! The model is a hash-based stand-in (see `common`), so these tests check behaviour (status
//! codes, counts, ordering, scores equal to independently computed dot products), not semantics.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use clip_examples::Embedder;
use clip_examples::gallery::server::{Classified, Hits, Info, LibraryPage, Settings, router};
use common::{HashModel, demo_photos, demo_state, dot, photo_bytes};
use http_body_util::BodyExt;
use tower::ServiceExt;

async fn call(app: &axum::Router, req: Request<Body>) -> (StatusCode, Vec<u8>, Option<String>) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let ctype = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned());
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, body, ctype)
}

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, Vec<u8>, Option<String>) {
    call(app, Request::get(uri).body(Body::empty()).unwrap()).await
}

async fn post(app: &axum::Router, uri: &str, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
    let (s, b, _) = call(app, Request::post(uri).body(Body::from(body)).unwrap()).await;
    (s, b)
}

fn json<T: serde::de::DeserializeOwned>(body: &[u8]) -> T {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

/// Asserts a JSON error body `{"error": "..."}` and returns the message.
fn error_message(body: &[u8]) -> String {
    let v: serde_json::Value = json(body);
    v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error field in {v}"))
        .to_owned()
}

fn setup(settings: Settings) -> (tempfile::TempDir, Arc<HashModel>, axum::Router) {
    let model = Arc::new(HashModel::new(16));
    let (dir, state) = demo_state(model.clone(), settings, 64);
    (dir, model, router(state))
}

#[tokio::test]
async fn page_and_assets_are_served() {
    let (_d, _m, app) = setup(Settings::default());
    let (s, body, ct) = get(&app, "/").await;
    assert_eq!(s, StatusCode::OK);
    assert!(ct.unwrap().starts_with("text/html"));
    let html = String::from_utf8(body).unwrap();
    assert!(html.contains("id=\"classify-form\"") && html.contains("/static/app.js"));
    let (s, _, ct) = get(&app, "/static/app.js").await;
    assert_eq!(
        (s, ct.unwrap().starts_with("text/javascript")),
        (StatusCode::OK, true)
    );
    let (s, _, ct) = get(&app, "/static/style.css").await;
    assert_eq!(
        (s, ct.unwrap().starts_with("text/css")),
        (StatusCode::OK, true)
    );
    let (s, body, _) = get(&app, "/api/info").await;
    assert_eq!(s, StatusCode::OK);
    let info: Info = json(&body);
    assert_eq!(info.model, "test/hash-model");
    assert_eq!((info.dim, info.library_size), (16, demo_photos().len()));
}

#[tokio::test]
async fn upload_classifies_and_adds_once() {
    let (dir, model, app) = setup(Settings::default());
    let n = demo_photos().len();
    // New bytes: a demo photo with one trailing byte changed is a different file.
    let mut bytes = photo_bytes("rocket.jpg");
    bytes.push(0);
    let (s, body) = post(
        &app,
        "/api/classify?labels=rocket,%20cat,dog",
        bytes.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let c: Classified = json(&body);
    assert!(c.added);
    assert_eq!(c.library_size, n + 1);
    let labels: Vec<&str> = c.labels.iter().map(|l| l.label.as_str()).collect();
    let mut sorted = labels.clone();
    sorted.sort();
    assert_eq!(sorted, ["cat", "dog", "rocket"]);
    assert!((c.labels.iter().map(|l| l.prob).sum::<f32>() - 1.0).abs() < 1e-5);
    assert!(c.labels.windows(2).all(|w| w[0].prob >= w[1].prob));
    // Probabilities recomputed independently: softmax(100 * <image, "a photo of a {label}.">).
    let img = model.embed_image(&bytes).unwrap();
    let logits: Vec<f64> = c
        .labels
        .iter()
        .map(|l| {
            let t = model
                .embed_text(&format!("a photo of a {}.", l.label))
                .unwrap();
            100.0 * dot(&img, &t) as f64
        })
        .collect();
    let m = logits.iter().cloned().fold(f64::MIN, f64::max);
    let z: f64 = logits.iter().map(|l| (l - m).exp()).sum();
    for (l, logit) in c.labels.iter().zip(&logits) {
        let p = (logit - m).exp() / z;
        assert!(
            (l.prob as f64 - p).abs() < 1e-5,
            "{}: {} vs {p}",
            l.label,
            l.prob
        );
    }

    // Stored once, content-addressed in the media folder, served back by id.
    let media = dir.path().join("media");
    let files: Vec<_> = std::fs::read_dir(&media).unwrap().collect();
    assert_eq!(files.len(), 1);
    let name = format!("{}.jpg", blake3::hash(&bytes).to_hex());
    assert!(media.join(&name).is_file(), "expected {name}");
    let (s, served, ct) = get(&app, &format!("/image/{}", c.id)).await;
    assert_eq!((s, ct.as_deref()), (StatusCode::OK, Some("image/jpeg")));
    assert_eq!(served, bytes);

    // The same bytes again: classified, not added.
    let (s, body) = post(&app, "/api/classify?labels=rocket,cat,dog", bytes).await;
    assert_eq!(s, StatusCode::OK);
    let again: Classified = json(&body);
    assert_eq!(
        (again.id, again.added, again.library_size),
        (c.id, false, n + 1)
    );
    // A demo photo already in the library is not added either.
    let (s, body) = post(&app, "/api/classify", photo_bytes("horse.png")).await;
    assert_eq!(s, StatusCode::OK);
    let known: Classified = json(&body);
    assert!(!known.added);
    assert_eq!(
        known.labels.len(),
        clip_examples::labels::DEFAULT_LABELS.len()
    );

    // The upload is on the first library page (newest first).
    let (_, body, _) = get(&app, "/api/library?page=1&per_page=2").await;
    let page: LibraryPage = json(&body);
    assert_eq!(page.items[0].id, c.id);
}

#[tokio::test]
async fn oversize_upload_gets_413() {
    let settings = Settings {
        max_upload: 64 * 1024,
        ..Settings::default()
    };
    let (_d, _m, app) = setup(settings);
    let mut big = photo_bytes("rocket.jpg"); // 112 kB > 64 kB
    big.truncate(100_000);
    let (s, body) = post(&app, "/api/classify?labels=a,b", big).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    error_message(&body);
    // The default limit is 20 MB.
    let (_d, _m, app) = setup(Settings::default());
    let mut huge = photo_bytes("horse.png");
    huge.resize(20 * 1024 * 1024 + 1, 0);
    let (s, body) = post(&app, "/api/classify?labels=a,b", huge).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    error_message(&body);
}

#[tokio::test]
async fn malformed_requests_get_json_4xx() {
    let (_d, _m, app) = setup(Settings::default());
    let n = demo_photos().len();
    let cases: Vec<(Request<Body>, StatusCode)> = vec![
        (
            Request::post("/api/classify?labels=a,b")
                .body(Body::from("garbage bytes, not an image"))
                .unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            Request::post("/api/classify?labels=a,b")
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Request::post("/api/classify?labels=%20,%20")
                .body(Body::from(photo_bytes("horse.png")))
                .unwrap(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Request::get("/api/classify").body(Body::empty()).unwrap(),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            Request::get("/api/search").body(Body::empty()).unwrap(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Request::get("/api/search?q=%20%20")
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Request::get("/api/search?q=cat&k=0")
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Request::get("/api/search?q=cat&k=lots")
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Request::get("/api/search?q=cat&k=100000")
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Request::get(format!("/api/search?q={}", "a".repeat(301)))
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Request::get("/api/library?page=0")
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Request::get("/api/library?page=-1")
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Request::get("/api/library?per_page=100000")
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Request::get("/api/similar/999999")
                .body(Body::empty())
                .unwrap(),
            StatusCode::NOT_FOUND,
        ),
        (
            Request::get("/api/similar/x").body(Body::empty()).unwrap(),
            StatusCode::NOT_FOUND,
        ),
        (
            Request::get("/nope").body(Body::empty()).unwrap(),
            StatusCode::NOT_FOUND,
        ),
    ];
    for (req, want) in cases {
        let what = format!("{} {}", req.method(), req.uri());
        let (s, body, ct) = call(&app, req).await;
        assert_eq!(s, want, "{what}: {}", String::from_utf8_lossy(&body));
        if s != StatusCode::METHOD_NOT_ALLOWED {
            assert_eq!(ct.as_deref(), Some("application/json"), "{what}");
            let msg = error_message(&body);
            assert!(!msg.is_empty(), "{what}");
        }
    }
    // Nothing bad was added; the server still answers.
    let (s, body, _) = get(&app, "/api/info").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json::<Info>(&body).library_size, n);
}

#[tokio::test]
async fn images_only_by_id() {
    let (_d, _m, app) = setup(Settings::default());
    for uri in [
        "/image/../../etc/passwd",
        "/image/..%2F..%2Fetc%2Fpasswd",
        "/image/%2Fetc%2Fpasswd",
        "/image/999999",
        "/image/-1",
        "/image/abc",
        "/image/",
        "/media/../lib.sqlite",
    ] {
        let (s, body, _) = get(&app, uri).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{uri}");
        error_message(&body);
    }
    // Every listed id is served, with a sniffed image content type.
    let (_, body, _) = get(&app, "/api/library?per_page=100").await;
    let page: LibraryPage = json(&body);
    for item in &page.items {
        let (s, bytes, ct) = get(&app, &format!("/image/{}", item.id)).await;
        assert_eq!(s, StatusCode::OK);
        assert!(ct.unwrap().starts_with("image/"));
        assert_eq!(bytes, photo_bytes(&item.name));
    }
}

#[tokio::test]
async fn search_scores_are_dot_products_best_first() {
    let (_d, model, app) = setup(Settings::default());
    let n = demo_photos().len();
    for k in [1, 3, n, n + 5] {
        let (s, body, _) = get(
            &app,
            &format!("/api/search?q=a%20cat%20on%20a%20sofa&k={k}"),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        let hits: Hits = json(&body);
        assert_eq!(hits.results.len(), k.min(n));
        assert!(hits.results.windows(2).all(|w| w[0].score >= w[1].score));
        let text = model.embed_text("a cat on a sofa").unwrap();
        for h in &hits.results {
            let img = model.embed_image(&photo_bytes(&h.name)).unwrap();
            let want = dot(&text, &img);
            assert!(
                (h.score - want).abs() < 1e-5,
                "{}: {} vs {want}",
                h.name,
                h.score
            );
        }
        // The best hit is the best over all photos, computed independently.
        let best = demo_photos()
            .iter()
            .map(|p| {
                dot(
                    &text,
                    &model.embed_image(&std::fs::read(p).unwrap()).unwrap(),
                )
            })
            .fold(f32::MIN, f32::max);
        assert!((hits.results[0].score - best).abs() < 1e-5);
    }
    // Similar: the image itself is left out, scores are image-image dot products.
    let (_, body, _) = get(&app, "/api/library?per_page=100").await;
    let page: LibraryPage = json(&body);
    let first = &page.items[0];
    let (s, body, _) = get(&app, &format!("/api/similar/{}?k=100", first.id)).await;
    assert_eq!(s, StatusCode::OK);
    let hits: Hits = json(&body);
    assert_eq!(hits.results.len(), n - 1);
    assert!(hits.results.iter().all(|h| h.id != first.id));
    let q = model.embed_image(&photo_bytes(&first.name)).unwrap();
    for h in &hits.results {
        let want = dot(&q, &model.embed_image(&photo_bytes(&h.name)).unwrap());
        assert!((h.score - want).abs() < 1e-5);
    }
}

#[tokio::test]
async fn library_paging_counts() {
    let (_d, _m, app) = setup(Settings::default());
    let n = demo_photos().len();
    let per = 2;
    let mut seen = Vec::new();
    for p in 1..=n.div_ceil(per) + 1 {
        let (s, body, _) = get(&app, &format!("/api/library?page={p}&per_page={per}")).await;
        assert_eq!(s, StatusCode::OK);
        let page: LibraryPage = json(&body);
        assert_eq!((page.total, page.pages, page.page), (n, n.div_ceil(per), p));
        let expect = n.saturating_sub((p - 1) * per).min(per);
        assert_eq!(page.items.len(), expect, "page {p}");
        seen.extend(page.items.iter().map(|i| i.id));
    }
    // Every image once, newest (largest id) first.
    assert_eq!(seen.len(), n);
    assert!(seen.windows(2).all(|w| w[0] > w[1]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_searches_succeed() {
    let (_d, _m, app) = setup(Settings::default());
    let mut tasks = Vec::new();
    for i in 0..32 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let uri = format!("/api/search?q=picture%20number%20{i}&k=3");
            let (s, body, _) = get(&app, &uri).await;
            assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
            json::<Hits>(&body).results.len()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 3);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_queue_gets_503_not_a_pile_up() {
    // A slow model with room for one waiting job: of 8 simultaneous searches, one runs, one
    // waits, the rest are refused at once.
    let slow = Arc::new(HashModel {
        delay: Duration::from_millis(300),
        ..HashModel::new(16)
    });
    let (_d, state) = demo_state(slow, Settings::default(), 1);
    let app = router(state);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let (s, body, _) = get(&app, &format!("/api/search?q=q{i}&k=2")).await;
            if s != StatusCode::OK {
                error_message(&body);
            }
            s
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let busy = statuses
        .iter()
        .filter(|s| **s == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    assert_eq!(ok + busy, 8, "{statuses:?}");
    assert!(ok >= 1 && busy >= 1, "{statuses:?}");
    // Once the queue drained, requests succeed again.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (s, _, _) = get(&app, "/api/search?q=again&k=2").await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_uploads_of_one_picture_add_it_once() {
    let (dir, _m, app) = setup(Settings::default());
    let n = demo_photos().len();
    let mut bytes = photo_bytes("coffee.png");
    bytes.extend_from_slice(b"same new picture");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (app, bytes) = (app.clone(), bytes.clone());
        tasks.push(tokio::spawn(async move {
            let (s, body) = post(&app, "/api/classify?labels=a,b", bytes).await;
            assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
            json::<Classified>(&body)
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    assert_eq!(results.iter().filter(|c| c.added).count(), 1);
    assert!(results.iter().all(|c| c.id == results[0].id));
    let (_, body, _) = get(&app, "/api/info").await;
    assert_eq!(json::<Info>(&body).library_size, n + 1);
    assert_eq!(
        std::fs::read_dir(dir.path().join("media")).unwrap().count(),
        1
    );
}

/// A picture another process adds to the library (`gallery index`, a second server) is seen by
/// the running server: counted, found by search, reachable by `similar`; one it removes is gone.
#[tokio::test]
async fn the_server_sees_what_other_processes_commit() {
    use clip_examples::ImageKind;
    use clip_examples::gallery::library::Library;
    let (dir, model, app) = setup(Settings::default());
    let n = demo_photos().len();
    let db = dir.path().join("lib.sqlite");
    let mut other = Library::open(&db, model.model_id(), model.dim()).unwrap();
    let mut bytes = photo_bytes("horse.png");
    bytes.extend_from_slice(b" from another process");
    let vector = model.embed_image(&bytes).unwrap();
    let (id, added) = other.add_upload(&bytes, ImageKind::Png, vector).unwrap();
    assert!(added);

    let (_, body, _) = get(&app, "/api/info").await;
    assert_eq!(json::<Info>(&body).library_size, n + 1);
    let (s, body, _) = get(&app, &format!("/api/similar/{id}?k=3")).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json::<Hits>(&body).results.len(), 3);
    let (s, body, _) = get(&app, &format!("/api/search?q=anything&k={}", n + 1)).await;
    assert_eq!(s, StatusCode::OK);
    assert!(json::<Hits>(&body).results.iter().any(|h| h.id == id));
    let (_, body, _) = get(&app, "/api/library?per_page=100").await;
    let page: LibraryPage = json(&body);
    assert_eq!((page.total, page.items[0].id), (n + 1, id));

    // Removed elsewhere: gone here too.
    assert!(
        other
            .store_mut()
            .remove(feature_store::ImageId(id))
            .unwrap()
    );
    let (s, _, _) = get(&app, &format!("/api/similar/{id}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, body, _) = get(&app, "/api/info").await;
    assert_eq!(json::<Info>(&body).library_size, n);
}

/// A library opened read-only is served: browsing and search work, a picture already in it is
/// classified, a new one is refused (nothing is written, not even to the media folder).
#[tokio::test]
async fn a_read_only_library_is_searched_and_new_pictures_are_refused() {
    use clip_examples::gallery::library::Library;
    use clip_examples::gallery::server::AppState;
    use clip_examples::gallery::worker::Worker;
    let model = Arc::new(HashModel::new(16));
    let (dir, lib) = common::demo_library(model.as_ref());
    drop(lib);
    let db = dir.path().join("lib.sqlite");
    let before = std::fs::read(&db).unwrap();
    let lib = Library::open_existing(&db, model.model_id(), model.dim()).unwrap();
    assert!(lib.is_read_only());
    let app = router(AppState::new(
        Worker::start(model.clone(), 8),
        lib,
        Settings::default(),
    ));
    let (s, body, _) = get(&app, "/api/search?q=a%20cat&k=2").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json::<Hits>(&body).results.len(), 2);
    let (s, body) = post(&app, "/api/classify", photo_bytes("horse.png")).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert!(!json::<Classified>(&body).added);
    let mut new = photo_bytes("horse.png");
    new.push(1);
    let (s, body) = post(&app, "/api/classify", new).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(error_message(&body).contains("read-only"));
    assert!(!dir.path().join("media").exists());
    assert_eq!(std::fs::read(&db).unwrap(), before);
}
