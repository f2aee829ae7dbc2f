//! Bad PostgreSQL locations: typed errors that name the URL without its password, and nothing
//! written. The first two need no server; the others use the test server
//! (`FEATURE_STORE_PG_URL`).

mod common;

use common::{Kind, TestLib, pg_url};
use feature_store::{BackendKind, Error, Library, ModelInfo, OpenOptions, Store};

const SECRET: &str = "s3cret-Pa55";

fn model() -> ModelInfo {
    ModelInfo::new("test/pg", 4)
}

/// `url` with its password replaced by `password`.
fn with_password(url: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (userinfo, host) = rest.rsplit_once('@').unwrap();
    let user = userinfo.split(':').next().unwrap();
    format!("{scheme}://{user}:{password}@{host}")
}

fn assert_hidden(err: &Error, password: &str) {
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(password), "password leaked: {shown}");
}

#[test]
fn a_malformed_url_is_a_typed_error_without_the_password() {
    let url = format!("postgres://clip:{SECRET}@127.0.0.1:notaport/photos");
    assert_eq!(BackendKind::of(url.as_ref()), BackendKind::Postgres);
    let err = Library::open(&url, &model(), &OpenOptions::new()).unwrap_err();
    match &err {
        Error::BadUrl { url, .. } => {
            assert_eq!(url, "postgres://clip:***@127.0.0.1:notaport/photos")
        }
        other => panic!("expected BadUrl, got {other:?}"),
    }
    assert_hidden(&err, SECRET);
    assert_eq!(
        BackendKind::of("library.sqlite".as_ref()),
        BackendKind::Sqlite
    );
}

#[test]
fn a_server_that_is_down_is_a_connect_error_naming_the_url() {
    // Port 1 on the loopback interface: nothing listens there.
    let url = format!("postgres://clip:{SECRET}@127.0.0.1:1/photos?connect_timeout=5");
    let err = Library::open(&url, &model(), &OpenOptions::new()).unwrap_err();
    match &err {
        Error::PgConnect { url, .. } => assert_eq!(
            url,
            "postgres://clip:***@127.0.0.1:1/photos?connect_timeout=5"
        ),
        other => panic!("expected PgConnect, got {other:?}"),
    }
    assert!(err.to_string().contains("127.0.0.1:1/photos"), "{err}");
    assert_hidden(&err, SECRET);
}

#[test]
fn a_wrong_password_or_database_is_a_connect_error_and_writes_nothing() {
    let Some(server) = pg_url("wrong_password") else {
        return;
    };
    let lib = TestLib::new(Kind::Postgres, "wrong_password").unwrap();
    let wrong = with_password(&lib.location, SECRET);
    let err = Library::open(&wrong, &model(), &OpenOptions::new()).unwrap_err();
    assert!(matches!(err, Error::PgConnect { .. }), "{err:?}");
    assert!(
        err.to_string().contains("password authentication failed"),
        "{err}"
    );
    assert_hidden(&err, SECRET);
    assert!(!lib.exists(), "nothing was created");

    let missing_db = common::with_database(&server, "no_such_database_here");
    let err = Library::open(&missing_db, &model(), &OpenOptions::new()).unwrap_err();
    assert!(matches!(err, Error::PgConnect { .. }), "{err:?}");
    assert!(err.to_string().contains("no_such_database_here"), "{err}");
    let real_password = server
        .split_once("://")
        .and_then(|(_, rest)| rest.rsplit_once('@'))
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, p)| p.to_owned())
        .unwrap_or_default();
    if !real_password.is_empty() {
        assert_hidden(&err, &real_password);
        let store = Library::open(&lib.location, &model(), &OpenOptions::new()).unwrap();
        let shown = format!("{store:?} {}", store.location());
        assert!(!shown.contains(&real_password), "{shown}");
    }
}
