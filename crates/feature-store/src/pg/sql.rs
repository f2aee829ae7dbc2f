//! The PostgreSQL tables of a [`PgStore`](crate::PgStore): schema, header checks and row
//! helpers. The public API is in `mod.rs`; this module only speaks SQL.

use std::collections::HashMap;

use pgvector::Vector;
use postgres::{Client, GenericClient, Statement, Transaction};

use crate::pending::{Pending, now_ns, to_i64};
use crate::store::{ModelInfo, StoreHeader};
use crate::types::{AddOutcome, AddStatus, ContentHash, ImageId, ImageRecord};
use crate::{Error, Result};

/// Schema version written to and expected in the `meta` table.
pub const PG_SCHEMA_VERSION: u32 = 1;
/// Header dtype of a library storing pgvector `vector` (f32) columns.
pub const PG_DTYPE_F32: &str = "pgvector:vector";
/// Header dtype of a library storing pgvector `halfvec` (f16) columns.
pub const PG_DTYPE_F16: &str = "pgvector:halfvec";

/// Key of the transaction-scoped advisory lock every write takes: writers of one library commit
/// one at a time, as SQLite's single writer does (embedding happens outside the transaction).
pub(crate) const WRITE_LOCK: i64 = 0x6665_6174_7374_6f72;

/// Element type of the `embedding` column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dtype {
    F32,
    F16,
}

impl Dtype {
    pub(crate) fn header(self) -> &'static str {
        match self {
            Dtype::F32 => PG_DTYPE_F32,
            Dtype::F16 => PG_DTYPE_F16,
        }
    }
    pub(crate) fn sql_type(self) -> &'static str {
        match self {
            Dtype::F32 => "vector",
            Dtype::F16 => "halfvec",
        }
    }
    /// Cast of a `vector` parameter to the column's type.
    pub(crate) fn cast(self) -> &'static str {
        match self {
            Dtype::F32 => "",
            Dtype::F16 => "::halfvec",
        }
    }
    pub(crate) fn ops(self) -> &'static str {
        match self {
            Dtype::F32 => "vector_ip_ops",
            Dtype::F16 => "halfvec_ip_ops",
        }
    }
}

/// Maps a client error to the crate's error, naming the library by its redacted URL.
pub(crate) trait PgContext<T> {
    fn at(self, url: &str) -> Result<T>;
}

impl<T> PgContext<T> for std::result::Result<T, postgres::Error> {
    fn at(self, url: &str) -> Result<T> {
        self.map_err(|cause| Error::Postgres {
            url: url.to_owned(),
            cause,
        })
    }
}

/// Prepared statements of one connection, by SQL text.
#[derive(Default)]
pub(crate) struct Statements(HashMap<String, Statement>);

impl Statements {
    pub(crate) fn get(
        &mut self,
        client: &mut impl GenericClient,
        sql: &str,
        url: &str,
    ) -> Result<Statement> {
        if let Some(s) = self.0.get(sql) {
            return Ok(s.clone());
        }
        let s = client.prepare(sql).at(url)?;
        self.0.insert(sql.to_owned(), s.clone());
        Ok(s)
    }
}

/// The tables of a library of `dim`-d vectors stored as `dtype`.
pub(crate) fn schema(dim: usize, dtype: Dtype) -> String {
    let t = dtype.sql_type();
    // Vectors that fit in a page are kept inline (no TOAST): an exact scan then reads the table
    // sequentially instead of one TOAST lookup per row (measured 4x slower at 512-d).
    let width = dim * if dtype == Dtype::F32 { 4 } else { 2 };
    let storage = if width <= 6000 {
        "ALTER TABLE images ALTER COLUMN embedding SET STORAGE PLAIN;"
    } else {
        ""
    };
    format!(
        "
CREATE TABLE meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);
CREATE TABLE images (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    hash      bytea NOT NULL UNIQUE CHECK (length(hash) = 32),
    path      text NOT NULL,
    size      bigint NOT NULL,
    mtime_ns  bigint NOT NULL,
    embedding {t}({dim}) NOT NULL
);
CREATE TABLE files (
    seq         bigint GENERATED ALWAYS AS IDENTITY,
    path        text PRIMARY KEY,
    image_id    bigint NOT NULL REFERENCES images(id),
    size        bigint NOT NULL,
    mtime_ns    bigint NOT NULL,
    recorded_ns bigint NOT NULL
);
CREATE INDEX files_by_image ON files (image_id, seq);
{storage}
CREATE TABLE claims (
    hash       bytea PRIMARY KEY,
    worker     text NOT NULL,
    owner_pid  integer NOT NULL,
    expires_at timestamptz NOT NULL
);
"
    )
}

