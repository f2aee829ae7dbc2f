//! [`PgStore`]: a feature library in a PostgreSQL database with pgvector, searched in the server.
//!
//! Client: the synchronous `postgres` crate with the `pgvector` crate's `vector` type. The store's
//! API is synchronous like the SQLite one (`sync` runs an embedder between commits), so the
//! blocking client fits without an async runtime in the callers' signatures; `sqlx` would bring
//! its own runtime, macros and a much larger build for no gain here.

mod sql;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use pgvector::Vector;
use postgres::Client;

use crate::backend::{Backend, Claim};
use crate::index::{Scored, SearchBuffer, SearchOptions, check_f16_range, check_vector};
use crate::library::Store;
use crate::pending::{KnownFile, Pending, now_ns, path_text, to_i64};
use crate::pg_url::redact;
use crate::store::{ModelInfo, OpenOptions, SearchMethod, StoreHeader};
use crate::sync::{DynEmbedder, ProgressSink, SyncOptions, SyncReport};
use crate::types::{AddOutcome, ContentHash, ImageId, ImageRecord, NewImage, SearchHit};
use crate::{Error, Precision, Result};

use sql::{Dtype, PgContext, Statements};
pub use sql::{PG_DTYPE_F16, PG_DTYPE_F32, PG_SCHEMA_VERSION};

struct Conn {
    client: Client,
    statements: Statements,
}

/// A feature library in one PostgreSQL database (pgvector), shared by any number of processes
/// on any number of machines.
///
/// Tables as in the SQLite file: `meta` (header), `images` (one row per distinct content with
/// its `vector(dim)` or `halfvec(dim)` embedding), `files` (every path holding an image's bytes)
/// and `claims` (new bytes a worker is embedding, with its server session and a lease: a claim
/// whose session is gone or whose lease ran out is free again). Every write is one transaction
/// under a transaction-scoped advisory lock, so writers commit one at a time and a killed client
/// leaves nothing half-written. Search runs in the server: an exact `<#>` scan by default, or an
/// HNSW index ([`SearchMethod::Hnsw`]). Nothing is cached in the client, so every handle sees
/// what the others committed.
///
/// The element type is chosen when the library is created ([`Precision::F16`]: `halfvec`) and
/// read from the header afterwards.
pub struct PgStore {
    url: String,
    conn: Mutex<Conn>,
    header: StoreHeader,
    dtype: Dtype,
    search: SearchMethod,
    worker: String,
    read_only: bool,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("url", &self.url)
            .field("header", &self.header)
            .field("search", &self.search)
            .finish()
    }
}

impl PgStore {
    /// Opens the library in the database at `url` (`postgres://user:password@host:port/db`) for
    /// embeddings of `model`, creating its tables if the database has none (and
    /// `options.create`). The database must exist; the `vector` extension is created if missing
    /// (which needs the right to do so). Errors name the URL without its password.
    pub fn open(url: &str, model: &ModelInfo, options: &OpenOptions) -> Result<PgStore> {
        Self::open_inner(url, Some(model), options)
    }

    /// Opens an existing library with the model recorded in its header.
    pub fn open_existing(url: &str, options: &OpenOptions) -> Result<PgStore> {
        Self::open_inner(url, None, &options.clone().create(false))
    }

    /// Reads the header of an existing library.
    pub fn read_header(url: &str) -> Result<StoreHeader> {
        let shown = redact(url);
        let mut client = sql::connect(url, &shown)?;
        match sql::read_meta(&mut client, &shown)? {
            Some((header, _)) => Ok(header),
            None => Err(Error::Missing { file: shown.into() }),
        }
    }

