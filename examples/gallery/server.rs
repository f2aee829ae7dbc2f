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
//! Every error is a JSON object `{"error": "..."}` with a 4xx status for bad requests, 401 without
//! the access token (when one is set), 403 for a foreign host or origin, 408 for a body that does
//! not arrive in time, 413 for oversize uploads, 415 for non-images, 429 over the upload quota,
//! 503 when the model queue or the upload slots are full; 500s name no server path (the details
//! go to the server's log).
//!
//! Every request passes, in order: [`guard::harden`] (headers and JSON bodies of every response),
//! [`guard::check`] (size of the head, host, origin, token), [`limits::admit_uploads`] (a body is
//! admitted or refused before it is read), then the route.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::guard::{self, Access, Guard};
use super::library::{Entry, Library};
use super::limits::{self, Admission, ImageFileError, Quota, Timeouts, UploadQuota};
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
    /// Who may use the server: access token and allowed host names.
    pub access: Access,
    /// Requests with a body handled at once; more get 503 before their body is read.
    pub max_uploads_in_flight: usize,
    /// How much the library may grow through uploads.
    pub quota: Quota,
    /// Connection and body timeouts.
    pub timeouts: Timeouts,
    /// Largest image file `/image/{id}` serves, in bytes.
    pub max_image_bytes: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_upload: 20 * 1024 * 1024,
            max_k: 100,
            max_per_page: 100,
            max_query_chars: MAX_QUERY_CHARS,
            access: Access::default(),
            max_uploads_in_flight: 8,
            quota: Quota::default(),
            timeouts: Timeouts::default(),
            // The same cap as `gallery index` (feature-store's default).
            max_image_bytes: 64 << 20,
        }
    }
}

/// What the handlers share.
pub struct AppState {
    worker: Worker,
    library: RwLock<Library>,
    pub(crate) settings: Settings,
    pub(crate) admission: Admission,
    quota: UploadQuota,
}

impl AppState {
    /// State over a started model worker and an open library.
    pub fn new(worker: Worker, library: Library, settings: Settings) -> Arc<Self> {
        Arc::new(Self {
            worker,
            library: RwLock::new(library),
            admission: Admission::new(settings.max_uploads_in_flight),
            quota: UploadQuota::new(settings.quota.clone()),
            settings,
        })
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Reloads the in-memory index when another process (`gallery index`, another server) has
    /// committed to the library: asked before every read and write, so counts, searches and ids
    /// are current. Costs one `PRAGMA data_version` when nothing changed.
    fn catch_up(&self) -> Result<(), ApiError> {
        let changed = self
            .library
            .read()
            .map_err(|_| ApiError::internal("the library lock is poisoned"))?
            .changed()
            .map_err(|e| ApiError::internal(format!("{e:#}")))?;
        if changed {
            self.library
                .write()
                .map_err(|_| ApiError::internal("the library lock is poisoned"))?
                .refresh_if_changed()
                .map_err(|e| ApiError::internal(format!("{e:#}")))?;
        }
        Ok(())
    }

    /// Reads the library in a blocking thread (SQLite and the vector scan block); reads run
    /// concurrently.
    async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Library) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let state = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            state.catch_up()?;
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
            lib.refresh_if_changed()
                .map_err(|e| ApiError::internal(format!("{e:#}")))?;
            f(&mut lib)
        })
        .await
        .map_err(|e| ApiError::internal(format!("library task failed: {e}")))?
    }
}

/// The router: page, API and images, with the upload limit applied, checked as for a loopback
/// listener (see [`router_for`]).
pub fn router(state: Arc<AppState>) -> Router {
    router_for(state, None)
}

/// The router for a server listening on `bind` (`None`: loopback): a non-loopback address is also
/// accepted as `Host`.
pub fn router_for(state: Arc<AppState>, bind: Option<SocketAddr>) -> Router {
    let limit = state.settings.max_upload;
    let guard = Arc::new(Guard::new(&state.settings.access, bind));
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
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            limits::admit_uploads,
        ))
        .layer(axum::middleware::from_fn_with_state(guard, guard::check))
        .layer(axum::middleware::from_fn(guard::harden))
        .with_state(state)
}

