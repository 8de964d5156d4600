//! The HTTP query API (documented in docs/api.md):
//!
//! - `GET /healthz`
//! - `GET /api/v1/recordings?record_dn=&dn=&participant=&call_uuid=&ani=&dnis=&geo=&since=&until=&status=&limit=&offset=`
//! - `GET /api/v1/recordings/{id}` (recording id or Call-ID): its metadata.json
//! - `GET /api/v1/recordings/{id}/files/{name}`: an audio file, with HTTP Range
//!   (decrypted when encrypted at rest, with `[encryption] identities`)
//! - `DELETE /api/v1/recordings/{id}`, `PUT`/`DELETE
//!   /api/v1/recordings/{id}/hold`, `GET /api/v1/recordings/{id}/verify`:
//!   deletion, legal hold, integrity ([`lifecycle`], admin)
//! - `GET /api/v1/sessions`: the sessions being recorded now
//! - `GET /api/v1/audit`: the audit trail (admin)
//! - `GET`/`POST /api/v1/tokens`, `DELETE /api/v1/tokens/{name}`: API
//!   tokens (admin)
//! - the web page ([`web`], docs/web.md): `/`, `/recordings/{id}`,
//!   `/live`, `/assets/*`; `POST /api/v1/login`, `POST /api/v1/logout`,
//!   `GET /api/v1/me`; `GET /api/v1/recordings/{id}/files/{name}/peaks`
//! - issue 14 ([`integration`]): `POST /api/v1/call-events`
//!   (integration), `GET /api/v1/webhooks/deliveries` and
//!   `POST /api/v1/webhooks/deliveries/{id}/retry` (admin), `GET /metrics`
//!   (viewer and above)
//!
//! Access control ([`access`]; docs/api.md): once a token exists, every
//! request but `/healthz` needs `Authorization: Bearer <token>` (else
//! 401); each endpoint needs a right of the token's role (else 403), and
//! sees only the recordings of the token's scope (others are 404). Every
//! request that reads or changes recordings is written to the audit trail
//! before it is answered. With `[http] cert`/`key` the API speaks only
//! HTTPS ([`https`]). `srs serve` refuses a non-loopback address without
//! tokens ([`ApiSetup::prepare`]).
//!
//! Load on the API is bounded everywhere, so that no client, however many
//! connections it opens, can exhaust the server's memory or descriptors or
//! delay recording (`[http]` limits, docs/api.md):
//!
//! - [`spawn`] runs it on a thread and runtime of its own at nice 10: its
//!   work never runs on the SIP task's threads nor queues in their blocking
//!   pool, and under CPU pressure the media and SIP threads come first;
//! - connections: at most `max_connections` ([`Listener`]); more get a
//!   canned `503` and are closed; each is closed after `idle_timeout_ms`
//!   with nothing read or written ([`Conn`]);
//! - requests: at most `max_requests` answered at once, a JSON body holding
//!   its slot until sent ([`admit`]); others wait `queue_timeout_ms`, then
//!   `503` with `Retry-After`; each has `request_timeout_ms` in all;
//! - the index: `index_connections` connections at most, each used by one
//!   blocking thread at a time ([`IndexPool`]) and reused, never leaked;
//! - a listing page: at most `max_page_bytes` of JSON.
//!
//! Every error is `{"error": "..."}` ([`json_errors`]).

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path as FsPath, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Extension, Path, Query as QueryParams, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use crate::auth::{tokens, Right, Role, Scope, TokenSet};
use crate::config::{Config, HttpConfig};
use crate::filing::DnEntry;
use crate::recording::RecordingMeta;
use crate::store::audit::{self, AuditQuery};
use crate::store::{Index, IndexError};

pub mod access;
pub mod https;
// The web page (docs/web.md).
pub mod integration;
pub mod lifecycle;
pub mod peaks;
pub mod signin;
pub mod web;

pub use access::{Caller, ClientAddr, TOKEN_RELOAD};
use tokio_rustls::TlsAcceptor;

/// Why the API cannot start as configured.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("HTTPS (http.cert, http.key): {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("refusing to serve the HTTP API on {addr} without access control: no API token exists. Make one (`srs token add NAME --role admin`), or listen on a loopback address (http.listen), or set http.allow_unauthenticated = true (then anyone who reaches {addr} can search and download every recording)")]
    Exposed { addr: SocketAddr },
    #[error("refusing to serve the HTTP API on {addr}: the API tokens cannot be read from the index {path} ({reason}), so access control cannot be enforced")]
    TokensUnreadable {
        addr: SocketAddr,
        path: String,
        reason: String,
    },
    #[error("{0}")]
    Index(String),
    #[error("cannot start the API's access thread: {0}")]
    Thread(std::io::Error),
    #[error("{0}")]
    Crypt(#[from] crate::store::crypt::CryptError),
}

/// What the API needs, checked before it listens: the HTTPS set-up, the
/// tokens in force, and whether the address may be served at all.
pub struct ApiSetup {
    index_path: crate::store::IndexAt,
    drop_root: PathBuf,
    http: HttpConfig,
    directory: Arc<[DnEntry]>,
    tls: Option<TlsAcceptor>,
    tokens: TokenSet,
    audit: bool,
    /// Holds and deletions (issue 15).
    life: crate::lifecycle::Lifecycle,
    /// `[encryption] identities`: decrypts downloads of encrypted files.
    decryptor: Option<Arc<crate::store::crypt::Decryptor>>,
    /// Issue 14: the events thread (call events, webhook retries).
    events: Option<crate::events::worker::Events>,
    /// Issue 16: the object store files are served from when the drop has
    /// no local copy.
    objects: Option<crate::store::objects::Objects>,
}

impl std::fmt::Debug for ApiSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiSetup")
            .field("index_path", &self.index_path)
            .field("https", &self.tls.is_some())
            .field("tokens", &self.tokens.len())
            .finish()
    }
}

