//! Access control and audit of the API's requests (docs/api.md, Access
//! control and Audit trail).
//!
//! - [`authenticate`] (a middleware on every path but `/healthz`, before
//!   admission) turns the `Authorization: Bearer` header into a
//!   [`Caller`], or answers 401. Tokens are matched by the SHA-256 of the
//!   secret in a set reloaded from the index every second, so `srs token
//!   add`/`revoke` (another process) take effect without a restart.
//! - Each handler checks its [`Right`] ([`Caller::require`], 403) and
//!   applies the caller's scope to what it reads.
//! - Every answer about recordings is preceded by its audit entry
//!   ([`Access::record`]): if the entry cannot be written, the request
//!   fails (503) and nothing is sent, so nothing is read unaudited.
//!
//! One thread (`srs-access`, nice 10, its own read-write connection)
//! writes the audit trail and the tokens and reloads the tokens. Entries
//! that arrive together are written in one transaction (a group commit:
//! one journal sync for many requests), and the thread is apart from the
//! SIP, media and publishing threads: an index busy or failing delays
//! only API answers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use tokio::sync::oneshot;

use super::{error, ApiState};
use crate::auth::{tokens, Right, Role, Scope, TokenSet};
use crate::filing::DnEntry;
use crate::store::audit::{self, Entry};
use crate::store::Index;

/// How often the running server reads the tokens again.
pub const TOKEN_RELOAD: Duration = Duration::from_secs(1);

/// Jobs waiting for the access thread; more are refused (503) at once.
const QUEUE: usize = 4096;

/// Most jobs written in one transaction.
const MAX_BATCH: usize = 512;

/// Longest pause after a write (see [`access_thread`]).
const MAX_BREATHER: Duration = Duration::from_millis(20);

/// The client's address, as the listener accepted it.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, super::Listener>>
    for ClientAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, super::Listener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

/// Who is asking: a token, or anyone when no token exists.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's name, or `anonymous`.
    pub actor: Arc<str>,
    /// `None`: anonymous (no token exists; the API is open).
    pub role: Option<Role>,
    pub scope: Arc<Scope>,
    /// `ip:port`, or `unknown` (a router without a listener).
    pub client: Arc<str>,
}

impl Caller {
    fn role_name(&self) -> &'static str {
        self.role.map_or("none", Role::as_str)
    }

    /// Whether the caller has `right`. Without tokens (the API open, as
    /// before access control existed) anyone may read, but changes
    /// (tokens, deletion, holds) always need an admin token.
    pub fn allows(&self, right: Right) -> bool {
        match self.role {
            Some(role) => role.allows(right),
            // Issue 14: with no token (the API on loopback), call events
            // may be posted and metrics and webhook deliveries read, as
            // the issue says ("once tokens exist" they need their role).
            None => matches!(
                right,
                Right::Search
                    | Right::View
                    | Right::Live
                    | Right::Download
                    | Right::ReadAudit
                    | Right::PostEvents
                    | Right::Metrics
                    | Right::ReadWebhooks
            ),
        }
    }

    /// Rights over the whole server (the audit trail, tokens): a scoped
    /// token is refused them, since they reach beyond its recordings (a
    /// scoped admin making an unscoped token would escape its scope).
    pub fn allows_global(&self, right: Right) -> bool {
        self.allows(right) && self.scope.is_unrestricted()
    }

    /// An audit entry of this caller.
    pub fn entry(
        &self,
        action: &str,
        recording_ids: Vec<String>,
        filters: serde_json::Value,
        outcome: &str,
    ) -> Entry {
        Entry {
            actor: self.actor.to_string(),
            role: self.role_name().to_string(),
            client: self.client.to_string(),
            action: action.to_string(),
            recording_ids,
            filters,
            outcome: outcome.to_string(),
        }
    }

    /// The 403 for a missing right (the role named, never the scope).
    pub fn forbidden(&self, right: Right) -> Response {
        let why = match self.role {
            Some(role) if role.allows(right) => format!(
                "forbidden: {} needs a token without a scope",
                right.describe()
            ),
            Some(role) => format!(
                "forbidden: the role {role} does not allow {}",
                right.describe()
            ),
            None => format!(
                "forbidden: {} needs an admin token (no token exists: make one with `srs token add NAME --role admin`)",
                right.describe()
            ),
        };
        error(StatusCode::FORBIDDEN, why)
    }
}

/// Access control of one API: the tokens in force, the directory the
/// scopes look sites up in, and the way to the access thread.
#[derive(Debug)]
pub struct Access {
    tokens: Arc<RwLock<Arc<TokenSet>>>,
    pub directory: Arc<[DnEntry]>,
    jobs: Option<SyncSender<Job>>,
    unauthenticated: Unauthenticated,
}