    fn open_inner(url: &str, model: Option<&ModelInfo>, options: &OpenOptions) -> Result<PgStore> {
        let shown = redact(url);
        // Read-only: no tables and no index are created.
        let create = options.create && !options.read_only;
        if model.is_some_and(|m| m.dim == 0) {
            return Err(Error::DimMismatch {
                file: shown.into(),
                stored: 0,
                requested: 0,
            });
        }
        let mut client = sql::connect(url, &shown)?;
        let (header, dtype) = {
            let mut tx = client.transaction().at(&shown)?;
            sql::lock(&mut tx, &shown)?;
            let found = sql::read_meta(&mut tx, &shown)?;
            let found = match (found, model) {
                (Some((header, dtype)), model) => {
                    if let Some(model) = model {
                        if header.model.model_id != model.model_id {
                            return Err(Error::ModelMismatch {
                                file: shown.into(),
                                stored: header.model.model_id,
                                requested: model.model_id.clone(),
                            });
                        }
                        if header.model.dim != model.dim {
                            return Err(Error::DimMismatch {
                                file: shown.into(),
                                stored: header.model.dim,
                                requested: model.dim,
                            });
                        }
                    }
                    (header, dtype)
                }
                (None, Some(model)) if create => {
                    let dtype = match options.precision {
                        Precision::F16 => Dtype::F16,
                        _ => Dtype::F32,
                    };
                    sql::create(&mut tx, &shown, model, dtype)?;
                    let header = StoreHeader {
                        model: model.clone(),
                        dtype: dtype.header().to_owned(),
                        schema_version: PG_SCHEMA_VERSION,
                    };
                    (header, dtype)
                }
                (None, _) => return Err(Error::Missing { file: shown.into() }),
            };
            let has_index: bool = tx
                .query_one(
                    "SELECT to_regclass('images_embedding_hnsw') IS NOT NULL",
                    &[],
                )
                .at(&shown)?
                .get(0);
            // Only a missing index is created, so that opening an indexed library writes
            // nothing (a read-only replica can serve it).
            if let (SearchMethod::Hnsw(p), false, false) =
                (options.search, has_index, options.read_only)
            {
                tx.batch_execute(&format!(
                    "CREATE INDEX images_embedding_hnsw ON images \
                     USING hnsw (embedding {}) WITH (m = {}, ef_construction = {})",
                    found.1.ops(),
                    p.m,
                    p.ef_construction
                ))
                .at(&shown)?;
            }
            tx.commit().at(&shown)?;
            found
        };
        if let SearchMethod::Hnsw(p) = options.search {
            // Relaxed iterative scans keep going past `ef_search` when a filter (the excluded
            // query image) drops candidates; the outer query restores the exact order.
            client
                .batch_execute(&format!(
                    "SET hnsw.ef_search = {}; SET hnsw.iterative_scan = relaxed_order",
                    p.ef_search
                ))
                .at(&shown)?;
        }
        Ok(PgStore {
            url: shown,
            conn: Mutex::new(Conn {
                client,
                statements: Statements::default(),
            }),
            header,
            dtype,
            search: options.search,
            worker: format!("pid{}-{:x}", std::process::id(), now_ns()),
            read_only: options.read_only,
        })
    }

    fn conn(&self) -> MutexGuard<'_, Conn> {
        // The client rolls back an unfinished transaction when it is dropped mid-way; a poisoned
        // lock leaves no transaction open.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The database URL, without its password.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How searches run.
    pub fn search_method(&self) -> SearchMethod {
        self.search
    }

    fn query_one_opt<T>(
        &self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
        get: impl FnOnce(&postgres::Row) -> Result<T>,
    ) -> Result<Option<T>> {
        let mut guard = self.conn();
        let Conn { client, statements } = &mut *guard;
        let s = statements.get(client, sql, &self.url)?;
        match client.query_opt(&s, params).at(&self.url)? {
            Some(row) => get(&row).map(Some),
            None => Ok(None),
        }
    }

    fn rows(
        &self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<Vec<postgres::Row>> {
        let mut guard = self.conn();
        let Conn { client, statements } = &mut *guard;
        let s = statements.get(client, sql, &self.url)?;
        client.query(&s, params).at(&self.url)
    }

    /// Runs `f` in one write transaction (under the library's write lock).
    fn write<T>(
        &mut self,
        f: impl FnOnce(&mut postgres::Transaction<'_>, &mut Statements, &str) -> Result<T>,
    ) -> Result<T> {
        self.writable()?;
        let url = self.url.clone();
        let conn = self.conn.get_mut().unwrap_or_else(|e| e.into_inner());
        let mut tx = conn.client.transaction().at(&url)?;
        sql::lock(&mut tx, &url)?;
        let out = f(&mut tx, &mut conn.statements, &url)?;
        tx.commit().at(&url)?;
        Ok(out)
    }

    fn writable(&self) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly {
                file: self.url.clone().into(),
            });
        }
        Ok(())
    }

    fn check_query(&self, item: &str, vector: &[f32]) -> Result<()> {
        check_vector(&item, vector, self.header.model.dim)?;
        if self.dtype == Dtype::F16 {
            check_f16_range(&item, vector)?;
        }
        Ok(())
    }

    fn known_row(row: &postgres::Row, first: usize) -> KnownFile {
        KnownFile {
            size: u64::try_from(row.get::<_, i64>(first)).unwrap_or(u64::MAX),
            mtime_ns: row.get(first + 1),
            recorded_ns: row.get(first + 2),
        }
    }
}