impl ApiSetup {
    /// Reads the HTTPS certificate and the tokens, and refuses a
    /// non-loopback address when no token exists (unless
    /// `http.allow_unauthenticated`) or the tokens cannot be read.
    pub fn prepare(config: &Config) -> Result<ApiSetup, SetupError> {
        let http = &config.http;
        let tls = https::acceptor(http)?;
        let path = config
            .index_at()
            .map_err(|e| SetupError::Index(e.to_string()))?;
        let addr = http.listen;
        let exposed = !addr.ip().is_loopback();
        let read = match Index::open_existing_at(&path) {
            Ok(Some(ix)) => TokenSet::load(ix.conn())
                .map(|t| (t, audit::head(ix.conn()).ok().flatten()))
                .map_err(|e| e.to_string()),
            Ok(None) => Ok((TokenSet::default(), None)),
            Err(e) => Err(e.to_string()),
        };
        let tokens = match read {
            Ok((tokens, head)) => {
                if let Some((seq, hash)) = head {
                    // An anchor for the chain, kept by whatever keeps the log.
                    tracing::info!(seq, hash, "audit trail head");
                }
                tokens
            }
            Err(reason) if exposed => {
                return Err(SetupError::TokensUnreadable {
                    addr,
                    path: path.to_string(),
                    reason,
                })
            }
            Err(reason) => {
                tracing::error!(index = %path, error = reason,
                    "the API tokens cannot be read: every API request is refused (401) until they can");
                TokenSet::locked()
            }
        };
        if exposed && !tokens.required {
            if !http.allow_unauthenticated {
                return Err(SetupError::Exposed { addr });
            }
            tracing::warn!(%addr,
                "the HTTP API is open to anyone who reaches it: no API token exists and http.allow_unauthenticated = true");
        } else if exposed && tls.is_none() {
            tracing::warn!(%addr,
                "API tokens cross the network in clear: set http.cert and http.key (HTTPS)");
        }
        tracing::info!(
            https = tls.is_some(),
            tokens = tokens.len(),
            access_control = tokens.required,
            "HTTP API access"
        );
        let decryptor = crate::store::crypt::Decryptor::from_files(&config.encryption.identities)?
            .map(Arc::new);
        let objects = match &config.storage.object {
            Some(c) => Some(
                crate::store::objects::Objects::from_config(c)
                    .map_err(|e| SetupError::Index(e.to_string()))?,
            ),
            None => None,
        };
        Ok(ApiSetup {
            life: crate::lifecycle::Lifecycle::new(
                config.storage.recordings.clone(),
                path.clone(),
                config.directory.clone().into(),
            )
            .with_webhooks(&config.webhooks)
            .with_node(config.node.id())
            .with_objects(objects.clone()),
            objects,
            decryptor,
            index_path: path,
            drop_root: config.storage.recordings.clone(),
            http: http.clone(),
            directory: config.directory.clone().into(),
            tls,
            tokens,
            audit: true,
            events: None,
        })
    }

    /// Issue 14: the events thread that takes `POST /api/v1/call-events`
    /// (without it the endpoint answers 503).
    pub fn with_events(mut self, events: crate::events::worker::Events) -> Self {
        self.events = Some(events);
        self
    }

    /// No audit trail and no access thread: for benchmarks that measure
    /// what auditing costs, never for a server.
    #[doc(hidden)]
    pub fn without_audit(mut self) -> Self {
        self.audit = false;
        self
    }
}

/// Live numbers the API reports.
#[derive(Debug, Default)]
pub struct Health {
    pub active_sessions: AtomicUsize,
    pub recordings_published: AtomicUsize,
    /// The sessions being recorded now, by session id.
    pub active: std::sync::Mutex<std::collections::BTreeMap<u64, ActiveSessionInfo>>,
    /// Issue 14: the metrics of the server (`GET /metrics`).
    pub metrics: Arc<crate::metrics::Metrics>,
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

/// The `[http]` limits, as durations.
#[derive(Debug, Clone)]
struct Limits {
    max_connections: usize,
    queue: Duration,
    request: Duration,
    idle: Duration,
    max_page_bytes: usize,
}

/// What the API handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub health: Arc<Health>,
    /// Tokens, scopes' directory, the audit trail.
    access: Arc<access::Access>,
    /// HTTPS, when configured.
    tls: Option<TlsAcceptor>,
    /// The file drop root.
    pub drop_root: PathBuf,
    limits: Arc<Limits>,
    /// Connections to the index, bounded and reused.
    pool: Arc<IndexPool>,
    /// Slots of the requests being answered (`max_requests`).
    requests: Arc<Semaphore>,
    /// Refusals, for rate-limited warnings.
    refused: Arc<Refusals>,
    // The web page (docs/web.md).
    /// Whether the page and its sign-in are served (`http.web`).
    web: bool,
    /// Signed-in browsers.
    sessions: Arc<signin::Sessions>,
    /// Holds and deletions (issue 15).
    life: Arc<crate::lifecycle::Lifecycle>,
    /// Decrypts downloads of files encrypted at rest.
    decryptor: Option<Arc<crate::store::crypt::Decryptor>>,
    /// Issue 14: the events thread.
    events: Option<crate::events::worker::Events>,
    /// Issue 16: files of recordings without a local copy.
    objects: Option<crate::store::objects::Objects>,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("drop_root", &self.drop_root)
            .field("https", &self.tls.is_some())
            .finish()
    }
}

impl ApiState {
    /// The API's state from its [`ApiSetup`]; starts the access thread.
    pub fn new(health: Arc<Health>, setup: ApiSetup) -> Result<Self, SetupError> {
        let ApiSetup {
            index_path,
            drop_root,
            http: config,
            directory,
            tls,
            tokens,
            audit,
            life,
            decryptor,
            events,
            objects,
        } = setup;
        let access = access::Access::start(index_path.clone(), tokens, directory.clone(), audit)
            .map_err(SetupError::Thread)?;
        let config = &config;
        let sessions = signin::Sessions::new(
            Duration::from_secs(config.session_idle_timeout_s.max(1)),
            Duration::from_secs(config.session_max_age_s.max(1)),
            tls.is_some(),
        );
        Ok(ApiState {
            health,
            access: Arc::new(access),
            tls,
            drop_root,
            limits: Arc::new(Limits {
                max_connections: config.max_connections.max(1),
                queue: Duration::from_millis(config.queue_timeout_ms),
                request: Duration::from_millis(config.request_timeout_ms.max(1)),
                idle: Duration::from_millis(config.idle_timeout_ms.max(1)),
                max_page_bytes: config.max_page_bytes.max(1),
            }),
            pool: Arc::new(IndexPool::new(
                index_path,
                config.index_connections,
                directory,
            )),
            requests: Arc::new(Semaphore::new(config.max_requests.max(1))),
            refused: Arc::new(Refusals::default()),
            web: config.web,
            sessions: Arc::new(sessions),
            life: Arc::new(life),
            decryptor,
            events,
            objects,
        })
    }

    /// Records `entry`, then gives `resp`; or the 503 if the entry cannot
    /// be written.
    async fn answer(&self, entry: audit::Entry, resp: Response) -> Response {
        match self.access.record(entry).await {
            Ok(()) => resp,
            Err(r) => r,
        }
    }

