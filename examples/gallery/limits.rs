//! Resource limits of the gallery server: uploads admitted before their body is read, body-read
//! deadlines, the upload quota, and the checks on image files before they are served.
//!
//! - [`admit_uploads`]: middleware that answers 413 from `Content-Length` and 503 when the upload
//!   slots are taken, both before a byte of the body is read (so `Expect: 100-continue` clients
//!   never send it), and bounds the time the body may take.
//! - [`Quota`] / [`UploadQuota`]: how much the library may grow through the page per time window.
//! - [`open_image_file`]: a stored image opened without blocking, refused unless it is a regular
//!   file within the size cap.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;
use tokio::time::Sleep;

use super::server::{ApiError, AppState};

/// Connection and body timeouts.
#[derive(Clone, Debug)]
pub struct Timeouts {
    /// Time allowed for a request head, counted from when the server starts waiting for it: a
    /// new connection, or the end of the previous response (so it is also the keep-alive idle
    /// limit). The connection is closed when it runs out.
    pub header_read: Duration,
    /// Time allowed for a whole request body, from the end of its head (408 when it runs out).
    pub body_read: Duration,
    /// Longest pause in a transfer: no byte of a request body arriving, or a response not being
    /// taken by the client, for this long ends the request or connection.
    pub idle: Duration,
    /// On shutdown, time given to requests in progress before their connections are cut.
    pub shutdown_grace: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            header_read: Duration::from_secs(10),
            body_read: Duration::from_secs(120),
            idle: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// How much the library may grow through uploads from the page.
///
/// A new picture counts once, with its size in bytes; pictures already in the library cost
/// nothing. When either limit of the current window would be passed, the upload gets 429.
#[derive(Clone, Debug)]
pub struct Quota {
    /// New pictures per window.
    pub max_count: u64,
    /// Bytes of new pictures per window.
    pub max_bytes: u64,
    /// The window, sliding: what was added longer ago than this no longer counts.
    pub window: Duration,
}

impl Default for Quota {
    fn default() -> Self {
        Self {
            max_count: 500,
            max_bytes: 1 << 30,
            window: Duration::from_secs(3600),
        }
    }
}

/// The runtime side of a [`Quota`]: what was added in the current window.
#[derive(Debug)]
pub struct UploadQuota {
    quota: Quota,
    added: Mutex<VecDeque<(Instant, u64)>>,
}

/// A place in the quota, taken before a new picture is embedded and released unless
/// [`QuotaSlot::commit`] records that it was stored.
pub struct QuotaSlot<'a> {
    owner: &'a UploadQuota,
    at: Instant,
    bytes: u64,
    committed: bool,
}

/// Why an upload does not fit in the quota.
#[derive(Debug)]
pub struct QuotaExceeded {
    /// What was exceeded, for the message.
    pub what: String,
    /// When a place frees up.
    pub retry_after: Duration,
}

impl UploadQuota {
    /// An empty window over `quota`.
    pub fn new(quota: Quota) -> Self {
        Self {
            quota,
            added: Mutex::new(VecDeque::new()),
        }
    }

    /// Takes a place for a new picture of `bytes` bytes.
    pub fn reserve(&self, bytes: u64) -> Result<QuotaSlot<'_>, QuotaExceeded> {
        let now = Instant::now();
        let mut added = self.added.lock().unwrap_or_else(|e| e.into_inner());
        while added
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) >= self.quota.window)
        {
            added.pop_front();
        }
        let count = added.len() as u64;
        let total: u64 = added.iter().map(|(_, b)| b).sum();
        let window = self.quota.window.as_secs();
        let what = if count + 1 > self.quota.max_count {
            Some(format!(
                "upload quota reached: at most {} new pictures per {window} s",
                self.quota.max_count
            ))
        } else if total.saturating_add(bytes) > self.quota.max_bytes {
            Some(format!(
                "upload quota reached: at most {} bytes of new pictures per {window} s",
                self.quota.max_bytes
            ))
        } else {
            None
        };
        if let Some(what) = what {
            // The oldest entry leaves the window first; an upload larger than the whole byte
            // quota never fits, and then the window length is the honest answer.
            let retry_after = added
                .front()
                .map(|(t, _)| self.quota.window.saturating_sub(now.duration_since(*t)))
                .unwrap_or(self.quota.window);
            return Err(QuotaExceeded { what, retry_after });
        }
        added.push_back((now, bytes));
        Ok(QuotaSlot {
            owner: self,
            at: now,
            bytes,
            committed: false,
        })
    }
}

