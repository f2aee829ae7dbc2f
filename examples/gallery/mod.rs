//! The gallery demo: a picture library searchable by text, and its web page.
//!
//! - [`library::Library`]: the feature store file plus a media folder for uploads.
//! - [`worker::Worker`]: the model on its own thread behind a bounded queue.
//! - [`server`]: the axum router (page, JSON API, images by id).

pub mod library;
pub mod server;
pub mod worker;

use std::net::SocketAddr;
use std::sync::Arc;

/// Serves `state` on `listener` until Ctrl-C.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<server::AppState>,
) -> std::io::Result<()> {
    axum::serve(listener, server::router(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}

/// Whether `addr` is a loopback address (the server warns when it is not).
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}