    /// A 403 for a missing right, recorded (`denied`).
    async fn deny(
        &self,
        caller: &Caller,
        right: Right,
        action: &str,
        filters: serde_json::Value,
    ) -> Response {
        let entry = caller.entry(action, Vec::new(), filters, "denied");
        self.answer(entry, caller.forbidden(right)).await
    }
}

/// Why a request could not be answered by the index.
#[derive(Debug, thiserror::Error)]
enum ApiError {
    #[error("{0}")]
    Index(#[from] IndexError),
    #[error("index worker failed: {0}")]
    Worker(#[from] tokio::task::JoinError),
    #[error("the API is shutting down")]
    Closed,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error(StatusCode::INTERNAL_SERVER_ERROR, self)
    }
}

/// Connections to the index, at most `n`, each used by one blocking thread
/// at a time and kept for the next request: opening one costs more than
/// most queries, and a connection closed while another of this process
/// holds a lock on the file keeps its descriptor until every lock is
/// released (SQLite's POSIX-lock workaround), so closing and reopening
/// under load piles up descriptors. A kept connection whose file was
/// deleted or replaced (`srs reindex`, a restore) is dropped for a new one.
struct IndexPool {
    path: crate::store::IndexAt,
    slots: Arc<Semaphore>,
    idle: std::sync::Mutex<Vec<Index>>,
    /// For the scopes' `site` (SQL functions on each connection).
    directory: Arc<[DnEntry]>,
}

impl std::fmt::Debug for IndexPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexPool")
            .field("path", &self.path)
            .finish()
    }
}

impl IndexPool {
    fn new(path: crate::store::IndexAt, n: usize, directory: Arc<[DnEntry]>) -> Self {
        IndexPool {
            path,
            slots: Arc::new(Semaphore::new(n.max(1))),
            idle: std::sync::Mutex::new(Vec::new()),
            directory,
        }
    }

    /// Runs `f` on a connection (`None`: there is no index yet) in a
    /// blocking thread, once one of the `n` slots is free.
    async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(Option<&Index>) -> Result<T, IndexError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ApiError::Closed)?;
        let pool = self.clone();
        // The slot moves into the thread: a request that timed out and went
        // away still holds it until its query is over, so the bound holds.
        let out = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let index = pool.take()?;
            let out = f(index.as_ref());
            if let Some(index) = index {
                pool.give(index);
            }
            out
        })
        .await??;
        Ok(out)
    }

    fn take(&self) -> Result<Option<Index>, IndexError> {
        loop {
            let kept = self.idle.lock().ok().and_then(|mut idle| idle.pop());
            match kept {
                Some(index) if index.is_current(&self.path) => return Ok(Some(index)),
                Some(_replaced) => continue,
                None => {
                    let Some(index) = Index::open_existing_at(&self.path)? else {
                        return Ok(None);
                    };
                    crate::auth::scope::register_sql_functions(
                        index.conn(),
                        self.directory.clone(),
                    )?;
                    return Ok(Some(index));
                }
            }
        }
    }

    fn give(&self, index: Index) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(index);
        }
    }
}

/// Counts refusals and warns about them at most every 10 s: a flood must
/// not flood the log too.
#[derive(Debug, Default)]
struct Refusals {
    since_warned: AtomicU64,
    warned: std::sync::Mutex<Option<Instant>>,
}

impl Refusals {
    fn note(&self, what: &'static str) {
        let n = self.since_warned.fetch_add(1, Ordering::Relaxed) + 1;
        let Ok(mut warned) = self.warned.lock() else {
            return;
        };
        if warned.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            *warned = Some(Instant::now());
            self.since_warned.store(0, Ordering::Relaxed);
            tracing::warn!(
                refused = n,
                reason = what,
                "HTTP API overloaded: requests refused with 503 (see [http] limits)"
            );
        }
    }
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (
        status,
        Json(serde_json::json!({ "error": message.to_string() })),
    )
        .into_response()
}

/// `503` with `Retry-After: 1`.
fn busy(message: &str) -> Response {
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, message);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// A JSON body already serialised.
fn json_bytes(bytes: Vec<u8>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        bytes,
    )
        .into_response()
}

/// Marks a response whose body streams from a file: it gives its request
/// slot back once its head is out (its memory is a read buffer, and a
/// download may rightly take long); it is bounded by `max_connections`
/// and `idle_timeout_ms` instead.
#[derive(Debug, Clone, Copy)]
struct Streamed;

/// Admission of the API's requests: waits up to `queue_timeout_ms` for one
/// of the `max_requests` slots (else `503`), gives the request
/// `request_timeout_ms` in all (else `503`), and makes a JSON body hold its
/// slot until it is sent, so that the memory of pages in flight is bounded
/// by `max_requests` times `max_page_bytes`.
async fn admit(State(st): State<ApiState>, req: Request, next: Next) -> Response {
    let deadline = Instant::now() + st.limits.request;
    let wait = st.limits.queue.min(st.limits.request);
    let slot = match tokio::time::timeout(wait, st.requests.clone().acquire_owned()).await {
        Ok(Ok(slot)) => slot,
        _ => {
            st.refused.note("every request slot busy");
            return busy("busy: too many requests in progress, retry later");
        }
    };
    let resp = match tokio::time::timeout_at(deadline, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => {
            st.refused.note("request timed out");
            return busy("busy: the request timed out, retry later");
        }
    };
    if resp.extensions().get::<Streamed>().is_some() {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    Response::from_parts(parts, Body::new(Held::new(body, slot, deadline)))
}

/// Size of the pieces a held body is sent in.
const CHUNK: usize = 64 << 10;

/// A response body that holds its request slot until it is sent (or the
/// connection is gone), within the request's deadline. It hands the
/// connection copies of at most [`CHUNK`] bytes, so that what the
/// connection buffers once the slot is given back stays small.
struct Held {
    inner: Body,
    pending: Bytes,
    slot: Option<OwnedSemaphorePermit>,
    deadline: Pin<Box<Sleep>>,
}

impl Held {
    fn new(inner: Body, slot: OwnedSemaphorePermit, deadline: Instant) -> Self {
        Held {
            inner,
            pending: Bytes::new(),
            slot: Some(slot),
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
        }
    }
}

impl HttpBody for Held {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.slot = None;
            return Poll::Ready(Some(Err(axum::Error::new("response not sent in time"))));
        }
        loop {
            if !this.pending.is_empty() {
                let n = this.pending.len().min(CHUNK);
                let piece = Bytes::copy_from_slice(&this.pending[..n]);
                this.pending = this.pending.slice(n..);
                return Poll::Ready(Some(Ok(http_body::Frame::data(piece))));
            }
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => this.pending = data,
                    Err(other) => return Poll::Ready(Some(Ok(other))),
                },
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => {
                    this.slot = None;
                    return Poll::Ready(None);
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let inner = self.inner.size_hint();
        let pending = self.pending.len() as u64;
        let mut hint = http_body::SizeHint::new();
        hint.set_lower(inner.lower() + pending);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + pending);
        }
        hint
    }
}