/// An error answered as `{"error": message}` with a status.
///
/// A 500 shows the client a fixed message and writes its detail (which may name files) to the
/// server's log; nothing else is logged, so a flood of refused requests writes no log lines.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    detail: Option<String>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            detail: None,
            headers: Vec::new(),
        }
    }
    pub(crate) fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }
    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    pub(crate) fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }
    pub(crate) fn payload_too_large(max: u64) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the upload is larger than the server's limit of {max} bytes"),
        )
    }
    /// 503 with `Retry-After: 1`.
    pub(crate) fn busy(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
            .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))
    }
    /// 500: `detail` goes to the log only.
    fn internal(detail: impl Into<String>) -> Self {
        Self {
            detail: Some(detail.into()),
            ..Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal server error (details are in the server's log)",
            )
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(detail) = &self.detail {
            eprintln!("gallery: {}: {detail}", self.status);
        }
        let mut resp = (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response();
        for (name, value) in self.headers {
            resp.headers_mut().insert(name, value);
        }
        resp
    }
}

impl From<WorkerError> for ApiError {
    fn from(e: WorkerError) -> Self {
        match &e {
            WorkerError::Busy(_) => Self::busy(e.to_string()),
            WorkerError::Embed(EmbedError::BadImage(_)) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            }
            WorkerError::Embed(EmbedError::BadText(_)) => Self::bad_request(e.to_string()),
            _ => Self::internal(e.to_string()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        Self::bad_request(e.body_text())
    }
}

impl From<BytesRejection> for ApiError {
    fn from(e: BytesRejection) -> Self {
        // A body cut by the admission middleware's deadline is the client's slowness: 408.
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            if s.is::<limits::BodyTimeout>() {
                return Self::new(StatusCode::REQUEST_TIMEOUT, s.to_string());
            }
            source = s.source();
        }
        Self::new(e.status(), e.body_text())
    }
}

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'; \
                 frame-ancestors 'none'; form-action 'self'",
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
    // The buffer the body was collected into, without a copy.
    let bytes = Vec::from(body);
    let hash = blake3::hash(&bytes);
    let (known, read_only) = st
        .read(move |l| Ok((l.find(hash.as_bytes()), l.is_read_only())))
        .await?;
    if known.is_none() && read_only {
        return Err(ApiError::forbidden(
            "the library is read-only (the server may not write it): new pictures cannot be added",
        ));
    }
    // A new picture takes a place in the upload quota before the model runs; the place is given
    // back unless the picture is stored.
    let slot = match known {
        Some(_) => None,
        None => Some(st.quota.reserve(bytes.len() as u64).map_err(|e| {
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, e.what).with_header(
                header::RETRY_AFTER,
                HeaderValue::from(e.retry_after.as_secs().max(1)),
            )
        })?),
    };
    let prompts: Vec<String> = labels
        .iter()
        .map(|l| st.worker.embedder().prompt(l))
        .collect();
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
        st.worker.embedder().score_function(),
    )
    .map_err(internal)?
    .into_iter()
    .map(|(label, prob)| LabelProb { label, prob })
    .collect();
    let (id, added, library_size) = match stored {
        Some(id) => (id, false, st.read(|l| Ok(l.len())).await?),
        None => {
            let (id, added, size) = st
                .write(move |l| {
                    let (id, added) = l.add_upload(&bytes, kind, image_vec).map_err(|e| {
                        ApiError::internal(format!("cannot store the image: {e:#}"))
                    })?;
                    Ok((id, added, l.len()))
                })
                .await?;
            if let (Some(slot), true) = (slot, added) {
                slot.commit();
            }
            (id, added, size)
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
    let q = query_text(p.q.as_deref().unwrap_or(""), st.settings.max_query_chars)
        .map_err(ApiError::bad_request)?;
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

/// Most characters of a search text (the server's default `max_query_chars`, and the command
/// line's limit).
pub const MAX_QUERY_CHARS: usize = 300;

/// The search text to use, trimmed: an empty or blank text, or one over `max_chars` characters,
/// is refused with the same words on the command line (`gallery search`) and in the web API.
pub fn query_text(raw: &str, max_chars: usize) -> Result<&str, String> {
    let q = raw.trim();
    if q.is_empty() {
        return Err(
            "the query text is empty: give words to search for, e.g. \"a dog on a beach\"".into(),
        );
    }
    if q.chars().count() > max_chars {
        return Err(format!("query too long (at most {max_chars} characters)"));
    }
    Ok(q)
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
    let cap = st.settings.max_image_bytes;
    // Opened without blocking and checked on the handle (a regular file within the cap), then
    // streamed: a replaced file can cost neither a stuck thread nor its size in memory.
    let (file, len, head) = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Seek};
        let (mut file, len) = limits::open_image_file(&path, cap)?;
        let mut head = [0u8; 16];
        let mut n = 0;
        while n < head.len() {
            match file.read(&mut head[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(_) => return Err(ImageFileError::Missing),
            }
        }
        file.rewind().map_err(|_| ImageFileError::Missing)?;
        Ok((file, len, head[..n].to_vec()))
    })
    .await
    .map_err(|e| ApiError::internal(format!("image task failed: {e}")))?
    .map_err(|e| match e {
        ImageFileError::Missing => ApiError::not_found("the image file is no longer there"),
        ImageFileError::NotRegular => ApiError::not_found("the image is not a regular file"),
        ImageFileError::TooLarge(cap) => ApiError::not_found(format!(
            "the image file is larger than the server's limit of {cap} bytes"
        )),
    })?;
    let mime = sniff_image(&head)
        .map(|k| k.mime())
        .ok_or_else(|| ApiError::not_found("the image file is no longer a picture"))?;
    let mut resp = Body::new(limits::FileBody::new(file, len)).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    Ok(resp)
}