impl Backend for PgStore {
    fn model(&self) -> &ModelInfo {
        &self.header.model
    }
    fn validate(&self, item: &str, vector: &[f32]) -> Result<()> {
        self.check_query(item, vector)
    }
    fn known_file(&self, path: &str) -> Result<Option<(ImageId, KnownFile)>> {
        self.query_one_opt(
            "SELECT image_id, size, mtime_ns, recorded_ns FROM files WHERE path = $1",
            &[&path],
            |r| Ok((ImageId(r.get(0)), Self::known_row(r, 1))),
        )
    }
    fn known_files(&self) -> Result<Vec<(String, KnownFile)>> {
        let rows = self.rows("SELECT path, size, mtime_ns, recorded_ns FROM files", &[])?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), Self::known_row(r, 1)))
            .collect())
    }
    fn find_hash(&self, hash: &ContentHash) -> Result<Option<ImageId>> {
        let bytes = &hash.0[..];
        self.query_one_opt("SELECT id FROM images WHERE hash = $1", &[&bytes], |r| {
            Ok(ImageId(r.get(0)))
        })
    }
    fn commit_batch(&mut self, pending: &[Pending]) -> Result<Vec<Option<AddOutcome>>> {
        let dtype = self.dtype;
        self.write(|tx, st, url| {
            if let Some(out) = sql::insert_all_new(tx, st, url, dtype, pending)? {
                return Ok(out);
            }
            pending
                .iter()
                .map(|item| sql::apply_one(tx, st, url, dtype, item))
                .collect()
        })
    }
    fn remove_paths(&mut self, paths: &[String]) -> Result<Vec<ImageId>> {
        self.write(|tx, st, url| {
            let mut removed = Vec::new();
            for path in paths {
                let s = st.get(tx, "SELECT image_id FROM files WHERE path = $1", url)?;
                if let Some(row) = tx.query_opt(&s, &[path]).at(url)? {
                    removed.extend(sql::detach(tx, st, url, ImageId(row.get(0)), path)?);
                }
            }
            Ok(removed)
        })
    }
    fn claim(&mut self, hashes: &[ContentHash], lease: Duration) -> Result<Vec<Claim>> {
        self.writable()?;
        let url = self.url.clone();
        let worker = self.worker.clone();
        let conn = self.conn.get_mut().unwrap_or_else(|e| e.into_inner());
        let bytes: Vec<&[u8]> = hashes.iter().map(|h| &h.0[..]).collect();
        let mut tx = conn.client.transaction().at(&url)?;
        // A claim is taken when free, already this worker's, expired (its worker hangs or lost
        // the network), or held by a server session that no longer exists (its worker died: the
        // server ends the session as soon as the client's socket closes, so a killed worker's
        // claims are taken over at once rather than after the lease).
        let mine: Vec<Vec<u8>> = tx
            .query(
                "INSERT INTO claims (hash, worker, owner_pid, expires_at)
                 SELECT h, $2, pg_backend_pid(), clock_timestamp() + make_interval(secs => $3)
                 FROM unnest($1::bytea[]) AS h
                 ON CONFLICT (hash) DO UPDATE
                 SET worker = EXCLUDED.worker, owner_pid = EXCLUDED.owner_pid, expires_at = EXCLUDED.expires_at
                 WHERE claims.expires_at < clock_timestamp() OR claims.worker = EXCLUDED.worker
                    OR NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = claims.owner_pid)
                 RETURNING hash",
                &[&bytes, &worker, &lease.as_secs_f64()],
            )
            .at(&url)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        // Bytes another worker committed meanwhile need no embedding: drop those claims.
        let stored: Vec<Vec<u8>> = tx
            .query("SELECT hash FROM images WHERE hash = ANY($1)", &[&bytes])
            .at(&url)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if !stored.is_empty() {
            tx.execute(
                "DELETE FROM claims WHERE hash = ANY($1) AND worker = $2",
                &[&stored, &worker],
            )
            .at(&url)?;
        }
        tx.commit().at(&url)?;
        Ok(hashes
            .iter()
            .map(|h| {
                let h = &h.0[..];
                if stored.iter().any(|s| s == h) {
                    Claim::Stored
                } else if mine.iter().any(|m| m == h) {
                    Claim::Mine
                } else {
                    Claim::Busy
                }
            })
            .collect())
    }
    fn release(&mut self, hashes: &[ContentHash]) -> Result<()> {
        if hashes.is_empty() {
            return Ok(());
        }
        let url = self.url.clone();
        let worker = self.worker.clone();
        let conn = self.conn.get_mut().unwrap_or_else(|e| e.into_inner());
        let bytes: Vec<&[u8]> = hashes.iter().map(|h| &h.0[..]).collect();
        conn.client
            .execute(
                "DELETE FROM claims WHERE hash = ANY($1) AND worker = $2",
                &[&bytes, &worker],
            )
            .at(&url)?;
        Ok(())
    }
}