impl QuotaSlot<'_> {
    /// Keeps the place: the picture was stored.
    pub fn commit(mut self) {
        self.committed = true;
    }
}

impl Drop for QuotaSlot<'_> {
    fn drop(&mut self) {
        if !self.committed {
            let mut added = self.owner.added.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(i) = added
                .iter()
                .rposition(|(t, b)| *t == self.at && *b == self.bytes)
            {
                added.remove(i);
            }
        }
    }
}

/// Upload slots: requests with a body hold one while they are handled.
#[derive(Debug)]
pub struct Admission {
    slots: Arc<Semaphore>,
}

impl Admission {
    /// Room for `n` uploads at once (at least 1).
    pub fn new(n: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(n.clamp(1, Semaphore::MAX_PERMITS))),
        }
    }
}

/// Whether a request carries a body (a non-zero `Content-Length`, or a chunked one).
fn has_body(req: &Request) -> bool {
    if req.headers().contains_key(header::TRANSFER_ENCODING) {
        return true;
    }
    match content_length(req.headers()) {
        Some(n) => n > 0,
        None => !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS),
    }
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Middleware: decides on a request with a body before reading it. A declared length over the
/// upload limit gets 413, a full set of upload slots 503 (no body byte read in either case; hyper
/// sends `100 Continue` only when the body is first read). An admitted body must arrive within
/// [`Timeouts::body_read`], with no pause longer than [`Timeouts::idle`].
pub async fn admit_uploads(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if !has_body(&req) {
        return next.run(req).await;
    }
    let max = st.settings.max_upload as u64;
    if content_length(req.headers()).is_some_and(|n| n > max) {
        return ApiError::payload_too_large(max).into_response();
    }
    let Ok(_slot) = Arc::clone(&st.admission.slots).try_acquire_owned() else {
        return ApiError::busy("too many uploads in progress; try again shortly").into_response();
    };
    let t = &st.settings.timeouts;
    let (parts, body) = req.into_parts();
    let body = Body::new(TimedBody::new(body, t.body_read, t.idle));
    next.run(Request::from_parts(parts, body)).await
}

/// A request body that fails with [`BodyTimeout`] when it takes too long in total or pauses too
/// long between two chunks.
struct TimedBody {
    inner: Body,
    total: Pin<Box<Sleep>>,
    pause: Pin<Box<Sleep>>,
    idle: Duration,
}

impl TimedBody {
    fn new(inner: Body, total: Duration, idle: Duration) -> Self {
        Self {
            inner,
            total: Box::pin(tokio::time::sleep(total)),
            pause: Box::pin(tokio::time::sleep(idle)),
            idle,
        }
    }
}

/// The request body did not arrive in time.
#[derive(Debug)]
pub struct BodyTimeout;

impl fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the request body did not arrive in time")
    }
}

impl std::error::Error for BodyTimeout {}

