//! The HTTP query API (documented in docs/api.md):
//!
//! - `GET /healthz`
//! - `GET /api/v1/recordings?record_dn=&dn=&participant=&call_uuid=&ani=&dnis=&geo=&since=&until=&status=&limit=&offset=`
//! - `GET /api/v1/recordings/{id}` (recording id or Call-ID): its metadata.json
//! - `GET /api/v1/recordings/{id}/files/{name}`: an audio file, with HTTP Range
//! - `GET /api/v1/sessions`: the sessions being recorded now

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query as QueryParams, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{routing::get, Json, Router};

use crate::recording::RecordingMeta;
use crate::store::query::Query;
use crate::store::Index;

/// Live numbers the API reports.
#[derive(Debug, Default)]
pub struct Health {
    pub active_sessions: AtomicUsize,
    pub recordings_published: AtomicUsize,
    /// The sessions being recorded now, by session id.
    pub active: std::sync::Mutex<std::collections::BTreeMap<u64, ActiveSessionInfo>>,
}

/// One active session, as `GET /api/v1/sessions` shows it.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ActiveSessionInfo {
    pub recording_id: String,
    pub call_id: String,
    pub started_at: String,
    pub source: String,
    pub transport: String,
    pub recorded: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_dn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geo_location: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direction: Option<String>,
    pub correlation: std::collections::BTreeMap<String, String>,
    /// Aors (or names) of the participants known at the start.
    pub participants: Vec<String>,
    pub streams: usize,
}

/// What the API handlers share.
#[derive(Debug, Clone)]
pub struct ApiState {
    pub health: Arc<Health>,
    /// The SQLite index.
    pub index_path: PathBuf,
    /// The file drop root.
    pub drop_root: PathBuf,
    /// Open connections to the index, reused across requests.
    pub pool: Arc<IndexPool>,
}

/// Index connections kept open between requests: opening one (file,
/// WAL, schema check) costs more than most queries, and a QM tool or a
/// load generator polling the API would pay it per request. Connections
/// older than [`IndexPool::MAX_AGE`] are dropped, so an index replaced on
/// disk is picked up.
#[derive(Default)]
pub struct IndexPool {
    idle: std::sync::Mutex<Vec<(Index, std::time::Instant)>>,
}

impl std::fmt::Debug for IndexPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IndexPool")
    }
}

impl IndexPool {
    const MAX_AGE: std::time::Duration = std::time::Duration::from_secs(30);
    const MAX_IDLE: usize = 8;

    fn take(&self) -> Option<(Index, std::time::Instant)> {
        let mut idle = self.idle.lock().ok()?;
        while let Some((index, opened)) = idle.pop() {
            if opened.elapsed() < Self::MAX_AGE {
                return Some((index, opened));
            }
        }
        None
    }

    fn give(&self, index: Index, opened: std::time::Instant) {
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < Self::MAX_IDLE {
                idle.push((index, opened));
            }
        }
    }
}

async fn healthz(State(st): State<ApiState>) -> Json<serde_json::Value> {
    let h = &st.health;
    Json(serde_json::json!({
        "status": "ok",
        "active_sessions": h.active_sessions.load(Ordering::Relaxed),
        "recordings_published": h.recordings_published.load(Ordering::Relaxed),
    }))
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (
        status,
        Json(serde_json::json!({ "error": message.to_string() })),
    )
        .into_response()
}

/// Runs a read on the index off the async threads.
async fn with_index<T: Send + 'static>(
    st: &ApiState,
    f: impl FnOnce(&Index) -> Result<T, String> + Send + 'static,
) -> Result<Option<T>, Response> {
    let path = st.index_path.clone();
    let pool = st.pool.clone();
    let r = tokio::task::spawn_blocking(move || {
        let (index, opened) = match pool.take() {
            Some(reused) => reused,
            None => match Index::open_existing(&path) {
                Ok(Some(index)) => (index, std::time::Instant::now()),
                Ok(None) => return Ok(None),
                Err(e) => return Err(e.to_string()),
            },
        };
        let r = f(&index).map(Some);
        pool.give(index, opened);
        r
    })
    .await;
    match r {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e)),
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e)),
    }
}

async fn recordings(State(st): State<ApiState>, QueryParams(q): QueryParams<Query>) -> Response {
    if let Err(e) = q.validate() {
        return error(StatusCode::BAD_REQUEST, e);
    }
    let (limit, offset) = (q.limit.unwrap_or(100).min(1000), q.offset.unwrap_or(0));
    let found = with_index(&st, move |i| i.search(&q).map_err(|e| e.to_string())).await;
    match found {
        Ok(Some((recs, total))) => Json(serde_json::json!({
            "total": total,
            "limit": limit,
            "offset": offset,
            "recordings": recs,
        }))
        .into_response(),
        Ok(None) => Json(serde_json::json!({
            "total": 0, "limit": limit, "offset": offset, "recordings": [],
        }))
        .into_response(),
        Err(r) => r,
    }
}

