//! The HTTP API. For now: `GET /healthz`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::{extract::State, routing::get, Json, Router};

/// Live numbers the API reports.
#[derive(Debug, Default)]
pub struct Health {
    pub active_sessions: AtomicUsize,
    pub recordings_published: AtomicUsize,
}

async fn healthz(State(h): State<Arc<Health>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "status": "ok",
        "active_sessions": h.active_sessions.load(Ordering::Relaxed),
        "recordings_published": h.recordings_published.load(Ordering::Relaxed),
    }))
}

/// The router (also used by tests without a socket).
pub fn router(health: Arc<Health>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .with_state(health)
}

/// Serves the API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    health: Arc<Health>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(health))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Binds the API address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}