/// Every error the API answers is `{"error": "..."}`: the responses axum
/// makes itself (a query string or path it cannot read: 400; no route:
/// 404; wrong method: 405) are plain text or empty, and are rewritten
/// here with their text as the message.
async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 << 10)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    let mut out = error(status, message);
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

async fn healthz(State(st): State<ApiState>) -> Json<serde_json::Value> {
    let h = &st.health;
    Json(serde_json::json!({
        "status": "ok",
        "active_sessions": h.active_sessions.load(Ordering::Relaxed),
        "recordings_published": h.recordings_published.load(Ordering::Relaxed),
    }))
}

/// One page of a listing as JSON: `total`, `limit`, `offset`, the
/// recordings, and `truncated` with `next_offset` when `max_bytes` cut the
/// page short (never before its first recording). Written as the rows
/// come, so a page never exists twice in memory. The ids of the
/// recordings on the page are pushed onto `ids` (for the audit trail).
fn page_json(
    total: u64,
    limit: usize,
    offset: usize,
    rows: &mut dyn Iterator<Item = Result<RecordingMeta, IndexError>>,
    max_bytes: usize,
    ids: &mut Vec<String>,
) -> Result<Vec<u8>, IndexError> {
    let mut out = format!(r#"{{"total":{total},"limit":{limit},"offset":{offset},"recordings":["#)
        .into_bytes();
    let mut n = 0usize;
    let mut truncated = false;
    for meta in rows {
        let meta = meta?;
        let before = out.len();
        if n > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, &meta)?;
        if out.len() > max_bytes && n > 0 {
            out.truncate(before);
            truncated = true;
            break;
        }
        ids.push(meta.recording_id);
        n += 1;
    }
    out.push(b']');
    if truncated {
        out.extend_from_slice(
            format!(r#","truncated":true,"next_offset":{}"#, offset + n).as_bytes(),
        );
    }
    out.push(b'}');
    Ok(out)
}

/// A request's parameters as the audit trail keeps them.
fn filters_of(v: &impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or_default()
}

async fn recordings(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    uri: axum::http::Uri,
) -> Response {
    if !caller.allows(Right::Search) {
        return st
            .deny(&caller, Right::Search, "search", serde_json::json!({}))
            .await;
    }
    let q = match integration::search_query(&uri) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    if let Err(e) = q.validate() {
        return error(StatusCode::BAD_REQUEST, e);
    }
    let filters = filters_of(&q);
    let (limit, offset) = (q.effective_limit(), q.effective_offset());
    let max = st.limits.max_page_bytes;
    let scope = caller.scope.clone();
    let page = st
        .pool
        .run(move |index| {
            let mut ids = Vec::new();
            let bytes = match index {
                Some(index) => index.search_scoped(&q, &scope, |total, rows| {
                    page_json(total, limit, offset, rows, max, &mut ids)
                })?,
                None => page_json(0, limit, offset, &mut std::iter::empty(), max, &mut ids)?,
            };
            Ok((bytes, ids))
        })
        .await;
    match page {
        Ok((bytes, ids)) => {
            st.answer(
                caller.entry("search", ids, filters, "ok"),
                json_bytes(bytes),
            )
            .await
        }
        Err(e) => e.into_response(),
    }
}

/// The recording by id or Call-ID within `scope`; `Ok(None)` if there is
/// none (or it is outside the scope: the same answer).
async fn find(
    st: &ApiState,
    id: String,
    scope: Arc<Scope>,
) -> Result<Option<RecordingMeta>, Response> {
    st.pool
        .run(move |index| match index {
            Some(index) => index.get_scoped(&id, &scope),
            None => Ok(None),
        })
        .await
        .map_err(IntoResponse::into_response)
}

fn no_such_recording() -> Response {
    error(StatusCode::NOT_FOUND, "no such recording")
}

async fn recording(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let Path(id) = match id {
        Ok(id) => id,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let filters = serde_json::json!({ "id": id });
    if !caller.allows(Right::View) {
        return st.deny(&caller, Right::View, "view", filters).await;
    }
    match find(&st, id, caller.scope.clone()).await {
        Ok(Some(m)) => {
            let resp = match serde_json::to_vec(&m) {
                Ok(bytes) => json_bytes(bytes),
                Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
            };
            let entry = caller.entry("view", vec![m.recording_id], filters, "ok");
            st.answer(entry, resp).await
        }
        Ok(None) => {
            let entry = caller.entry("view", Vec::new(), filters, "not-found");
            st.answer(entry, no_such_recording()).await
        }
        Err(r) => r,
    }
}

/// `bytes=a-b`, `bytes=a-`, `bytes=-n` for a file of `len` bytes: the
/// inclusive range, `Err(())` if unsatisfiable (a start past the end, a
/// zero-length suffix, an empty file), `Ok(None)` to serve it all (absent,
/// malformed or multi-range headers).
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
        // RFC 9110 14.1.3: a suffix of length 0 selects nothing.
        (None, Some(0)) if a.is_empty() => return Err(()),
        (None, Some(n)) if a.is_empty() => (len.saturating_sub(n), len.saturating_sub(1)),
        _ => return Ok(None),
    };
    if len == 0 || range.0 >= len {
        return Err(());
    }
    Ok(Some(range))
}

/// Why a listed file is not served.
#[derive(Debug, thiserror::Error)]
enum FileRefused {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the recording's path {0:?} is not a plain path inside the drop")]
    BadDir(String),
    #[error("{0} is reached through a symlink")]
    Symlinked(PathBuf),
    #[error("{0} is not a regular file")]
    NotRegular(PathBuf),
}