/// The header, or `None` when the database holds no library yet.
pub(crate) fn read_meta(
    client: &mut impl GenericClient,
    url: &str,
) -> Result<Option<(StoreHeader, Dtype)>> {
    let exists: bool = client
        .query_one("SELECT to_regclass('meta') IS NOT NULL", &[])
        .at(url)?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let rows = client.query("SELECT key, value FROM meta", &[]).at(url)?;
    let meta: HashMap<String, String> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let bad = |key: &'static str, problem: String| Error::BadHeader {
        file: url.into(),
        key,
        problem,
    };
    let Some(version) = meta.get("schema_version") else {
        return Err(bad(
            "schema_version",
            "missing: the database has a `meta` table but is not a feature library".into(),
        ));
    };
    let schema_version = match version.parse::<u32>() {
        Ok(v) if v == PG_SCHEMA_VERSION => v,
        _ => {
            return Err(Error::UnsupportedSchema {
                file: url.into(),
                expected: PG_SCHEMA_VERSION,
                found: version.clone(),
            });
        }
    };
    let required = |key: &'static str| -> Result<String> {
        meta.get(key)
            .cloned()
            .ok_or_else(|| bad(key, "missing".into()))
    };
    let model_id = required("model_id")?;
    let dim_text = required("dim")?;
    let dim = match dim_text.parse::<usize>() {
        Ok(d) if d > 0 => d,
        _ => {
            return Err(bad(
                "dim",
                format!("`{dim_text}`, expected a positive integer"),
            ));
        }
    };
    let dtype_text = required("dtype")?;
    let dtype = match dtype_text.as_str() {
        PG_DTYPE_F32 => Dtype::F32,
        PG_DTYPE_F16 => Dtype::F16,
        _ => {
            return Err(Error::UnsupportedDtype {
                file: url.into(),
                expected: "pgvector:vector or pgvector:halfvec",
                found: dtype_text,
            });
        }
    };
    Ok(Some((
        StoreHeader {
            model: ModelInfo { model_id, dim },
            dtype: dtype_text,
            schema_version,
        },
        dtype,
    )))
}

/// Creates the tables and the header (inside the caller's transaction).
pub(crate) fn create(
    tx: &mut Transaction<'_>,
    url: &str,
    model: &ModelInfo,
    dtype: Dtype,
) -> Result<()> {
    let has_vector: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'vector')",
            &[],
        )
        .at(url)?
        .get(0);
    if !has_vector {
        tx.batch_execute("CREATE EXTENSION vector").at(url)?;
    }
    tx.batch_execute(&schema(model.dim, dtype)).at(url)?;
    let put = tx
        .prepare("INSERT INTO meta (key, value) VALUES ($1, $2)")
        .at(url)?;
    for (key, value) in [
        ("schema_version", PG_SCHEMA_VERSION.to_string()),
        ("model_id", model.model_id.clone()),
        ("dim", model.dim.to_string()),
        ("dtype", dtype.header().to_owned()),
    ] {
        tx.execute(&put, &[&key, &value]).at(url)?;
    }
    Ok(())
}

/// Takes the library's write lock for the rest of the transaction.
pub(crate) fn lock(tx: &mut Transaction<'_>, url: &str) -> Result<()> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])
        .at(url)?;
    Ok(())
}

pub(crate) fn hash_from_bytes(url: &str, id: ImageId, bytes: &[u8]) -> Result<ContentHash> {
    <[u8; 32]>::try_from(bytes)
        .map(ContentHash)
        .map_err(|_| Error::BadHeader {
            file: url.into(),
            key: "images.hash",
            problem: format!("{} bytes for image {id}, expected 32", bytes.len()),
        })
}

/// An [`ImageRecord`] from a row `(id, path, hash, size, mtime_ns)`.
pub(crate) fn image_record(url: &str, row: &postgres::Row) -> Result<ImageRecord> {
    let id = ImageId(row.get(0));
    let size: i64 = row.get(3);
    Ok(ImageRecord {
        id,
        path: row.get::<_, String>(1).into(),
        hash: hash_from_bytes(url, id, row.get(2))?,
        size: u64::try_from(size).map_err(|_| Error::BadHeader {
            file: url.into(),
            key: "images.size",
            problem: format!("negative size {size} for image {id}"),
        })?,
        mtime_ns: row.get(4),
    })
}

