//! The Hugging Face hub: its cache on disk and (feature `hub`) a downloader that speaks its
//! file-resolve protocol.
//!
//! The cache layout is the hub's own, shared with Python's `huggingface_hub`:
//! `<cache>/models--<owner>--<name>/{refs/<revision>, blobs/<etag>, snapshots/<commit>/<file>}`.
//! A file already in the cache is used without any request. A download goes to
//! `blobs/<etag>.incomplete` and resumes from there after an interruption (HTTP range request);
//! it becomes the blob only once its size, and its sha256 when the etag is one (as for every
//! weights file the hub stores in LFS), match what the server announced, so a damaged download is
//! never loaded.
//!
//! Environment: `HF_ENDPOINT` (default `https://huggingface.co`), `HF_HUB_CACHE` or `HF_HOME`
//! (cache at `$HF_HOME/hub`, default `~/.cache/huggingface/hub`), `HF_HUB_OFFLINE=1`, `HF_TOKEN`
//! (for gated repositories; never logged).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clip_model::HubId;

use crate::error::{Error, Result};

/// The hub's public endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// A download's progress, as reported to a [`ProgressFn`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadProgress {
    /// The file being downloaded.
    pub file: String,
    /// Bytes on disk so far (including a resumed part).
    pub done: u64,
    /// The announced size.
    pub total: u64,
}

/// Called as a download advances.
pub type ProgressFn = Arc<dyn Fn(&DownloadProgress) + Send + Sync>;

/// Where and how to get hub files.
#[derive(Clone)]
pub struct Hub {
    endpoint: String,
    cache: PathBuf,
    offline: bool,
    token: Option<String>,
    timeout: Duration,
    progress_bar: bool,
    progress: Option<ProgressFn>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("endpoint", &self.endpoint)
            .field("cache", &self.cache)
            .field("offline", &self.offline)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Default for Hub {
    fn default() -> Self {
        Self::from_env()
    }
}

impl Hub {
    /// Settings from the environment (see the module docs); a progress bar on a terminal.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let endpoint = var("HF_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
        let offline =
            var("HF_HUB_OFFLINE").is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
        Self {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            cache: default_cache_dir(),
            offline,
            token: var("HF_TOKEN"),
            timeout: Duration::from_secs(30),
            progress_bar: true,
            progress: None,
        }
    }

