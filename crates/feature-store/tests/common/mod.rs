//! The backends the suites run against: a SQLite file in a temporary folder, and a fresh database
//! on the PostgreSQL server named by `FEATURE_STORE_PG_URL` (`tools/pg/pg.sh start` prints it).
//! Without that variable the PostgreSQL half is skipped with a message, except under `CI`, where
//! it fails.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use feature_store::{Library, ModelInfo, OpenOptions, Result};

/// The variable naming the test server (a URL of a database the user may create databases from).
pub const PG_URL_ENV: &str = "FEATURE_STORE_PG_URL";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// The server URL, or `None` (after saying why) when the PostgreSQL half is skipped.
pub fn pg_url(test: &str) -> Option<String> {
    match std::env::var(PG_URL_ENV) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => panic!(
            "{test}: {PG_URL_ENV} is not set under CI; start the server with `tools/pg/pg.sh start` and export the URL it prints"
        ),
        _ => {
            eprintln!(
                "SKIPPED {test} on PostgreSQL: {PG_URL_ENV} is not set (tools/pg/pg.sh start)"
            );
            None
        }
    }
}

/// `url` with its database replaced by `db`.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[after_scheme..]
        .find('/')
        .map_or(base.len(), |i| after_scheme + i);
    format!("{}/{db}{query}", &base[..authority_end])
}

fn admin(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls)
        .unwrap_or_else(|e| panic!("cannot reach the test server at {PG_URL_ENV}: {e}"))
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh, empty library location for one test, removed when dropped.
pub struct TestLib {
    pub kind: Kind,
    /// The path or URL to open.
    pub location: String,
    dir: tempfile::TempDir,
    pg: Option<(String, String)>,
}

impl TestLib {
    /// A new location; `None` when the backend is skipped (PostgreSQL without a server, not in CI).
    pub fn new(kind: Kind, test: &str) -> Option<TestLib> {
        let dir = tempfile::tempdir().unwrap();
        match kind {
            Kind::Sqlite => Some(TestLib {
                kind,
                location: dir.path().join("lib.db").display().to_string(),
                dir,
                pg: None,
            }),
            Kind::Postgres => {
                let url = pg_url(test)?;
                let name = format!(
                    "fs_{}_{}_{}",
                    test.chars()
                        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .take(30)
                        .collect::<String>()
                        .to_lowercase(),
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::Relaxed)
                );
                let mut client = admin(&url);
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .unwrap();
                client
                    .batch_execute(&format!("CREATE DATABASE {name}"))
                    .unwrap();
                Some(TestLib {
                    kind,
                    location: with_database(&url, &name),
                    dir,
                    pg: Some((url, name)),
                })
            }
        }
    }

    pub fn open(&self, model: &ModelInfo, options: &OpenOptions) -> Result<Library> {
        Library::open(&self.location, model, options)
    }

    /// A scratch folder next to the library (photos, other files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// How errors name this library: the file, or the URL without its password.
    pub fn shown(&self) -> PathBuf {
        match self.kind {
            Kind::Sqlite => PathBuf::from(&self.location),
            Kind::Postgres => {
                let url = &self.location;
                let (scheme, rest) = url.split_once("://").unwrap();
                let shown = match rest.split_once('@') {
                    Some((user, host)) => match user.split_once(':') {
                        Some((u, _)) => format!("{scheme}://{u}:***@{host}"),
                        None => url.clone(),
                    },
                    None => url.clone(),
                };
                PathBuf::from(shown)
            }
        }
    }

    /// Runs SQL on the library behind the store's back.
    pub fn exec(&self, sql: &str) {
        match self.kind {
            Kind::Sqlite => {
                let conn = rusqlite::Connection::open(&self.location).unwrap();
                conn.execute_batch(sql).unwrap();
            }
            Kind::Postgres => admin(&self.location).batch_execute(sql).unwrap(),
        }
    }

    /// One row of integers.
    pub fn query_ints(&self, sql: &str) -> Vec<i64> {
        match self.kind {
            Kind::Sqlite => {
                let conn = rusqlite::Connection::open(&self.location).unwrap();
                conn.query_row(sql, [], |r| {
                    (0..r.as_ref().column_count())
                        .map(|i| r.get::<_, i64>(i))
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .unwrap()
            }
            Kind::Postgres => {
                let row = admin(&self.location).query_one(sql, &[]).unwrap();
                (0..row.len()).map(|i| row.get::<_, i64>(i)).collect()
            }
        }
    }

    /// Whether anything of a library exists at the location.
    pub fn exists(&self) -> bool {
        match self.kind {
            Kind::Sqlite => Path::new(&self.location).exists(),
            Kind::Postgres => admin(&self.location)
                .query_one("SELECT to_regclass('meta') IS NOT NULL", &[])
                .unwrap()
                .get(0),
        }
    }

    /// Deletes the library (the location stays usable for a new one).
    pub fn wipe(&self) {
        match self.kind {
            Kind::Sqlite => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", self.location));
                }
            }
            Kind::Postgres => {
                self.exec("DROP TABLE IF EXISTS claims, files, images, meta");
            }
        }
    }
}

impl Drop for TestLib {
    fn drop(&mut self) {
        if let Some((url, name)) = &self.pg
            && let Ok(mut client) = postgres::Client::connect(url, postgres::NoTls)
        {
            let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

/// Two `#[test]`s per function `fn name(kind: Kind)`: `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name(super::common::Kind::Sqlite) } )*
        }
        mod postgres {
            $( #[test] fn $name() {
                if super::common::pg_url(stringify!($name)).is_some() {
                    super::$name(super::common::Kind::Postgres)
                }
            } )*
        }
    };
}