/// Removes `path` from image `old`; deletes the image if no path holds it any more.
pub(crate) fn detach(
    tx: &mut Transaction<'_>,
    st: &mut Statements,
    url: &str,
    old: ImageId,
    path: &str,
) -> Result<Option<ImageId>> {
    let s = st.get(tx, "DELETE FROM files WHERE path = $1", url)?;
    tx.execute(&s, &[&path]).at(url)?;
    let s = st.get(
        tx,
        "SELECT path, size, mtime_ns FROM files WHERE image_id = $1 ORDER BY seq LIMIT 1",
        url,
    )?;
    match tx.query_opt(&s, &[&old.0]).at(url)? {
        None => {
            let s = st.get(tx, "DELETE FROM images WHERE id = $1", url)?;
            tx.execute(&s, &[&old.0]).at(url)?;
            Ok(Some(old))
        }
        Some(row) => {
            let (p, size, mtime): (String, i64, i64) = (row.get(0), row.get(1), row.get(2));
            let s = st.get(
                tx,
                "UPDATE images SET path = $2, size = $3, mtime_ns = $4 WHERE id = $1 AND path = $5",
                url,
            )?;
            tx.execute(&s, &[&old.0, &p, &size, &mtime, &path])
                .at(url)?;
            Ok(None)
        }
    }
}

/// Records one path inside a transaction. `Ok(None)`: the bytes are new but no vector was given.
pub(crate) fn apply_one(
    tx: &mut Transaction<'_>,
    st: &mut Statements,
    url: &str,
    dtype: Dtype,
    item: &Pending,
) -> Result<Option<AddOutcome>> {
    let s = st.get(tx, "SELECT image_id FROM files WHERE path = $1", url)?;
    let old = tx
        .query_opt(&s, &[&item.path])
        .at(url)?
        .map(|r| ImageId(r.get(0)));
    let s = st.get(tx, "SELECT id FROM images WHERE hash = $1", url)?;
    let hash = &item.hash.0[..];
    let same = tx
        .query_opt(&s, &[&hash])
        .at(url)?
        .map(|r| ImageId(r.get(0)));
    let (size, mtime) = (to_i64(item.size), item.mtime_ns);
    let insert_file = "INSERT INTO files (path, image_id, size, mtime_ns, recorded_ns) VALUES ($1, $2, $3, $4, $5)";
    match (old, same) {
        (Some(o), Some(s)) if o == s => {
            let q = st.get(
                tx,
                "UPDATE files SET size = $2, mtime_ns = $3, recorded_ns = $4 WHERE path = $1",
                url,
            )?;
            tx.execute(&q, &[&item.path, &size, &mtime, &now_ns()])
                .at(url)?;
            let q = st.get(
                tx,
                "UPDATE images SET size = $3, mtime_ns = $4 WHERE id = $1 AND path = $2",
                url,
            )?;
            tx.execute(&q, &[&s.0, &item.path, &size, &mtime]).at(url)?;
            Ok(Some(AddOutcome {
                id: s,
                status: AddStatus::Unchanged,
                removed: None,
            }))
        }
        (_, Some(s)) => {
            let removed = match old {
                Some(o) => detach(tx, st, url, o, &item.path)?,
                None => None,
            };
            let q = st.get(tx, insert_file, url)?;
            tx.execute(&q, &[&item.path, &s.0, &size, &mtime, &now_ns()])
                .at(url)?;
            Ok(Some(AddOutcome {
                id: s,
                status: AddStatus::Duplicate,
                removed,
            }))
        }
        (_, None) => {
            let Some(vector) = &item.vector else {
                return Ok(None);
            };
            let removed = match old {
                Some(o) => detach(tx, st, url, o, &item.path)?,
                None => None,
            };
            let sql = format!(
                "INSERT INTO images (hash, path, size, mtime_ns, embedding) VALUES ($1, $2, $3, $4, $5::vector{}) RETURNING id",
                dtype.cast()
            );
            let q = st.get(tx, &sql, url)?;
            let embedding = Vector::from(vector.clone());
            let id = ImageId(
                tx.query_one(&q, &[&hash, &item.path, &size, &mtime, &embedding])
                    .at(url)?
                    .get(0),
            );
            let q = st.get(tx, insert_file, url)?;
            tx.execute(&q, &[&item.path, &id.0, &size, &mtime, &now_ns()])
                .at(url)?;
            let q = st.get(tx, "DELETE FROM claims WHERE hash = $1", url)?;
            tx.execute(&q, &[&hash]).at(url)?;
            Ok(Some(AddOutcome {
                id,
                status: AddStatus::Added,
                removed,
            }))
        }
    }
}