enum Job {
    Audit {
        entry: Entry,
        done: oneshot::Sender<Result<(), String>>,
    },
    AddToken {
        name: String,
        role: Role,
        scope: Scope,
        entry: Entry,
        done: oneshot::Sender<Result<String, tokens::TokenError>>,
    },
    RevokeToken {
        name: String,
        entry: Entry,
        done: oneshot::Sender<Result<(), tokens::TokenError>>,
    },
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Job::Audit { .. } => "Audit",
            Job::AddToken { .. } => "AddToken",
            Job::RevokeToken { .. } => "RevokeToken",
        })
    }
}

/// Why a token could not be changed through the API.
#[derive(Debug)]
pub enum TokenChange {
    Token(tokens::TokenError),
    Unavailable(Response),
}

impl Access {
    /// Starts the access thread on the index at `path`, with `initial`
    /// tokens (read at start, before listening). `audit: false` (benches
    /// only) writes nothing and starts no thread.
    pub fn start(
        path: crate::store::IndexAt,
        initial: TokenSet,
        directory: Arc<[DnEntry]>,
        audit: bool,
    ) -> std::io::Result<Access> {
        let tokens = Arc::new(RwLock::new(Arc::new(initial)));
        let jobs = if audit {
            let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
            let shared = tokens.clone();
            // Opened now, before the API listens: its descriptor is part
            // of the server's resting count, and the first request does
            // not wait for it (a failure is retried by the thread).
            let index = Index::open_existing_rw_at(&path).ok().flatten();
            std::thread::Builder::new()
                .name("srs-access".into())
                .spawn(move || access_thread(path, index, rx, shared))?;
            Some(tx)
        } else {
            None
        };
        Ok(Access {
            tokens,
            directory,
            jobs,
            unauthenticated: Unauthenticated::default(),
        })
    }

    /// Counts a refused sign-in like a refused request (one WARN per 10 s).
    pub(super) fn note_unauthenticated(&self, client: &str, why: &str) {
        self.unauthenticated.note(client, why);
    }

    /// The tokens in force.
    pub fn tokens(&self) -> Arc<TokenSet> {
        self.tokens
            .read()
            .map(|t| t.clone())
            .unwrap_or_else(|_| Arc::new(TokenSet::locked()))
    }

    fn send(&self, job: Job) -> Result<(), NotSent> {
        let Some(jobs) = &self.jobs else {
            return Err(NotSent::Off);
        };
        match jobs.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(NotSent::Full),
            Err(TrySendError::Disconnected(_)) => Err(NotSent::Stopped),
        }
    }

    /// Writes `entry` to the audit trail; `Err` is the response to give
    /// instead of the answer (503): nothing is served unaudited.
    pub async fn record(&self, entry: Entry) -> Result<(), Response> {
        if self.jobs.is_none() {
            return Ok(());
        }
        let (done, wait) = oneshot::channel();
        self.send(Job::Audit { entry, done })
            .map_err(NotSent::response)?;
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(unavailable(&e)),
            Err(_) => Err(unavailable("the access thread stopped")),
        }
    }

    /// Adds a token (audited with `entry` in the same transaction).
    pub async fn add_token(
        &self,
        name: String,
        role: Role,
        scope: Scope,
        entry: Entry,
    ) -> Result<String, TokenChange> {
        let (done, wait) = oneshot::channel();
        self.send(Job::AddToken {
            name,
            role,
            scope,
            entry,
            done,
        })
        .map_err(|e| TokenChange::Unavailable(e.response()))?;
        match wait.await {
            Ok(r) => r.map_err(TokenChange::Token),
            Err(_) => Err(TokenChange::Unavailable(unavailable(
                "the access thread stopped",
            ))),
        }
    }

    /// Revokes a token (audited with `entry` in the same transaction).
    pub async fn revoke_token(&self, name: String, entry: Entry) -> Result<(), TokenChange> {
        let (done, wait) = oneshot::channel();
        self.send(Job::RevokeToken { name, entry, done })
            .map_err(|e| TokenChange::Unavailable(e.response()))?;
        match wait.await {
            Ok(r) => r.map_err(TokenChange::Token),
            Err(_) => Err(TokenChange::Unavailable(unavailable(
                "the access thread stopped",
            ))),
        }
    }
}

/// Why a job did not reach the access thread.
#[derive(Debug, Clone, Copy)]
enum NotSent {
    /// No audit trail (benches).
    Off,
    /// Too many waiting.
    Full,
    Stopped,
}