impl HttpBody for TimedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let deadline = tokio::time::Instant::now() + this.idle;
                this.pause.as_mut().reset(deadline);
                Poll::Ready(frame)
            }
            Poll::Pending => {
                if this.total.as_mut().poll(cx).is_ready()
                    || this.pause.as_mut().poll(cx).is_ready()
                {
                    return Poll::Ready(Some(Err(axum::Error::new(BodyTimeout))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Why a stored image is not served.
#[derive(Debug)]
pub enum ImageFileError {
    /// Missing or unreadable.
    Missing,
    /// A FIFO, device, folder or other non-regular file.
    NotRegular,
    /// Larger than the cap.
    TooLarge(u64),
}

/// Opens a stored image for streaming: without blocking (a FIFO does not wait for a writer),
/// then checked on the open handle, so the file served is the file checked: a regular file of
/// at most `cap` bytes. Returns the handle and its length. The check is `safe-file`'s, the one
/// every reader of the workspace uses.
pub fn open_image_file(path: &Path, cap: u64) -> Result<(std::fs::File, u64), ImageFileError> {
    match safe_file::open(path, cap) {
        Ok((file, meta)) => Ok((file, meta.len())),
        Err(safe_file::Error::NotRegular { .. }) => Err(ImageFileError::NotRegular),
        Err(safe_file::Error::TooLarge { .. }) => Err(ImageFileError::TooLarge(cap)),
        Err(_) => Err(ImageFileError::Missing),
    }
}

/// A response body streaming `len` bytes of a file in chunks (the length is fixed when the file
/// is checked: a file that grows is cut there, one that shrinks ends the response early).
pub struct FileBody {
    file: tokio::fs::File,
    left: u64,
    buf: Vec<u8>,
}

impl FileBody {
    /// Streams `len` bytes of `file` from its current position.
    pub fn new(file: std::fs::File, len: u64) -> Self {
        Self {
            file: tokio::fs::File::from_std(file),
            left: len,
            buf: vec![0; 64 * 1024],
        }
    }
}

impl HttpBody for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        let this = &mut *self;
        if this.left == 0 {
            return Poll::Ready(None);
        }
        let want = usize::try_from(this.left)
            .unwrap_or(usize::MAX)
            .min(this.buf.len());
        let mut rb = tokio::io::ReadBuf::new(&mut this.buf[..want]);
        ready!(tokio::io::AsyncRead::poll_read(
            Pin::new(&mut this.file),
            cx,
            &mut rb
        ))?;
        let n = rb.filled().len();
        if n == 0 {
            return Poll::Ready(Some(Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the image file shrank while it was sent",
            ))));
        }
        this.left -= n as u64;
        Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::copy_from_slice(
            rb.filled(),
        )))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.left)
    }
}

/// Parses a byte count: digits with an optional `K`, `M` or `G` (binary multiples, an optional
/// `i`/`B` after it is accepted: `20M`, `512KiB`, `1G`, `1048576`).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = t[digits.len()..].to_ascii_uppercase();
    let n: u64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a byte count (e.g. 20M, 512K, 1G, 1048576)"))?;
    let shift = match unit.trim_end_matches('B').trim_end_matches('I') {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        _ => return Err(format!("`{s}`: the unit must be K, M or G")),
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("`{s}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts() {
        assert_eq!(parse_bytes("1048576"), Ok(1 << 20));
        assert_eq!(parse_bytes("20M"), Ok(20 << 20));
        assert_eq!(parse_bytes("512KiB"), Ok(512 << 10));
        assert_eq!(parse_bytes("1g"), Ok(1 << 30));
        assert!(parse_bytes("12X").is_err());
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("99999999999999G").is_err());
    }

    #[test]
    fn quota_counts_committed_uploads_in_the_window() {
        let q = UploadQuota::new(Quota {
            max_count: 2,
            max_bytes: 100,
            window: Duration::from_secs(60),
        });
        q.reserve(10).unwrap().commit();
        // A released slot (storing failed) gives its place back.
        drop(q.reserve(10).unwrap());
        q.reserve(10).unwrap().commit();
        let e = q.reserve(1).err().unwrap();
        assert!(e.what.contains("2 new pictures"), "{}", e.what);
        assert!(e.retry_after <= Duration::from_secs(60));
        let q = UploadQuota::new(Quota {
            max_count: 10,
            max_bytes: 100,
            window: Duration::from_secs(60),
        });
        q.reserve(60).unwrap().commit();
        assert!(q.reserve(41).err().unwrap().what.contains("100 bytes"));
        q.reserve(40).unwrap().commit();
    }

    #[test]
    fn quota_window_slides() {
        let q = UploadQuota::new(Quota {
            max_count: 1,
            max_bytes: 100,
            window: Duration::from_millis(50),
        });
        q.reserve(1).unwrap().commit();
        assert!(q.reserve(1).is_err());
        std::thread::sleep(Duration::from_millis(60));
        q.reserve(1).unwrap().commit();
    }
}