/// The common case of bulk indexing in one statement per table: every item new (unknown path,
/// unstored bytes, distinct within the batch) and carrying its vector. Returns `None` (having
/// written nothing) when the batch is not of that kind.
pub(crate) fn insert_all_new(
    tx: &mut Transaction<'_>,
    st: &mut Statements,
    url: &str,
    dtype: Dtype,
    items: &[Pending],
) -> Result<Option<Vec<Option<AddOutcome>>>> {
    if items.len() < 2 || items.iter().any(|p| p.vector.is_none()) {
        return Ok(None);
    }
    let paths: Vec<&str> = items.iter().map(|p| p.path.as_str()).collect();
    let hashes: Vec<&[u8]> = items.iter().map(|p| &p.hash.0[..]).collect();
    let distinct_paths: std::collections::HashSet<&str> = paths.iter().copied().collect();
    let distinct_hashes: std::collections::HashSet<&[u8]> = hashes.iter().copied().collect();
    if distinct_paths.len() != items.len() || distinct_hashes.len() != items.len() {
        return Ok(None);
    }
    let s = st.get(
        tx,
        "SELECT EXISTS (SELECT 1 FROM files WHERE path = ANY($1)) OR EXISTS (SELECT 1 FROM images WHERE hash = ANY($2))",
        url,
    )?;
    let known: bool = tx.query_one(&s, &[&paths, &hashes]).at(url)?.get(0);
    if known {
        return Ok(None);
    }
    let sizes: Vec<i64> = items.iter().map(|p| to_i64(p.size)).collect();
    let mtimes: Vec<i64> = items.iter().map(|p| p.mtime_ns).collect();
    let vectors: Vec<Vector> = items
        .iter()
        .map(|p| Vector::from(p.vector.clone().unwrap_or_default()))
        .collect();
    let sql = format!(
        "INSERT INTO images (hash, path, size, mtime_ns, embedding)
         SELECT h, p, s, m, e{} FROM unnest($1::bytea[], $2::text[], $3::int8[], $4::int8[], $5::vector[])
              WITH ORDINALITY AS t(h, p, s, m, e, n)
         ORDER BY n
         RETURNING id, hash",
        dtype.cast()
    );
    let s = st.get(tx, &sql, url)?;
    let rows = tx
        .query(&s, &[&hashes, &paths, &sizes, &mtimes, &vectors])
        .at(url)?;
    let ids: HashMap<Vec<u8>, i64> = rows.iter().map(|r| (r.get(1), r.get(0))).collect();
    let image_ids: Vec<i64> = hashes
        .iter()
        .map(|h| ids.get(*h).copied().unwrap_or_default())
        .collect();
    let recorded = vec![now_ns(); items.len()];
    let s = st.get(
        tx,
        "INSERT INTO files (path, image_id, size, mtime_ns, recorded_ns)
         SELECT p, i, s, m, r FROM unnest($1::text[], $2::int8[], $3::int8[], $4::int8[], $5::int8[])
              WITH ORDINALITY AS t(p, i, s, m, r, n)
         ORDER BY n",
        url,
    )?;
    tx.execute(&s, &[&paths, &image_ids, &sizes, &mtimes, &recorded])
        .at(url)?;
    let s = st.get(tx, "DELETE FROM claims WHERE hash = ANY($1)", url)?;
    tx.execute(&s, &[&hashes]).at(url)?;
    Ok(Some(
        image_ids
            .into_iter()
            .map(|id| {
                Some(AddOutcome {
                    id: ImageId(id),
                    status: AddStatus::Added,
                    removed: None,
                })
            })
            .collect(),
    ))
}

/// Opens a connection; the error names the URL without its password.
pub(crate) fn connect(url: &str, shown: &str) -> Result<Client> {
    let mut config: postgres::Config = url.parse().map_err(|e: postgres::Error| Error::BadUrl {
        url: shown.to_owned(),
        reason: e.to_string(),
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(std::time::Duration::from_secs(10));
    }
    if config.get_application_name().is_none() {
        config.application_name("feature-store");
    }
    config
        .connect(postgres::NoTls)
        .map_err(|cause| Error::PgConnect {
            url: shown.to_owned(),
            cause,
        })
}