async fn find(st: &ApiState, id: String) -> Result<RecordingMeta, Response> {
    match with_index(st, move |i| i.get(&id).map_err(|e| e.to_string())).await? {
        Some(Some(m)) => Ok(m),
        _ => Err(error(StatusCode::NOT_FOUND, "no such recording")),
    }
}

async fn recording(State(st): State<ApiState>, Path(id): Path<String>) -> Response {
    match find(&st, id).await {
        Ok(m) => Json(m).into_response(),
        Err(r) => r,
    }
}

/// `bytes=a-b`, `bytes=a-`, `bytes=-n` for a file of `len` bytes: the
/// inclusive range, `Err(())` if unsatisfiable, `Ok(None)` to serve it all
/// (absent, malformed or multi-range headers).
fn parse_range(value: Option<&str>, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let range = match (a.parse::<u64>().ok(), b.parse::<u64>().ok()) {
        (Some(s), Some(e)) if s <= e => (s, e.min(len.saturating_sub(1))),
        (Some(s), None) if b.is_empty() => (s, len.saturating_sub(1)),
        (None, Some(n)) if a.is_empty() && n > 0 => (len.saturating_sub(n), len.saturating_sub(1)),
        _ => return Ok(None),
    };
    if len == 0 || range.0 >= len {
        return Err(());
    }
    Ok(Some(range))
}

async fn file(
    State(st): State<ApiState>,
    Path((id, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let meta = match find(&st, id).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    // Only a file the recording lists, by its exact name: never a path.
    let Some(f) = meta
        .files
        .iter()
        .find(|f| f.name == name && !name.contains(['/', '\\']))
    else {
        return error(StatusCode::NOT_FOUND, "no such file in this recording");
    };
    let path = st.drop_root.join(&meta.path).join(&f.name);
    let Ok(mut file) = tokio::fs::File::open(&path).await else {
        return error(StatusCode::NOT_FOUND, "file missing from the drop");
    };
    let len = match file.metadata().await {
        Ok(m) => m.len(),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    let ctype = if f.name.ends_with(".opus") {
        "audio/ogg"
    } else {
        "audio/wav"
    };
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    match parse_range(range, len) {
        Err(()) => Response::builder()
            .status(StatusCode::RANGE_NOT_SATISFIABLE)
            .header(header::CONTENT_RANGE, format!("bytes */{len}"))
            .body(Body::empty())
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()),
        Ok(None) => Response::builder()
            .header(header::CONTENT_TYPE, ctype)
            .header(header::CONTENT_LENGTH, len)
            .header(header::ACCEPT_RANGES, "bytes")
            .body(Body::from_stream(tokio_util::io::ReaderStream::new(file)))
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()),
        Ok(Some((a, b))) => {
            if let Err(e) = file.seek(std::io::SeekFrom::Start(a)).await {
                return error(StatusCode::INTERNAL_SERVER_ERROR, e);
            }
            let part = file.take(b - a + 1);
            Response::builder()
                .status(StatusCode::PARTIAL_CONTENT)
                .header(header::CONTENT_TYPE, ctype)
                .header(header::CONTENT_LENGTH, b - a + 1)
                .header(header::ACCEPT_RANGES, "bytes")
                .header(header::CONTENT_RANGE, format!("bytes {a}-{b}/{len}"))
                .body(Body::from_stream(tokio_util::io::ReaderStream::new(part)))
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
        }
    }
}

async fn sessions(State(st): State<ApiState>) -> Json<serde_json::Value> {
    let list: Vec<ActiveSessionInfo> = st
        .health
        .active
        .lock()
        .map(|a| a.values().cloned().collect())
        .unwrap_or_default();
    Json(serde_json::json!({ "sessions": list }))
}

/// The router (also used by tests without a socket).
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/api/v1/recordings", get(recordings))
        .route("/api/v1/recordings/{id}", get(recording))
        .route("/api/v1/recordings/{id}/files/{name}", get(file))
        .route("/api/v1/sessions", get(sessions))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Binds the API address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 100), Ok(None));
        assert_eq!(parse_range(Some("bytes=0-9"), 100), Ok(Some((0, 9))));
        assert_eq!(parse_range(Some("bytes=90-"), 100), Ok(Some((90, 99))));
        assert_eq!(parse_range(Some("bytes=-10"), 100), Ok(Some((90, 99))));
        assert_eq!(parse_range(Some("bytes=50-500"), 100), Ok(Some((50, 99))));
        assert_eq!(parse_range(Some("bytes=100-"), 100), Err(()));
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), Ok(None));
        assert_eq!(parse_range(Some("bytes=9-1"), 100), Ok(None));
        assert_eq!(parse_range(Some("items=0-1"), 100), Ok(None));
    }
}
