//! The gallery's web server (axum): the page, a small JSON API and the images, served by id.
//!
//! | route | what |
//! | --- | --- |
//! | `GET /` | the page (HTML, JS and CSS are embedded in the binary) |
//! | `GET /api/info` | model in use, embedding size, library size, upload limit |
//! | `POST /api/classify?labels=a,b,c` | body: an image file; zero-shot probabilities, and the image joins the library if new |
//! | `GET /api/search?q=TEXT&k=N` | the `k` library images best matching the text, with scores |
//! | `GET /api/similar/{id}?k=N` | the images nearest to a library image |
//! | `GET /api/library?page=P&per_page=N` | the library, newest first, one page at a time |
//! | `GET /image/{id}` | the image file of a library entry (its path is looked up in the store) |
//!
//! Every error is a JSON object `{"error": "..."}` with a 4xx status for bad requests, 413 for
//! oversize uploads, 415 for non-images, 503 when the model queue is full.

use std::sync::{Arc, RwLock};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::library::{Entry, Library};
use super::worker::{Job, Worker, WorkerError};
use crate::{EmbedError, labels, sniff_image, zero_shot};

const INDEX_HTML: &str = include_str!("static/index.html");
const APP_JS: &str = include_str!("static/app.js");
const STYLE_CSS: &str = include_str!("static/style.css");

/// Server settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Largest accepted upload in bytes (larger bodies get 413).
    pub max_upload: usize,
    /// Most results one search may ask for.
    pub max_k: usize,
    /// Most library entries per page.
    pub max_per_page: usize,
    /// Longest accepted query text, in characters.
    pub max_query_chars: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_upload: 20 * 1024 * 1024,
            max_k: 100,
            max_per_page: 100,
            max_query_chars: 300,
        }
    }
}

/// What the handlers share.
pub struct AppState {
    worker: Worker,
    library: RwLock<Library>,
    settings: Settings,
}

impl AppState {
    /// State over a started model worker and an open library.
    pub fn new(worker: Worker, library: Library, settings: Settings) -> Arc<Self> {
        Arc::new(Self {
            worker,
            library: RwLock::new(library),
            settings,
        })
    }

    /// Reads the library in a blocking thread (SQLite and the vector scan block); reads run
    /// concurrently.
    async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Library) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let state = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let lib = state
                .library
                .read()
                .map_err(|_| ApiError::internal("the library lock is poisoned"))?;
            f(&lib)
        })
        .await
        .map_err(|e| ApiError::internal(format!("library task failed: {e}")))?
    }

    /// Changes the library in a blocking thread, alone.
    async fn write<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Library) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let state = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let mut lib = state
                .library
                .write()
                .map_err(|_| ApiError::internal("the library lock is poisoned"))?;
            f(&mut lib)
        })
        .await
        .map_err(|e| ApiError::internal(format!("library task failed: {e}")))?
    }
}

/// The router: page, API and images, with the upload limit applied.
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.settings.max_upload;
    Router::new()
        .route("/", get(page))
        .route("/static/app.js", get(app_js))
        .route("/static/style.css", get(style_css))
        .route("/api/info", get(info))
        .route("/api/classify", post(classify))
        .route("/api/search", get(search))
        .route("/api/similar/{id}", get(similar))
        .route("/api/library", get(library))
        .route("/image/{id}", get(image))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// An error answered as `{"error": message}` with a status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            eprintln!("gallery: {}: {}", self.status, self.message);
        }
        (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

impl From<WorkerError> for ApiError {
    fn from(e: WorkerError) -> Self {
        let status = match &e {
            WorkerError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            WorkerError::Embed(EmbedError::BadImage(_)) => StatusCode::UNPROCESSABLE_ENTITY,
            WorkerError::Embed(EmbedError::BadText(_)) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, e.to_string())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        Self::bad_request(e.body_text())
    }
}

impl From<BytesRejection> for ApiError {
    fn from(e: BytesRejection) -> Self {
        Self::new(e.status(), e.body_text())
    }
}

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'",
            ),
        ],
        INDEX_HTML,
    )
        .into_response()
}

async fn app_js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        APP_JS,
    )
        .into_response()
}

async fn style_css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        STYLE_CSS,
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such page")
}

