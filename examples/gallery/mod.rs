//! The gallery demo: a picture library searchable by text, and its web page.
//!
//! - [`cli`]: the `gallery` command line (`index`, `search`, `similar`, `serve`).
//! - [`library::Library`]: the feature store file plus a media folder for uploads.
//! - [`worker::Worker`]: the model on its own thread behind a bounded queue.
//! - [`server`]: the axum router (page, JSON API, images by id).
//! - [`guard`], [`limits`], [`listen`]: who may use the server, how much it takes on, and the
//!   connection loop with its timeouts (see `SECURITY.md`).

pub mod cli;
pub mod guard;
pub mod library;
pub mod limits;
pub mod listen;
pub mod options;
pub mod server;
pub mod worker;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

/// Serves `state` on `listener` until Ctrl-C.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<server::AppState>,
) -> std::io::Result<()> {
    serve_until(listener, state, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}

/// Serves `state` on `listener` until `shutdown` completes, then finishes within
/// [`limits::Timeouts::shutdown_grace`]. A listener on a non-loopback address is refused unless
/// the settings hold an access token.
pub async fn serve_until(
    listener: tokio::net::TcpListener,
    state: Arc<server::AppState>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    let exposed = !is_loopback(&addr);
    if exposed && state.settings().access.token.is_none() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("listening on {addr}, reachable from other machines, needs an access token"),
        ));
    }
    let timeouts = state.settings().timeouts.clone();
    let app = server::router_for(state, exposed.then_some(addr));
    listen::serve_router(listener, app, timeouts, shutdown).await
}

/// Whether `addr` is a loopback address (the server warns when it is not).
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}