    /// Uses another cache folder.
    pub fn with_cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache = dir.into();
        self
    }

    /// Uses another server (a mirror, or a test server).
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = endpoint.into().trim_end_matches('/').to_owned();
        self
    }

    /// Never uses the network (also set by `HF_HUB_OFFLINE=1`).
    pub fn offline(mut self, offline: bool) -> Self {
        self.offline = self.offline || offline;
        self
    }

    /// How long to wait for a connection or for the next bytes before giving up (default 30 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether to draw a progress bar on standard error when it is a terminal (default on).
    pub fn progress_bar(mut self, show: bool) -> Self {
        self.progress_bar = show;
        self
    }

    /// Calls `f` as downloads advance.
    pub fn on_progress(mut self, f: ProgressFn) -> Self {
        self.progress = Some(f);
        self
    }

    /// The cache folder.
    pub fn cache_dir(&self) -> &Path {
        &self.cache
    }

    /// Whether the network is off.
    pub fn is_offline(&self) -> bool {
        self.offline
    }

    /// The URL a file is resolved from.
    pub fn url(&self, id: &HubId, file: &str) -> String {
        format!(
            "{}/{}/resolve/{}/{}",
            self.endpoint, id.repo, id.revision, file
        )
    }

    /// The file from the cache, if it is there (no network).
    pub fn cached(&self, id: &HubId, file: &str) -> Option<PathBuf> {
        let repo = self.repo_dir(id);
        let commit = self.commit_of(id)?;
        let p = repo.join("snapshots").join(commit).join(file);
        p.is_file().then_some(p)
    }

    /// Whether an earlier request found that the repository has no such file.
    pub fn known_missing(&self, id: &HubId, file: &str) -> bool {
        self.commit_of(id).is_some_and(|c| {
            self.repo_dir(id)
                .join(".no_exist")
                .join(c)
                .join(file)
                .exists()
        })
    }

    /// The file, from the cache or downloaded into it. `Ok(None)` when the repository has no
    /// such file (HTTP 404, remembered in the cache so the next run asks nothing).
    pub fn get(&self, id: &HubId, file: &str) -> Result<Option<PathBuf>> {
        if let Some(p) = self.cached(id, file) {
            return Ok(Some(p));
        }
        if self.known_missing(id, file) {
            return Ok(None);
        }
        if self.offline {
            return Err(Error::Offline {
                repo: id.repo.clone(),
                file: file.to_owned(),
                url: self.url(id, file),
                cache: self.cache.clone(),
            });
        }
        self.download(id, file)
    }

    /// The file, from the cache or downloaded; a missing file is an error naming the URL.
    pub fn require(&self, id: &HubId, file: &str) -> Result<PathBuf> {
        self.get(id, file)?.ok_or_else(|| Error::NotOnHub {
            url: self.url(id, file),
            status: 404,
            hint: "",
        })
    }

    fn repo_dir(&self, id: &HubId) -> PathBuf {
        self.cache
            .join(format!("models--{}", id.repo.replace('/', "--")))
    }

    /// The commit a revision stands for in the cache: the revision itself when it is a full
    /// commit hash, else what `refs/<revision>` says.
    fn commit_of(&self, id: &HubId) -> Option<String> {
        if is_commit(&id.revision) {
            return Some(id.revision.clone());
        }
        let r = std::fs::read_to_string(self.repo_dir(id).join("refs").join(&id.revision)).ok()?;
        let r = r.trim();
        is_commit(r).then(|| r.to_owned())
    }

    #[cfg(not(feature = "hub"))]
    fn download(&self, id: &HubId, file: &str) -> Result<Option<PathBuf>> {
        Err(Error::HubDisabled {
            id: id.to_string(),
            cache: self.cache.clone(),
            url: self.url(id, file),
        })
    }

    #[cfg(feature = "hub")]
    fn download(&self, id: &HubId, file: &str) -> Result<Option<PathBuf>> {
        download::fetch(self, id, file)
    }
}