impl Store for PgStore {
    fn location(&self) -> String {
        self.url.clone()
    }
    fn model(&self) -> &ModelInfo {
        &self.header.model
    }
    fn header(&self) -> StoreHeader {
        self.header.clone()
    }
    fn len(&self) -> Result<usize> {
        let n = self
            .query_one_opt("SELECT count(*) FROM images", &[], |r| {
                Ok(r.get::<_, i64>(0))
            })?
            .unwrap_or(0);
        Ok(usize::try_from(n).unwrap_or(0))
    }
    fn get(&self, id: ImageId) -> Result<Option<ImageRecord>> {
        self.query_one_opt(
            "SELECT id, path, hash, size, mtime_ns FROM images WHERE id = $1",
            &[&id.0],
            |r| sql::image_record(&self.url, r),
        )
    }
    fn paths(&self, id: ImageId) -> Result<Vec<PathBuf>> {
        let rows = self.rows(
            "SELECT path FROM files WHERE image_id = $1 ORDER BY seq",
            &[&id.0],
        )?;
        Ok(rows
            .iter()
            .map(|r| PathBuf::from(r.get::<_, String>(0)))
            .collect())
    }
    fn list(&self, offset: usize, limit: usize) -> Result<Vec<ImageRecord>> {
        let rows = self.rows(
            "SELECT id, path, hash, size, mtime_ns FROM images ORDER BY id LIMIT $1 OFFSET $2",
            &[&to_i64(limit as u64), &to_i64(offset as u64)],
        )?;
        rows.iter()
            .map(|r| sql::image_record(&self.url, r))
            .collect()
    }
    fn find_hash(&self, hash: &ContentHash) -> Result<Option<ImageId>> {
        Backend::find_hash(self, hash)
    }
    fn find_path(&self, path: &Path) -> Result<Option<ImageId>> {
        let text = path_text(path)?;
        self.query_one_opt(
            "SELECT image_id FROM files WHERE path = $1",
            &[&text],
            |r| Ok(ImageId(r.get(0))),
        )
    }
    fn stored_vector(&self, id: ImageId) -> Result<Option<Vec<f32>>> {
        self.query_one_opt(
            "SELECT embedding::vector FROM images WHERE id = $1",
            &[&id.0],
            |r| Ok(r.get::<_, Vector>(0).to_vec()),
        )
    }
    fn search_scored<'b>(
        &self,
        query: &[f32],
        options: SearchOptions,
        buf: &'b mut SearchBuffer,
    ) -> Result<&'b [Scored]> {
        self.check_query("query", query)?;
        if options.k == 0 {
            buf.set_hits([]);
            return Ok(buf.hits());
        }
        let q = Vector::from(query.to_vec());
        let k = to_i64(options.k as u64);
        let exclude = options.exclude.map(|id| id.0);
        let cast = self.dtype.cast();
        let mut guard = self.conn();
        let Conn { client, statements } = &mut *guard;
        let url = &self.url;
        let rows = match self.search {
            SearchMethod::Exact => {
                // Exact: a scan of every row (no index scan, even where an HNSW index exists),
                // ordered by score, then id, as the SQLite backend orders.
                let sql = format!(
                    "SELECT id, embedding <#> $1::vector{cast} AS d FROM images
                     WHERE $3::int8 IS NULL OR id <> $3 ORDER BY d, id LIMIT $2"
                );
                let mut tx = client.transaction().at(url)?;
                tx.batch_execute("SET LOCAL enable_indexscan = off")
                    .at(url)?;
                let s = statements.get(&mut tx, &sql, url)?;
                let rows = tx.query(&s, &[&q, &k, &exclude]).at(url)?;
                tx.commit().at(url)?;
                rows
            }
            SearchMethod::Hnsw(_) => {
                let sql = format!(
                    "SELECT id, d FROM (
                         SELECT id, embedding <#> $1::vector{cast} AS d FROM images
                         WHERE $3::int8 IS NULL OR id <> $3
                         ORDER BY embedding <#> $1::vector{cast} LIMIT $2) AS near
                     ORDER BY d, id"
                );
                let s = statements.get(client, &sql, url)?;
                client.query(&s, &[&q, &k, &exclude]).at(url)?
            }
        };
        buf.set_hits(rows.iter().map(|r| Scored {
            id: ImageId(r.get(0)),
            // `<#>` is the negated inner product.
            score: -(r.get::<_, f64>(1)) as f32,
        }));
        Ok(buf.hits())
    }
    fn resolve(&self, hits: &[Scored]) -> Result<Vec<SearchHit>> {
        let ids: Vec<i64> = hits.iter().map(|h| h.id.0).collect();
        let rows = self.rows("SELECT id, path FROM images WHERE id = ANY($1)", &[&ids])?;
        let paths: HashMap<i64, String> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        hits.iter()
            .map(|h| {
                let path = paths.get(&h.id.0).ok_or(Error::UnknownId { id: h.id })?;
                Ok(SearchHit {
                    id: h.id,
                    path: PathBuf::from(path),
                    score: h.score,
                })
            })
            .collect()
    }
    fn add_batch(&mut self, images: &[NewImage]) -> Result<Vec<AddOutcome>> {
        let mut pending = Vec::with_capacity(images.len());
        for image in images {
            let path = path_text(&image.path)?;
            self.check_query(&image.path.display().to_string(), &image.vector)?;
            pending.push(Pending {
                path: path.to_owned(),
                size: image.size,
                mtime_ns: image.mtime_ns,
                hash: image.hash,
                vector: Some(image.vector.clone()),
            });
        }
        let outcomes = Backend::commit_batch(self, &pending)?;
        Ok(outcomes.into_iter().flatten().collect())
    }
    fn remove(&mut self, id: ImageId) -> Result<bool> {
        self.write(|tx, _, url| {
            tx.execute("DELETE FROM files WHERE image_id = $1", &[&id.0])
                .at(url)?;
            let n = tx
                .execute("DELETE FROM images WHERE id = $1", &[&id.0])
                .at(url)?;
            Ok(n > 0)
        })
    }
    fn remove_path(&mut self, path: &Path) -> Result<Option<ImageId>> {
        let text = path_text(path)?.to_owned();
        self.remove_paths(std::slice::from_ref(&text))
            .map(|mut removed| removed.pop())
    }
    fn refresh(&mut self) -> Result<(usize, usize)> {
        Ok((0, 0))
    }
    fn is_read_only(&self) -> bool {
        self.read_only
    }
    fn integrity_check(&self) -> Result<Vec<String>> {
        let row = self
            .query_one_opt(
                "SELECT
                   (SELECT count(*) FROM images i WHERE NOT EXISTS (SELECT 1 FROM files f WHERE f.image_id = i.id)),
                   (SELECT count(*) FROM images i WHERE NOT EXISTS (SELECT 1 FROM files f WHERE f.image_id = i.id AND f.path = i.path)),
                   (SELECT count(*) FROM images WHERE length(hash) <> 32)",
                &[],
                |r| Ok((r.get::<_, i64>(0), r.get::<_, i64>(1), r.get::<_, i64>(2))),
            )?
            .unwrap_or_default();
        let mut problems = Vec::new();
        if row.0 > 0 {
            problems.push(format!("{} images without a path", row.0));
        }
        if row.1 > row.0 {
            problems.push(format!(
                "{} images whose first path is not among their files",
                row.1 - row.0
            ));
        }
        if row.2 > 0 {
            problems.push(format!("{} images with a malformed hash", row.2));
        }
        Ok(problems)
    }
    fn sync_dyn(
        &mut self,
        dir: &Path,
        embedder: &mut dyn DynEmbedder,
        options: &SyncOptions,
        progress: &mut dyn ProgressSink,
    ) -> Result<SyncReport> {
        crate::sync::sync(self, dir, embedder, options, progress)
    }
    fn add_file_dyn(&mut self, path: &Path, embedder: &mut dyn DynEmbedder) -> Result<AddOutcome> {
        crate::sync::add_file(self, path, embedder)
    }
}