/// Opens `<root>/<dir>/<name>` for reading only if it is a regular file
/// right inside the recording's directory: no path component anywhere
/// below the root may be a symlink or `..`, the file itself is opened
/// with `O_NOFOLLOW` (and `O_NONBLOCK`, so a planted FIFO cannot hang the
/// thread), and the descriptor's own path (`/proc/self/fd`) must be the
/// one checked, which rules out a swap between the checks and the open.
fn open_recording_file(
    root: &FsPath,
    dir: &str,
    name: &str,
) -> Result<(std::fs::File, u64), FileRefused> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::Component;
    let plain = |p: &str| {
        !p.is_empty()
            && FsPath::new(p)
                .components()
                .all(|c| matches!(c, Component::Normal(_)))
    };
    if !plain(dir) || !plain(name) || name.contains('/') {
        return Err(FileRefused::BadDir(dir.to_string()));
    }
    let root = root.canonicalize()?;
    let dir = root.join(dir);
    if dir.canonicalize()? != dir {
        return Err(FileRefused::Symlinked(dir));
    }
    let path = dir.join(name);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                FileRefused::Symlinked(path.clone())
            } else {
                FileRefused::Io(e)
            }
        })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(FileRefused::NotRegular(path));
    }
    let opened = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
    if opened != path {
        return Err(FileRefused::Symlinked(path));
    }
    Ok((file, meta.len()))
}

async fn file(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    ids: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    use tokio::io::AsyncSeekExt;
    let Path((id, name)) = match ids {
        Ok(ids) => ids,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let mut filters = serde_json::json!({ "id": id, "file": name });
    if let Some(r) = range {
        filters["range"] = r.into();
    }
    if !caller.allows(Right::Download) {
        return st.deny(&caller, Right::Download, "download", filters).await;
    }
    // Out of scope, not listed, or not a servable file: the same 404,
    // recorded, whether the recording exists or not.
    let not_found = |rid: Vec<String>, resp: Response| {
        let entry = caller.entry("download", rid, filters.clone(), "not-found");
        st.answer(entry, resp)
    };
    let meta = match find(&st, id, caller.scope.clone()).await {
        Ok(Some(m)) => m,
        Ok(None) => return not_found(Vec::new(), no_such_recording()).await,
        Err(r) => return r,
    };
    let rid = vec![meta.recording_id.clone()];
    // Only a file the recording lists, by its exact name: never a path.
    let Some(f) = meta.files.iter().find(|f| f.name == name) else {
        let resp = error(StatusCode::NOT_FOUND, "no such file in this recording");
        return not_found(rid, resp).await;
    };
    let (root, dir, fname) = (
        st.drop_root.clone(),
        meta.path.clone(),
        f.stored_name().to_string(),
    );
    let opened =
        tokio::task::spawn_blocking(move || open_recording_file(&root, &dir, &fname)).await;
    let ctype = if f.name.ends_with(".opus") {
        "audio/ogg"
    } else {
        "audio/wav"
    };
    let (file, len) = match opened {
        // Encrypted at rest: served decrypted (issue 15).
        Ok(Ok((file, _))) if f.encryption.is_some() => {
            let path = st.drop_root.join(&meta.path).join(f.stored_name());
            let got = lifecycle::Download {
                caller: &caller,
                rid,
                filters,
                range,
                ctype,
            };
            return lifecycle::serve_encrypted(&st, got, file, path).await;
        }
        Ok(Ok((file, len))) => (tokio::fs::File::from_std(file), len),
        Ok(Err(FileRefused::Io(e))) if e.kind() == std::io::ErrorKind::NotFound => {
            // Issue 16: no local copy (another recorder's recording, or
            // keep_local): from the object store, if it has it.
            if let Some(objects) = st.objects.clone() {
                let d = lifecycle::Download {
                    caller: &caller,
                    rid,
                    filters,
                    range,
                    ctype,
                };
                return serve_object(&st, d, objects, &meta, f).await;
            }
            let resp = error(StatusCode::NOT_FOUND, "file missing from the drop");
            return not_found(rid, resp).await;
        }
        Ok(Err(e)) => {
            tracing::warn!(recording_id = %meta.recording_id, file = %f.name, error = %e,
                "refused to serve a recording's file");
            let resp = error(StatusCode::NOT_FOUND, "no such file in this recording");
            return not_found(rid, resp).await;
        }
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    let range = match parse_range(range, len) {
        Ok(r) => r,
        Err(()) => {
            let mut r = error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!("range not satisfiable: the file has {len} bytes"),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            let entry = caller.entry("download", rid, filters, "bad-range");
            return st.answer(entry, r).await;
        }
    };
    // The entry is written before the first byte leaves: no unaudited
    // download.
    if let Err(r) = st
        .access
        .record(caller.entry("download", rid, filters, "ok"))
        .await
    {
        return r;
    }
    let mut resp = match range {
        None => Response::builder()
            .header(header::CONTENT_TYPE, ctype)
            .header(header::CONTENT_LENGTH, len)
            .header(header::ACCEPT_RANGES, "bytes")
            .body(Body::from_stream(
                tokio_util::io::ReaderStream::with_capacity(file, CHUNK),
            )),
        Some((a, b)) => {
            let mut file = file;
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
                .body(Body::from_stream(
                    tokio_util::io::ReaderStream::with_capacity(part, CHUNK),
                ))
        }
    }
    .unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e));
    resp.extensions_mut().insert(Streamed);
    resp
}