/// `HF_HUB_CACHE`, else `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else
/// `~/.cache/huggingface/hub`.
pub fn default_cache_dir() -> PathBuf {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(d) = var("HF_HUB_CACHE") {
        return d;
    }
    if let Some(d) = var("HF_HOME") {
        return d.join("hub");
    }
    let base = var("XDG_CACHE_HOME")
        .or_else(|| var("HOME").map(|h| h.join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    base.join("huggingface").join("hub")
}

fn is_commit(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |cause| Error::Io {
        path: path.to_owned(),
        cause,
    }
}

#[cfg(feature = "hub")]
mod download {
    //! The file-resolve protocol: `HEAD <endpoint>/<repo>/resolve/<revision>/<file>` gives the
    //! commit (`X-Repo-Commit`), the etag (`X-Linked-Etag` or `ETag`), the size
    //! (`X-Linked-Size` or `Content-Length`) and, for files in LFS, a redirect to where the bytes
    //! are; `GET` (with `Range` to resume) fetches them.

    use std::io::{Read, Write};

    use sha2::Digest;

    use super::*;

    /// What a `HEAD` announced.
    struct Meta {
        commit: String,
        etag: String,
        size: u64,
        /// Where to `GET` the bytes (the redirect target, or the resolve URL itself).
        location: String,
    }

    pub(super) fn fetch(hub: &Hub, id: &HubId, file: &str) -> Result<Option<PathBuf>> {
        let url = hub.url(id, file);
        let meta = match head(hub, &agent(hub, 0), &url)? {
            Some(m) => m,
            None => {
                remember_missing(hub, id, file);
                return Ok(None);
            }
        };
        let repo = hub.repo_dir(id);
        let blobs = repo.join("blobs");
        std::fs::create_dir_all(&blobs).map_err(io(&blobs))?;
        let blob = blobs.join(&meta.etag);
        let complete = std::fs::metadata(&blob).is_ok_and(|m| m.len() == meta.size);
        if !complete {
            get(hub, &url, &meta, &blob, file)?;
        }
        let snapshot = repo.join("snapshots").join(&meta.commit);
        std::fs::create_dir_all(&snapshot).map_err(io(&snapshot))?;
        let target = snapshot.join(file);
        link(&blob, &target, &meta.etag)?;
        if id.revision != meta.commit {
            let refs = repo.join("refs");
            std::fs::create_dir_all(&refs).map_err(io(&refs))?;
            write_atomic(&refs.join(&id.revision), meta.commit.as_bytes())?;
        }
        Ok(Some(target))
    }

    /// An HTTP client with the hub's timeouts, following up to `redirects` redirects.
    fn agent(hub: &Hub, redirects: u32) -> ureq::Agent {
        ureq::AgentBuilder::new()
            .timeout_connect(hub.timeout)
            .timeout_read(hub.timeout)
            .timeout_write(hub.timeout)
            .redirects(redirects)
            .build()
    }

    fn request(hub: &Hub, agent: &ureq::Agent, method: &str, url: &str) -> ureq::Request {
        let mut r = agent
            .request(method, url)
            .set("Accept-Encoding", "identity")
            .set("User-Agent", concat!("clip-rs/", env!("CARGO_PKG_VERSION")));
        if let Some(t) = &hub.token {
            r = r.set("Authorization", &format!("Bearer {t}"));
        }
        r
    }

    fn head(hub: &Hub, agent: &ureq::Agent, url: &str) -> Result<Option<Meta>> {
        let mut current = url.to_owned();
        // Relative redirects (a renamed repository) are followed; an absolute one points at the
        // bytes and ends the walk.
        for _ in 0..5 {
            let resp = match request(hub, agent, "HEAD", &current).call() {
                Ok(r) => r,
                Err(ureq::Error::Status(404, _)) => return Ok(None),
                Err(e) => return Err(http_error(url, e)),
            };
            let header = |k: &str| resp.header(k).map(str::to_owned);
            let location = header("location");
            if (300..400).contains(&resp.status())
                && let Some(loc) = location.as_deref().filter(|l| l.starts_with('/'))
                && header("x-linked-etag").is_none()
            {
                current = join_url(&current, loc);
                continue;
            }
            let commit = header("x-repo-commit").ok_or_else(|| Error::Download {
                url: url.to_owned(),
                reason: "the server did not say which commit this is (no X-Repo-Commit header): \
                         not a hub server?"
                    .into(),
            })?;
            let etag = header("x-linked-etag")
                .or_else(|| header("etag"))
                .map(|e| e.trim_start_matches("W/").trim_matches('"').to_owned())
                .filter(|e| {
                    !e.is_empty() && e.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
                .ok_or_else(|| Error::Download {
                    url: url.to_owned(),
                    reason: "no usable ETag header".into(),
                })?;
            let size = header("x-linked-size")
                .or_else(|| header("content-length"))
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| Error::Download {
                    url: url.to_owned(),
                    reason: "no size (X-Linked-Size / Content-Length header)".into(),
                })?;
            if !is_commit(&commit) {
                return Err(Error::Download {
                    url: url.to_owned(),
                    reason: format!("X-Repo-Commit `{commit}` is not a commit hash"),
                });
            }
            let location = match location {
                Some(l) if (300..400).contains(&resp.status()) => join_url(&current, &l),
                _ => current.clone(),
            };
            return Ok(Some(Meta {
                commit,
                etag,
                size,
                location,
            }));
        }
        Err(Error::Download {
            url: url.to_owned(),
            reason: "too many redirects".into(),
        })
    }

    fn get(hub: &Hub, url: &str, meta: &Meta, blob: &Path, file: &str) -> Result<()> {
        let partial = blob.with_extension("incomplete");
        let mut have = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
        if have > meta.size {
            have = 0;
        }
        // The bytes may live on another host (the redirect target): follow its redirects too.
        let follow = agent(hub, 5);
        let mut req = request(hub, &follow, "GET", &meta.location);
        if have > 0 {
            req = req.set("Range", &format!("bytes={have}-"));
        }
        let resp = match req.call() {
            Ok(r) => r,
            Err(ureq::Error::Status(416, _)) if have > 0 => {
                // The partial file is no prefix of this blob: start again.
                let _ = std::fs::remove_file(&partial);
                return get(hub, url, meta, blob, file);
            }
            Err(e) => return Err(http_error(url, e)),
        };
        let append = have > 0 && resp.status() == 206;
        if !append {
            have = 0;
        }
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .append(append)
            .write(true)
            .truncate(!append)
            .open(&partial)
            .map_err(io(&partial))?;
        let bar = Bar::new(hub, file, url, have, meta.size);
        let mut reader = resp.into_reader().take(meta.size - have + 1);
        let mut buf = vec![0u8; 1 << 16];
        let mut done = have;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    let _ = out.sync_all();
                    return Err(Error::Download {
                        url: url.to_owned(),
                        reason: format!(
                            "{e} after {done} of {} bytes; the next run resumes from there",
                            meta.size
                        ),
                    });
                }
            };
            out.write_all(&buf[..n]).map_err(io(&partial))?;
            done += n as u64;
            bar.set(done);
        }
        out.sync_all().map_err(io(&partial))?;
        drop(out);
        bar.finish();
        if done != meta.size {
            let keep = done < meta.size;
            if !keep {
                let _ = std::fs::remove_file(&partial);
            }
            return Err(Error::Corrupt {
                url: url.to_owned(),
                what: "size",
                expected: meta.size.to_string(),
                found: format!(
                    "{done}{}",
                    if keep {
                        " (connection closed early; the next run resumes)"
                    } else {
                        ""
                    }
                ),
            });
        }
        if meta.etag.len() == 64 {
            let found = sha256_file(&partial)?;
            if !found.eq_ignore_ascii_case(&meta.etag) {
                let _ = std::fs::remove_file(&partial);
                return Err(Error::Corrupt {
                    url: url.to_owned(),
                    what: "sha256",
                    expected: meta.etag.clone(),
                    found,
                });
            }
        }
        std::fs::rename(&partial, blob).map_err(io(blob))?;
        Ok(())
    }

    fn sha256_file(path: &Path) -> Result<String> {
        let mut f = std::fs::File::open(path).map_err(io(path))?;
        let mut h = sha2::Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).map_err(io(path))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
    }

    /// `snapshots/<commit>/<file>` → `../../blobs/<etag>` (a copy where links are not possible).
    fn link(blob: &Path, target: &Path, etag: &str) -> Result<()> {
        if target.is_file() {
            return Ok(());
        }
        let _ = std::fs::remove_file(target);
        #[cfg(unix)]
        {
            let depth = target
                .strip_prefix(
                    blob.parent()
                        .and_then(Path::parent)
                        .unwrap_or(Path::new("")),
                )
                .map(|p| p.components().count().saturating_sub(1))
                .unwrap_or(2);
            let mut rel = PathBuf::new();
            for _ in 0..depth {
                rel.push("..");
            }
            rel.push("blobs");
            rel.push(etag);
            if std::os::unix::fs::symlink(&rel, target).is_ok() && target.is_file() {
                return Ok(());
            }
            let _ = std::fs::remove_file(target);
        }
        std::fs::copy(blob, target).map(|_| ()).map_err(io(target))
    }

    fn remember_missing(hub: &Hub, id: &HubId, file: &str) {
        // Only when the commit is known: a branch may gain the file later.
        if let Some(c) = hub.commit_of(id) {
            let dir = hub.repo_dir(id).join(".no_exist").join(c);
            if std::fs::create_dir_all(&dir).is_ok() {
                let _ = std::fs::write(dir.join(file), b"");
            }
        }
    }

    fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
        // The temporary file is removed on any failure (a full disk, a vanished folder).
        safe_file::write_atomic(path, bytes).map_err(|e| match e {
            safe_file::Error::Io { path, cause } => Error::Io { path, cause },
            other => Error::File(other),
        })
    }

    fn join_url(base: &str, loc: &str) -> String {
        if loc.starts_with("http://") || loc.starts_with("https://") {
            return loc.to_owned();
        }
        // scheme://host[:port] of the base, then the absolute path.
        let after_scheme = base.find("://").map(|i| i + 3).unwrap_or(0);
        let host_end = base[after_scheme..]
            .find('/')
            .map(|i| i + after_scheme)
            .unwrap_or(base.len());
        format!("{}{}", &base[..host_end], loc)
    }

    fn http_error(url: &str, e: ureq::Error) -> Error {
        match e {
            ureq::Error::Status(status @ (401 | 403), _) => Error::NotOnHub {
                url: url.to_owned(),
                status,
                hint: " (a gated or private repository: accept its licence on the hub and set HF_TOKEN)",
            },
            ureq::Error::Status(status, _) => Error::Download {
                url: url.to_owned(),
                reason: format!("the server answered HTTP {status}"),
            },
            ureq::Error::Transport(t) => {
                let cause = std::error::Error::source(&t)
                    .map(|c| format!(": {c}"))
                    .unwrap_or_default();
                Error::Download {
                    url: url.to_owned(),
                    reason: format!(
                        "{}{}{cause}; without network, download this file by hand and pass its \
                         path (`--model FILE` or CLIP_MODEL=FILE)",
                        t.kind(),
                        t.message().map(|m| format!(": {m}")).unwrap_or_default(),
                    ),
                }
            }
        }
    }

    /// A terminal progress bar and/or the caller's callback.
    struct Bar {
        bar: Option<indicatif::ProgressBar>,
        callback: Option<ProgressFn>,
        file: String,
        total: u64,
    }

    impl Bar {
        fn new(hub: &Hub, file: &str, url: &str, done: u64, total: u64) -> Self {
            use std::io::IsTerminal;
            let bar = if hub.progress_bar && std::io::stderr().is_terminal() {
                let b = indicatif::ProgressBar::new(total);
                if let Ok(style) = indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                ) {
                    b.set_style(style.progress_chars("=> "));
                }
                b.set_message(format!("downloading {file}"));
                b.set_position(done);
                Some(b)
            } else {
                if hub.progress_bar {
                    eprintln!(
                        "downloading {url} ({:.1} MB{})",
                        total as f64 / 1e6,
                        if done > 0 {
                            format!(", resuming at {:.1} MB", done as f64 / 1e6)
                        } else {
                            String::new()
                        }
                    );
                }
                None
            };
            let me = Self {
                bar,
                callback: hub.progress.clone(),
                file: file.to_owned(),
                total,
            };
            me.set(done);
            me
        }

        fn set(&self, done: u64) {
            if let Some(b) = &self.bar {
                b.set_position(done);
            }
            if let Some(f) = &self.callback {
                f(&DownloadProgress {
                    file: self.file.clone(),
                    done,
                    total: self.total,
                });
            }
        }

        fn finish(&self) {
            if let Some(b) = &self.bar {
                b.finish_and_clear();
            }
        }
    }
}