/// `GET /api/info`.
#[derive(Serialize, Deserialize, Debug)]
pub struct Info {
    /// The model in use.
    pub model: String,
    /// Embedding dimension.
    pub dim: usize,
    /// Images in the library.
    pub library_size: usize,
    /// Largest accepted upload in bytes.
    pub max_upload_bytes: usize,
}

async fn info(State(st): State<Arc<AppState>>) -> Result<Json<Info>, ApiError> {
    let size = st.read(|l| Ok(l.len())).await?;
    let e = st.worker.embedder();
    Ok(Json(Info {
        model: e.model_id().to_owned(),
        dim: e.dim(),
        library_size: size,
        max_upload_bytes: st.settings.max_upload,
    }))
}

#[derive(Deserialize)]
struct ClassifyParams {
    labels: Option<String>,
}

/// One label's probability.
#[derive(Serialize, Deserialize, Debug)]
pub struct LabelProb {
    /// The label as given.
    pub label: String,
    /// Its zero-shot probability.
    pub prob: f32,
}

/// `POST /api/classify`.
#[derive(Serialize, Deserialize, Debug)]
pub struct Classified {
    /// The library id of the image.
    pub id: i64,
    /// Whether the image was new (and was added to the library).
    pub added: bool,
    /// All labels, most probable first.
    pub labels: Vec<LabelProb>,
    /// Images in the library afterwards.
    pub library_size: usize,
}

async fn classify(
    State(st): State<Arc<AppState>>,
    params: Result<Query<ClassifyParams>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Classified>, ApiError> {
    let Query(params) = params?;
    let labels = match params.labels.as_deref() {
        Some(l) => labels::parse_list(l).map_err(|e| ApiError::bad_request(e.to_string()))?,
        None => labels::defaults(),
    };
    let body = body?;
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "empty body: send the image file as the request body",
        ));
    }
    let kind = sniff_image(&body).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not an image: expected JPEG, PNG, GIF, WebP, BMP or TIFF bytes",
        )
    })?;
    let bytes = body.to_vec();
    let hash = blake3::hash(&bytes);
    let known = st.read(move |l| Ok(l.find(hash.as_bytes()))).await?;
    let prompts: Vec<String> = labels.iter().map(|l| labels::prompt(l)).collect();
    let (image_vec, class_vecs, stored) = match known {
        Some((id, vector)) => {
            let out = st.worker.submit(Job::Texts(prompts)).await?;
            (vector, out.texts, Some(id))
        }
        None => {
            let out = st
                .worker
                .submit(Job::ImageAndTexts(bytes.clone(), prompts))
                .await?;
            let v = out
                .image
                .ok_or_else(|| ApiError::internal("no image embedding"))?;
            (v, out.texts, None)
        }
    };
    let ranked = zero_shot(
        &labels,
        &class_vecs,
        &image_vec,
        st.worker.embedder().logit_scale(),
    )
    .map_err(internal)?
    .into_iter()
    .map(|(label, prob)| LabelProb { label, prob })
    .collect();
    let (id, added, library_size) = match stored {
        Some(id) => (id, false, st.read(|l| Ok(l.len())).await?),
        None => {
            st.write(move |l| {
                let (id, added) = l
                    .add_upload(&bytes, kind, image_vec)
                    .map_err(|e| ApiError::internal(format!("cannot store the image: {e:#}")))?;
                Ok((id, added, l.len()))
            })
            .await?
        }
    };
    Ok(Json(Classified {
        id,
        added,
        labels: ranked,
        library_size,
    }))
}

#[derive(Deserialize)]
struct SearchParams {
    q: Option<String>,
    k: Option<usize>,
}

/// One search result.
#[derive(Serialize, Deserialize, Debug)]
pub struct Hit {
    /// Library id.
    pub id: i64,
    /// File name (no directories).
    pub name: String,
    /// Inner product of the unit embeddings (cosine similarity).
    pub score: f32,
}

/// `GET /api/search` and `GET /api/similar/{id}`.
#[derive(Serialize, Deserialize, Debug)]
pub struct Hits {
    /// Best first.
    pub results: Vec<Hit>,
}