/// Serves a file of a recording from the object store (issue 16): where
/// the index says it is, streamed, HTTP Range included; a file encrypted
/// at rest is copied to a spool file in the drop (unlinked at once) and
/// served decrypted from it, like a local one.
async fn serve_object(
    st: &ApiState,
    d: lifecycle::Download<'_>,
    objects: crate::store::objects::Objects,
    meta: &RecordingMeta,
    f: &crate::recording::FileMeta,
) -> Response {
    let (id, name) = (meta.recording_id.clone(), f.stored_name().to_string());
    let found = st
        .pool
        .run(move |ix| match ix {
            Some(ix) => Ok(crate::store::objects::stored_key(ix.conn(), &id, &name)?),
            None => Ok(None),
        })
        .await;
    let (key, len) = match found {
        Ok(Some(k)) => k,
        Ok(None) => {
            let entry = d.caller.entry("download", d.rid, d.filters, "not-found");
            let resp = error(
                StatusCode::NOT_FOUND,
                "file missing from the drop and the object store",
            );
            return st.answer(entry, resp).await;
        }
        Err(e) => return e.into_response(),
    };
    if f.encryption.is_some() {
        let spool = st.drop_root.join(".spool");
        if let Err(e) = tokio::fs::create_dir_all(&spool).await {
            return error(StatusCode::INTERNAL_SERVER_ERROR, e);
        }
        let path = spool.join(format!("{}-{}", meta.recording_id, uuid::Uuid::now_v7()));
        let got = objects.download(&key, &path).await;
        let file = std::fs::File::open(&path);
        let _ = std::fs::remove_file(&path);
        return match (got, file) {
            (Ok(_), Ok(file)) => lifecycle::serve_encrypted(st, d, file, path).await,
            (Err(e), _) => object_unavailable(&meta.recording_id, &key, &e),
            (_, Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        };
    }
    let range = match parse_range(d.range, len) {
        Ok(r) => r,
        Err(()) => {
            let mut r = error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!("range not satisfiable: the file has {len} bytes"),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            let entry = d.caller.entry("download", d.rid, d.filters, "bad-range");
            return st.answer(entry, r).await;
        }
    };
    // Asked before the audit entry: a store that is down is a 503, not a
    // download recorded as served.
    let stream = match objects.stream(&key, range.map(|(a, b)| a..b + 1)).await {
        Ok(s) => s,
        Err(e) => return object_unavailable(&meta.recording_id, &key, &e),
    };
    if let Err(r) = st
        .access
        .record(d.caller.entry("download", d.rid, d.filters, "ok"))
        .await
    {
        return r;
    }
    let body = Body::from_stream(stream);
    let mut resp = match range {
        None => Response::builder()
            .header(header::CONTENT_TYPE, d.ctype)
            .header(header::CONTENT_LENGTH, len)
            .header(header::ACCEPT_RANGES, "bytes")
            .body(body),
        Some((a, b)) => Response::builder()
            .status(StatusCode::PARTIAL_CONTENT)
            .header(header::CONTENT_TYPE, d.ctype)
            .header(header::CONTENT_LENGTH, b - a + 1)
            .header(header::ACCEPT_RANGES, "bytes")
            .header(header::CONTENT_RANGE, format!("bytes {a}-{b}/{len}"))
            .body(body),
    }
    .unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e));
    resp.extensions_mut().insert(Streamed);
    resp
}

/// `503` (with `Retry-After`) when the object store cannot give a file.
fn object_unavailable(
    recording_id: &str,
    key: &str,
    e: &crate::store::objects::ObjectError,
) -> Response {
    tracing::warn!(%recording_id, key, error = %e, "the object store cannot serve a recording's file");
    let mut r = error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the object store holding this file is unavailable; try again",
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    r
}