impl NotSent {
    fn response(self) -> Response {
        match self {
            NotSent::Off => unavailable("the audit trail is off"),
            NotSent::Full => {
                super::busy("busy: too many audit entries waiting to be written, retry later")
            }
            NotSent::Stopped => unavailable("the access thread stopped"),
        }
    }
}

fn unavailable(why: &str) -> Response {
    let mut r = error(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the audit trail cannot be written ({why}): request refused"),
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// Counts refused unauthenticated requests and warns at most every 10 s.
#[derive(Debug, Default)]
struct Unauthenticated {
    count: AtomicU64,
    warned: std::sync::Mutex<Option<Instant>>,
}

impl Unauthenticated {
    fn note(&self, client: &str, why: &str) {
        let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        let Ok(mut warned) = self.warned.lock() else {
            return;
        };
        if warned.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            *warned = Some(Instant::now());
            self.count.store(0, Ordering::Relaxed);
            tracing::warn!(
                refused = n,
                last_client = client,
                reason = why,
                "API requests refused with 401 (no or unknown token)"
            );
        }
    }
}

/// `401` with `WWW-Authenticate: Bearer` (RFC 6750; `invalid_token` when
/// a token was given).
fn unauthorized(message: &str, invalid: bool) -> Response {
    let mut r = error(StatusCode::UNAUTHORIZED, message);
    let challenge = if invalid {
        r#"Bearer realm="srs", error="invalid_token""#
    } else {
        r#"Bearer realm="srs""#
    };
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    r
}

/// The middleware: finds the caller, or answers 401. Never reads the
/// index (a hash and a map lookup), so a flood of bad tokens costs little
/// and takes no request slot.
pub async fn authenticate(State(st): State<ApiState>, mut req: Request, next: Next) -> Response {
    // The probe stays open: it shows no recording data.
    if req.uri().path() == "/healthz" {
        return next.run(req).await;
    }
    // The web page's shell and assets, and its sign-in (docs/web.md).
    if super::web::is_public(&st, req.method(), req.uri().path()) {
        return next.run(req).await;
    }
    let client: Arc<str> = req
        .extensions()
        .get::<ConnectInfo<ClientAddr>>()
        .map_or_else(|| "unknown".into(), |c| c.0 .0.to_string().into());
    let tokens = st.access.tokens();
    let caller = if tokens.required {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, secret) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| secret.trim())
            });
        let given = given.filter(|s| !s.is_empty());
        // A signed-in page (docs/web.md): its session cookie.
        if given.is_none() {
            let (method, path) = (req.method().clone(), req.uri().path().to_string());
            let auth =
                super::web::from_cookie(&st, &method, &path, req.headers(), &tokens, &client).await;
            match auth {
                super::web::CookieAuth::Caller(caller, signed) => {
                    req.extensions_mut().insert(caller);
                    req.extensions_mut().insert(signed);
                    return next.run(req).await;
                }
                super::web::CookieAuth::Refused(resp) => return resp,
                super::web::CookieAuth::Absent => {}
            }
        }
        let Some(secret) = given else {
            st.access.unauthenticated.note(&client, "no bearer token");
            return unauthorized(
                "authentication required: send Authorization: Bearer <token>",
                false,
            );
        };
        let Some(token) = tokens.lookup(secret) else {
            st.access
                .unauthenticated
                .note(&client, "unknown or revoked token");
            return unauthorized("invalid token: unknown or revoked", true);
        };
        Caller {
            actor: token.name.as_str().into(),
            role: Some(token.role),
            scope: Arc::new(token.scope.clone()),
            client,
        }
    } else {
        Caller {
            actor: "anonymous".into(),
            role: None,
            scope: Arc::new(Scope::default()),
            client,
        }
    };
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// The access thread: audit entries and token changes in arrival order,
/// consecutive audit entries in one transaction; the tokens reloaded
/// every [`TOKEN_RELOAD`] and after each change.
fn access_thread(
    path: crate::store::IndexAt,
    index: Option<Index>,
    jobs: Receiver<Job>,
    tokens: Arc<RwLock<Arc<TokenSet>>>,
) {
    super::lower_priority();
    let mut w = Writer {
        path,
        index,
        failing_since: None,
    };
    let mut next_reload = Instant::now() + TOKEN_RELOAD;
    loop {
        let wait = next_reload.saturating_duration_since(Instant::now());
        let mut batch = Vec::new();
        match jobs.recv_timeout(wait) {
            Ok(job) => batch.push(job),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let began = Instant::now();
        let writes = !batch.is_empty();
        let changed = w.run(batch);
        if writes {
            // A breather as long as the write took (20 ms at most): the
            // publisher, whose lock requests retry with growing sleeps,
            // always finds the index free about half of the time, however
            // hard the API is pressed. Requests meanwhile wait, and are
            // written together in the next transaction.
            std::thread::sleep(began.elapsed().min(MAX_BREATHER));
        }
        if changed || Instant::now() >= next_reload {
            w.reload(&tokens);
            next_reload = Instant::now() + TOKEN_RELOAD;
        }
    }
}

/// The access thread's connection: opened when needed, reopened when the
/// index file was replaced or a write failed.
struct Writer {
    path: crate::store::IndexAt,
    index: Option<Index>,
    failing_since: Option<Instant>,
}

impl Writer {
    fn index(&mut self) -> Result<&Index, String> {
        crate::store::index::open_current(&mut self.index, &self.path)
    }

    fn fault(&mut self, e: &str) {
        self.index = None;
        if self.failing_since.is_none() {
            self.failing_since = Some(Instant::now());
            tracing::error!(index = %self.path, error = e,
                "the audit trail cannot be written: API requests are refused (503) until it can");
        }
    }

    fn healthy(&mut self) {
        if let Some(since) = self.failing_since.take() {
            tracing::warn!(
                fault_s = since.elapsed().as_secs(),
                "the audit trail can be written again: API requests are served"
            );
        }
    }

    /// Runs the jobs in order; true if a token changed.
    fn run(&mut self, batch: Vec<Job>) -> bool {
        let mut changed = false;
        let mut pending: Vec<(Entry, oneshot::Sender<Result<(), String>>)> = Vec::new();
        for job in batch {
            match job {
                Job::Audit { entry, done } => pending.push((entry, done)),
                Job::AddToken {
                    name,
                    role,
                    scope,
                    entry,
                    done,
                } => {
                    self.flush(&mut pending);
                    let r = self.token_change(|c| {
                        let secret = tokens::add(c, &name, role, &scope, &entry.actor)?;
                        audit::append_in(c, std::slice::from_ref(&entry))
                            .map_err(|e| tokens::TokenError::Unavailable(e.to_string()))?;
                        Ok(secret)
                    });
                    changed |= r.is_ok();
                    let _ = done.send(r);
                }
                Job::RevokeToken { name, entry, done } => {
                    self.flush(&mut pending);
                    let r = self.token_change(|c| {
                        tokens::revoke(c, &name)?;
                        audit::append_in(c, std::slice::from_ref(&entry))
                            .map_err(|e| tokens::TokenError::Unavailable(e.to_string()))?;
                        Ok(())
                    });
                    changed |= r.is_ok();
                    let _ = done.send(r);
                }
            }
        }
        self.flush(&mut pending);
        changed
    }

    fn token_change<T>(
        &mut self,
        f: impl FnOnce(&crate::store::db::Db) -> Result<T, tokens::TokenError>,
    ) -> Result<T, tokens::TokenError> {
        let ix = match self.index() {
            Ok(ix) => ix,
            Err(e) => {
                self.fault(&e);
                return Err(tokens::TokenError::Unavailable(e));
            }
        };
        audit::with_write(ix.conn(), f)
    }

    /// Writes the waiting audit entries in one transaction and answers
    /// each request.
    fn flush(&mut self, pending: &mut Vec<(Entry, oneshot::Sender<Result<(), String>>)>) {
        if pending.is_empty() {
            return;
        }
        let entries: Vec<Entry> = pending.iter().map(|(e, _)| e.clone()).collect();
        let result = match self.index() {
            Ok(ix) => audit::append(ix.conn(), &entries).map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        match &result {
            Ok(_) => self.healthy(),
            Err(e) => self.fault(e),
        }
        for (_, done) in pending.drain(..) {
            let _ = done.send(result.as_ref().map(|_| ()).map_err(Clone::clone));
        }
    }

    /// Reads the tokens again. Once any token was seen, the API never
    /// opens again while this server runs, even if the index no longer
    /// has one (deleted, replaced): it stays locked.
    fn reload(&mut self, shared: &RwLock<Arc<TokenSet>>) {
        let loaded = match self.index() {
            Ok(ix) => TokenSet::load(ix.conn()).map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        let Ok(mut cur) = shared.write() else {
            return;
        };
        match loaded {
            Ok(mut set) => {
                if cur.required && !set.required {
                    tracing::warn!(index = %self.path,
                        "the index holds no token any more (deleted or replaced?): the API stays locked; add a token");
                    set.required = true;
                }
                *cur = Arc::new(set);
            }
            Err(e) => {
                // Keep the tokens in force; a write will say it in the log.
                tracing::debug!(error = %e, "tokens not reloaded");
                self.index = None;
            }
        }
    }
}