async fn search(
    State(st): State<Arc<AppState>>,
    params: Result<Query<SearchParams>, QueryRejection>,
) -> Result<Json<Hits>, ApiError> {
    let Query(p) = params?;
    let q = p.q.as_deref().map(str::trim).unwrap_or("");
    if q.is_empty() {
        return Err(ApiError::bad_request("missing query text `q`"));
    }
    if q.chars().count() > st.settings.max_query_chars {
        return Err(ApiError::bad_request(format!(
            "query too long (at most {} characters)",
            st.settings.max_query_chars
        )));
    }
    let k = check_k(p.k, &st)?;
    let out = st.worker.submit(Job::Texts(vec![q.to_owned()])).await?;
    let v = out
        .texts
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::internal("no text embedding"))?;
    let results = st
        .read(move |l| l.search(&v, k, None).map_err(internal))
        .await?;
    Ok(Json(Hits {
        results: results.into_iter().map(hit).collect(),
    }))
}

async fn similar(
    State(st): State<Arc<AppState>>,
    id: Result<Path<i64>, PathRejection>,
    params: Result<Query<SearchParams>, QueryRejection>,
) -> Result<Json<Hits>, ApiError> {
    let Ok(Path(id)) = id else {
        return Err(ApiError::not_found("no such image"));
    };
    let k = check_k(params?.0.k, &st)?;
    let results = st
        .read(move |l| {
            let v = l
                .vector(id)
                .map_err(internal)?
                .ok_or_else(|| ApiError::not_found("no such image"))?;
            l.search(&v, k, Some(id)).map_err(internal)
        })
        .await?;
    Ok(Json(Hits {
        results: results.into_iter().map(hit).collect(),
    }))
}

fn check_k(k: Option<usize>, st: &AppState) -> Result<usize, ApiError> {
    let k = k.unwrap_or(12);
    if k == 0 || k > st.settings.max_k {
        return Err(ApiError::bad_request(format!(
            "k must be between 1 and {}",
            st.settings.max_k
        )));
    }
    Ok(k)
}

fn hit((e, score): (Entry, f32)) -> Hit {
    Hit {
        id: e.id,
        name: e.name,
        score,
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(e.to_string())
}

#[derive(Deserialize)]
struct PageParams {
    page: Option<usize>,
    per_page: Option<usize>,
}

/// One library entry.
#[derive(Serialize, Deserialize, Debug)]
pub struct Item {
    /// Library id.
    pub id: i64,
    /// File name (no directories).
    pub name: String,
}

/// `GET /api/library`.
#[derive(Serialize, Deserialize, Debug)]
pub struct LibraryPage {
    /// Images in the library.
    pub total: usize,
    /// This page (1-based).
    pub page: usize,
    /// Entries per page.
    pub per_page: usize,
    /// Number of pages (at least 1).
    pub pages: usize,
    /// The entries of this page, newest first.
    pub items: Vec<Item>,
}

async fn library(
    State(st): State<Arc<AppState>>,
    params: Result<Query<PageParams>, QueryRejection>,
) -> Result<Json<LibraryPage>, ApiError> {
    let Query(p) = params?;
    let page = p.page.unwrap_or(1);
    let per_page = p.per_page.unwrap_or(24);
    if page == 0 {
        return Err(ApiError::bad_request("page numbers start at 1"));
    }
    if per_page == 0 || per_page > st.settings.max_per_page {
        return Err(ApiError::bad_request(format!(
            "per_page must be between 1 and {}",
            st.settings.max_per_page
        )));
    }
    let (total, items) = st
        .read(move |l| {
            let total = l.len();
            let offset = (page - 1).saturating_mul(per_page);
            Ok((total, l.page(offset, per_page).map_err(internal)?))
        })
        .await?;
    Ok(Json(LibraryPage {
        total,
        page,
        per_page,
        pages: total.div_ceil(per_page).max(1),
        items: items
            .into_iter()
            .map(|e| Item {
                id: e.id,
                name: e.name,
            })
            .collect(),
    }))
}

async fn image(
    State(st): State<Arc<AppState>>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Response, ApiError> {
    // The file path comes from the store, never from the request.
    let Ok(Path(id)) = id else {
        return Err(ApiError::not_found("no such image"));
    };
    let path = st
        .read(move |l| l.path(id).map_err(internal))
        .await?
        .ok_or_else(|| ApiError::not_found("no such image"))?;
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|_| ApiError::not_found("the image file is no longer there"))?;
    let mime = sniff_image(&bytes)
        .map(|k| k.mime())
        .unwrap_or("application/octet-stream");
    let mut resp = bytes.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    Ok(resp)
}