async fn sessions(State(st): State<ApiState>, Extension(caller): Extension<Caller>) -> Response {
    if !caller.allows(Right::Live) {
        return st
            .deny(&caller, Right::Live, "live", serde_json::json!({}))
            .await;
    }
    let dir = &st.access.directory;
    let list: Vec<ActiveSessionInfo> = st
        .health
        .active
        .lock()
        .map(|a| {
            a.values()
                .filter(|s| {
                    caller
                        .scope
                        .matches(s.record_dn.as_deref(), s.geo_location.as_deref(), dir)
                })
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let ids = list.iter().map(|s| s.recording_id.clone()).collect();
    let resp = Json(serde_json::json!({ "sessions": list })).into_response();
    st.answer(caller.entry("live", ids, serde_json::json!({}), "ok"), resp)
        .await
}

/// `GET /api/v1/audit`: entries oldest first, at most `limit` (1000 by
/// default, at most 10,000) and at most `max_page_bytes` of JSON; when
/// more remain, `next_after` is the `after` to ask next.
async fn audit_entries(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    q: Result<QueryParams<AuditQuery>, QueryRejection>,
) -> Response {
    if !caller.allows_global(Right::ReadAudit) {
        return st
            .deny(&caller, Right::ReadAudit, "audit", serde_json::json!({}))
            .await;
    }
    let mut q = match q {
        Ok(QueryParams(q)) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let limit = q.limit.unwrap_or(audit::DEFAULT_LIMIT);
    if limit > audit::MAX_LIMIT {
        return error(StatusCode::BAD_REQUEST, audit::AuditError::Limit(limit));
    }
    let filters = filters_of(&q);
    // One more than asked, to know whether more remain.
    q.limit = Some(limit + 1);
    let max = st.limits.max_page_bytes;
    let read = st
        .pool
        .run(move |index| {
            let Some(index) = index else {
                return Ok(Ok(br#"{"entries":[]}"#.to_vec()));
            };
            Ok(audit_page(index, &q, limit, max))
        })
        .await;
    match read {
        Ok(Ok(bytes)) => {
            st.answer(
                caller.entry("audit", Vec::new(), filters, "ok"),
                json_bytes(bytes),
            )
            .await
        }
        Ok(Err(audit::AuditError::Query(e))) => error(StatusCode::BAD_REQUEST, e),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(e) => e.into_response(),
    }
}

/// `{"entries": [...]}` of at most `limit` entries and `max` bytes, with
/// `next_after` when more remain.
fn audit_page(
    index: &Index,
    q: &AuditQuery,
    limit: usize,
    max: usize,
) -> Result<Vec<u8>, audit::AuditError> {
    let mut out = br#"{"entries":["#.to_vec();
    let (mut n, mut last, mut more) = (0usize, None, false);
    let mut failed = None;
    audit::read(index.conn(), q, |row| {
        if n == limit {
            more = true;
            return false;
        }
        let before = out.len();
        if n > 0 {
            out.push(b',');
        }
        if let Err(e) = serde_json::to_writer(&mut out, &row) {
            failed = Some(e);
            return false;
        }
        if out.len() > max && n > 0 {
            out.truncate(before);
            more = true;
            return false;
        }
        last = Some(row.seq);
        n += 1;
        true
    })?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    out.push(b']');
    if let (true, Some(seq)) = (more, last) {
        out.extend_from_slice(format!(r#","next_after":{seq}"#).as_bytes());
    }
    out.push(b'}');
    Ok(out)
}

/// `GET /api/v1/tokens`: every token, never a secret.
async fn tokens_list(State(st): State<ApiState>, Extension(caller): Extension<Caller>) -> Response {
    if !caller.allows_global(Right::ManageTokens) {
        return st
            .deny(
                &caller,
                Right::ManageTokens,
                "token-list",
                serde_json::json!({}),
            )
            .await;
    }
    let listed = st
        .pool
        .run(|index| match index {
            Some(index) => Ok(tokens::list(index.conn())),
            None => Ok(Ok(Vec::new())),
        })
        .await;
    match listed {
        Ok(Ok(list)) => {
            #[derive(serde::Serialize)]
            struct Listed {
                tokens: Vec<tokens::TokenInfo>,
            }
            let resp = Json(Listed { tokens: list }).into_response();
            st.answer(
                caller.entry("token-list", Vec::new(), serde_json::json!({}), "ok"),
                resp,
            )
            .await
        }
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(e) => e.into_response(),
    }
}

/// The body of `POST /api/v1/tokens`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
    role: String,
    #[serde(default)]
    scopes: Vec<String>,
}

fn token_error(e: tokens::TokenError) -> Response {
    use tokens::TokenError as E;
    let status = match &e {
        E::BadName(_) | E::Scope(_) => StatusCode::BAD_REQUEST,
        E::Exists(_) => StatusCode::CONFLICT,
        E::NoSuchToken(_) => StatusCode::NOT_FOUND,
        E::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e)
}

/// `POST /api/v1/tokens` `{"name", "role", "scopes"}`: `201` with the
/// secret, shown this once.
async fn tokens_add(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<NewToken>, JsonRejection>,
) -> Response {
    if !caller.allows_global(Right::ManageTokens) {
        return st
            .deny(
                &caller,
                Right::ManageTokens,
                "token-add",
                serde_json::json!({}),
            )
            .await;
    }
    let Json(t) = match body {
        Ok(b) => b,
        Err(e) => return error(e.status(), e.body_text()),
    };
    let role: Role = match t.role.parse() {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let scope = match Scope::parse(&t.scopes) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    if let Err(e) = tokens::check_name(&t.name) {
        return token_error(e);
    }
    let scopes = scope.items();
    let filters = serde_json::json!({ "name": t.name, "role": role, "scopes": scopes });
    let entry = caller.entry("token-add", Vec::new(), filters, "ok");
    match st
        .access
        .add_token(t.name.clone(), role, scope, entry)
        .await
    {
        Ok(secret) => (
            StatusCode::CREATED,
            Json(serde_json::json!({
                "name": t.name, "role": role, "scopes": scopes, "secret": secret,
            })),
        )
            .into_response(),
        Err(access::TokenChange::Token(e)) => token_error(e),
        Err(access::TokenChange::Unavailable(r)) => r,
    }
}

/// `DELETE /api/v1/tokens/{name}`: revokes the active token of that name.
async fn tokens_revoke(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    name: Result<Path<String>, PathRejection>,
) -> Response {
    let Path(name) = match name {
        Ok(n) => n,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let filters = serde_json::json!({ "name": name });
    if !caller.allows_global(Right::ManageTokens) {
        return st
            .deny(&caller, Right::ManageTokens, "token-revoke", filters)
            .await;
    }
    let entry = caller.entry("token-revoke", Vec::new(), filters, "ok");
    match st.access.revoke_token(name.clone(), entry).await {
        Ok(()) => Json(serde_json::json!({ "revoked": name })).into_response(),
        Err(access::TokenChange::Token(e)) => token_error(e),
        Err(access::TokenChange::Unavailable(r)) => r,
    }
}

/// The router (also used by tests without a socket). `/healthz` is outside
/// the admission limits: it reads two counters, and a probe must tell
/// "up but busy" from "down". Authentication wraps everything else,
/// unknown paths included (a stranger learns nothing without a token).
pub fn router(state: ApiState) -> Router {
    let api = Router::new()
        .route("/api/v1/recordings", get(recordings))
        .route(
            "/api/v1/recordings/{id}",
            get(recording).delete(lifecycle::delete_recording),
        )
        .route(
            "/api/v1/recordings/{id}/hold",
            axum::routing::put(lifecycle::hold).delete(lifecycle::release),
        )
        .route("/api/v1/recordings/{id}/verify", get(lifecycle::verify))
        .route("/api/v1/recordings/{id}/files/{name}", get(file))
        .route("/api/v1/sessions", get(sessions))
        .route("/api/v1/audit", get(audit_entries))
        .route("/api/v1/tokens", get(tokens_list).post(tokens_add))
        .route("/api/v1/tokens/{name}", delete(tokens_revoke))
        // The web page's API (docs/web.md): sign-in, who am I, peaks.
        .merge(web::api_routes(state.web))
        // Issue 14 (src/http/integration.rs).
        .route(
            "/api/v1/call-events",
            axum::routing::post(integration::call_events),
        )
        .route("/api/v1/webhooks/deliveries", get(integration::deliveries))
        .route(
            "/api/v1/webhooks/deliveries/{id}/retry",
            axum::routing::post(integration::retry_delivery),
        )
        .route("/metrics", get(integration::metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), admit));
    Router::new()
        .route("/healthz", get(healthz))
        // The web page's shell and assets (embedded, no data in them).
        .merge(web::page_routes(state.web))
        .merge(api)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            access::authenticate,
        ))
        .layer(middleware::map_response(json_errors))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` completes, within the
/// connection limits (HTTPS when the state has a certificate).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = Listener {
        inner: listener,
        slots: Arc::new(Semaphore::new(state.limits.max_connections)),
        refusing: Arc::new(Semaphore::new(state.limits.max_connections)),
        idle: state.limits.idle,
        refused: state.refused.clone(),
        tls: state.tls.clone(),
    };
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<ClientAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Connections the kernel completes and queues for us (capped by
/// `net.core.somaxconn`). A burst of connections waits there briefly and
/// is then served or refused with a 503; with a short queue, the kernel
/// drops the handshakes that overflow it, and those clients retry only
/// after 1, 3, 7, 15 s: a burst would look like a hang.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds the API address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Blocking threads of the API's runtime besides the index connections'
/// (file opens and reads of downloads).
const FILE_THREADS: usize = 4;

/// Runs the API on a thread of its own (`srs-http`) with its own
/// single-threaded runtime and a bounded blocking pool, at nice 10, until
/// `shutdown` turns true. The API's load (parsing, JSON, SQLite, file
/// reads) then never runs on the threads of the SIP task and the publishing
/// tasks nor queues in their blocking pool, and the scheduler serves SIP
/// and media first when the CPU is short. `listener` is moved to the new
/// runtime.
pub fn spawn(
    listener: tokio::net::TcpListener,
    state: ApiState,
    index_connections: usize,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let listener = listener.into_std()?;
    std::thread::Builder::new()
        .name("srs-http".into())
        .spawn(move || {
            lower_priority();
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .max_blocking_threads(index_connections.max(1) + FILE_THREADS)
                .thread_name("srs-http-blocking")
                .on_thread_start(lower_priority)
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the HTTP API's runtime");
                    return;
                }
            };
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, "HTTP listener unusable");
                        return;
                    }
                };
                let stop = async move {
                    let _ = shutdown.wait_for(|s| *s).await;
                };
                if let Err(e) = serve(listener, state, stop).await {
                    tracing::error!(error = %e, "HTTP server stopped");
                }
            });
        })
}

/// Nice 10 for the calling thread (Linux: per thread).
pub(crate) fn lower_priority() {
    // SAFETY: plain syscalls on the calling thread; a failure only leaves
    // it at normal priority.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 10);
    }
}

/// The API's listener: at most `max_connections` served at once. Beyond,
/// a connection gets a canned `503` and is closed (gracefully, reading the
/// request first, for up to another `max_connections` at once; past that,
/// written without waiting and closed at once): a client is told at once
/// rather than left hanging in the backlog, and the server's descriptors
/// stay bounded.
pub struct Listener {
    inner: tokio::net::TcpListener,
    slots: Arc<Semaphore>,
    refusing: Arc<Semaphore>,
    idle: Duration,
    refused: Arc<Refusals>,
    /// HTTPS: each connection's handshake runs in its own task.
    tls: Option<TlsAcceptor>,
}

const REFUSAL_BODY: &str = r#"{"error":"busy: too many connections, retry later"}"#;

impl Listener {
    fn refuse(&self, mut stream: TcpStream) {
        self.refused.note("every connection slot busy");
        let answer = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{REFUSAL_BODY}",
            REFUSAL_BODY.len()
        );
        let Ok(permit) = self.refusing.clone().try_acquire_owned() else {
            // Past the bound of graceful refusals: the answer goes into the
            // socket's (empty) send buffer without waiting, and the socket
            // is closed. Unread input makes that close a reset, but a
            // Linux client still reads what arrived before it.
            let _ = stream.try_write(answer.as_bytes());
            return;
        };
        tokio::spawn(async move {
            let _permit = permit;
            let mut buf = [0u8; 2048];
            // Read the request first: closing a socket with unread input
            // resets the connection, which can destroy the answer in flight.
            let _ = tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await;
            if tokio::time::timeout(Duration::from_secs(1), stream.write_all(answer.as_bytes()))
                .await
                .is_err()
            {
                return;
            }
            let _ = stream.shutdown().await;
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
            })
            .await;
        });
    }
}

impl axum::serve::Listener for Listener {
    type Io = https::ApiIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (https::ApiIo, SocketAddr) {
        loop {
            let (stream, addr) = match self.inner.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, mostly: wait for some to close.
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            match self.slots.clone().try_acquire_owned() {
                Ok(slot) => {
                    let _ = stream.set_nodelay(true);
                    let conn = Conn::new(stream, slot, self.idle);
                    return (https::ApiIo::new(conn, self.tls.as_ref()), addr);
                }
                Err(_) => self.refuse(stream),
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// A connection of the API: holds its connection slot, and fails with
/// `TimedOut` (which closes it) after `idle` with nothing read or written,
/// whether the client sends nothing or stops reading our answer.
pub struct Conn {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
}

impl Conn {
    fn new(stream: TcpStream, slot: OwnedSemaphorePermit, idle: Duration) -> Self {
        Conn {
            stream,
            _slot: slot,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
        }
    }

    fn progressed(&mut self) {
        let at = Instant::now() + self.idle;
        self.timer.as_mut().reset(at);
    }

    /// The result for a pending operation: an error once idle too long.
    fn stalled<T>(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<T>> {
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "HTTP connection idle too long",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.progressed();
                Poll::Ready(r)
            }
            Poll::Pending => this.stalled(cx),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_write(cx, buf) {
            Poll::Ready(r) => {
                this.progressed();
                Poll::Ready(r)
            }
            Poll::Pending => this.stalled(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => {
                this.progressed();
                Poll::Ready(r)
            }
            Poll::Pending => this.stalled(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 100), Ok(None));
        assert_eq!(parse_range(Some("bytes=0-9"), 100), Ok(Some((0, 9))));
        assert_eq!(parse_range(Some("bytes=90-"), 100), Ok(Some((90, 99))));
        assert_eq!(parse_range(Some("bytes=-10"), 100), Ok(Some((90, 99))));
        assert_eq!(parse_range(Some("bytes=-500"), 100), Ok(Some((0, 99))));
        assert_eq!(parse_range(Some("bytes=50-500"), 100), Ok(Some((50, 99))));
        assert_eq!(parse_range(Some("bytes=100-"), 100), Err(()));
        assert_eq!(parse_range(Some("bytes=-0"), 100), Err(()));
        assert_eq!(parse_range(Some("bytes=-1"), 0), Err(()));
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), Ok(None));
        assert_eq!(parse_range(Some("bytes=9-1"), 100), Ok(None));
        assert_eq!(parse_range(Some("items=0-1"), 100), Ok(None));
    }

    #[test]
    fn a_page_is_cut_at_its_byte_budget_but_never_empty() {
        let metas: Vec<RecordingMeta> = (0..10)
            .map(|i| RecordingMeta {
                recording_id: format!("r{i}"),
                call_id: "x".repeat(100),
                ..Default::default()
            })
            .collect();
        let one = serde_json::to_vec(&metas[0]).unwrap().len();
        let page = |max| {
            let mut rows = metas.clone().into_iter().map(Ok);
            let mut ids = Vec::new();
            let bytes = page_json(42, 10, 5, &mut rows, max, &mut ids).unwrap();
            let v = serde_json::from_slice::<serde_json::Value>(&bytes).unwrap();
            // The ids for the audit trail are those of the page, no more.
            let listed: Vec<&str> = v["recordings"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["recording_id"].as_str().unwrap())
                .collect();
            assert_eq!(ids, listed);
            v
        };
        let all = page(1 << 20);
        assert_eq!(all["recordings"].as_array().unwrap().len(), 10);
        assert_eq!(
            (all["total"].as_u64(), all["offset"].as_u64()),
            (Some(42), Some(5))
        );
        assert!(all.get("truncated").is_none(), "{all}");
        let cut = page(100 + 3 * (one + 1));
        assert_eq!(cut["recordings"].as_array().unwrap().len(), 3, "{cut}");
        assert_eq!(cut["truncated"], true);
        assert_eq!(cut["next_offset"], 8);
        assert_eq!(
            cut["recordings"][2],
            serde_json::to_value(&metas[2]).unwrap()
        );
        let tiny = page(1);
        assert_eq!(tiny["recordings"].as_array().unwrap().len(), 1);
        assert_eq!(tiny["next_offset"], 6);
    }
}
