//! The web page (docs/web.md): its embedded assets, its sign-in
//! (`POST /api/v1/login`, `POST /api/v1/logout`, `GET /api/v1/me`) and the
//! waveform peaks it draws (`GET /api/v1/recordings/{id}/files/{name}/peaks`).
//!
//! The page is one HTML shell, one script and one style sheet, compiled
//! into the binary (`web/`): no CDN, no network, no build step. The shell
//! is the same for `/`, `/recordings/{id}` and `/live` and holds no data:
//! it is served without a token. Everything it shows comes from the API,
//! through the same access checks and audit trail as any client: with the
//! session cookie ([`signin`]), a request has exactly the role and scope
//! of the token that signed in, and is audited under its name.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, Extension, Path, Query as QueryParams, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::peaks::{self, PeaksError};
use super::signin::{self, changes_state, csrf_matches};
use super::{error, find, no_such_recording, open_recording_file, ApiState, Caller, ClientAddr};
use crate::auth::{hash_secret, Right, Scope, TokenSet};
use crate::recording::Format;
use crate::store::crypt::CryptError;

const INDEX_HTML: &str = include_str!("../../web/index.html");
const APP_JS: &str = include_str!("../../web/app.js");
const APP_CSS: &str = include_str!("../../web/app.css");

/// What the page may load: only its own files and the API (no inline
/// script or style, no other origin, no framing).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// A request authenticated by a sign-in cookie: its session.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// The cookie's value (to close the session at logout).
    id: Arc<str>,
    csrf: Arc<str>,
}

/// Paths served without a token: the page's shell and assets (no data in
/// them) and the sign-in itself.
pub(super) fn is_public(st: &ApiState, method: &Method, path: &str) -> bool {
    if !st.web {
        return false;
    }
    match *method {
        Method::GET | Method::HEAD => {
            path == "/"
                || path == "/live"
                || path == "/assets/app.js"
                || path == "/assets/app.css"
                || path
                    .strip_prefix("/recordings/")
                    .is_some_and(|id| !id.is_empty() && !id.contains('/'))
        }
        Method::POST => path == "/api/v1/login",
        _ => false,
    }
}

/// What a request's cookie gave.
pub(super) enum CookieAuth {
    /// No cookie of ours, or its session ended (expired, logged out, the
    /// token revoked): the request is unauthenticated.
    Absent,
    Caller(Caller, SignedIn),
    /// A change without its CSRF token: this 403 (audited).
    Refused(Response),
}

/// The caller of a request that carries no bearer token but may carry a
/// sign-in cookie.
pub(super) async fn from_cookie(
    st: &ApiState,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    tokens: &TokenSet,
    client: &Arc<str>,
) -> CookieAuth {
    if !st.web {
        return CookieAuth::Absent;
    }
    let Some(id) = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|h| st.sessions.cookie_in(h))
    else {
        return CookieAuth::Absent;
    };
    let Some(found) = st.sessions.find(id, Instant::now()) else {
        return CookieAuth::Absent;
    };
    let Some(token) = tokens.lookup_hash(&found.token_hash) else {
        // Revoked since sign-in: the session dies with its token.
        st.sessions.close(id);
        return CookieAuth::Absent;
    };
    let caller = Caller {
        actor: token.name.as_str().into(),
        role: Some(token.role),
        scope: Arc::new(token.scope.clone()),
        client: client.clone(),
    };
    if changes_state(method) {
        let given = headers
            .get(signin::CSRF_HEADER)
            .and_then(|v| v.to_str().ok());
        if !csrf_matches(&found.csrf, given) {
            tracing::warn!(actor = %caller.actor, client = %client, path,
                "a change sent with a sign-in cookie but without its CSRF token: refused (403)");
            let filters = serde_json::json!({
                "method": method.as_str(),
                "path": path,
            });
            let entry = caller.entry("csrf", Vec::new(), filters, "denied");
            let resp = error(
                StatusCode::FORBIDDEN,
                "forbidden: a change made with the sign-in cookie needs the session's X-CSRF-Token header",
            );
            return CookieAuth::Refused(st.answer(entry, resp).await);
        }
    }
    CookieAuth::Caller(
        caller,
        SignedIn {
            id: id.into(),
            csrf: found.csrf.into(),
        },
    )
}

/// The page's shell and assets (public: see [`is_public`]).
pub(super) fn page_routes(web: bool) -> Router<ApiState> {
    if !web {
        return Router::new();
    }
    Router::new()
        .route("/", get(page))
        .route("/live", get(page))
        .route("/recordings/{id}", get(page))
        .route("/assets/app.js", get(app_js))
        .route("/assets/app.css", get(app_css))
}

/// The API the page adds: sign-in (when the page is served), who the
/// caller is, and peaks.
pub(super) fn api_routes(web: bool) -> Router<ApiState> {
    let r = Router::new()
        .route("/api/v1/me", get(me))
        .route("/api/v1/recordings/{id}/files/{name}/peaks", get(peaks));
    if !web {
        return r;
    }
    r.route("/api/v1/login", post(login))
        .route("/api/v1/logout", post(logout))
}

fn asset(ctype: &'static str, body: &'static str) -> Response {
    let mut r = Response::new(Body::from(body));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Recording ids are in the page's URLs: never sent elsewhere.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    // Small, and must change with the binary: revalidated each time.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

async fn page() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn app_css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

/// The body of `POST /api/v1/login`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    token: String,
}

/// Largest sign-in body read.
const MAX_LOGIN_BODY: usize = 4096;

/// `POST /api/v1/login` `{"token": "srs_..."}`: a session cookie for that
/// token, and who it is (as [`me`]).
async fn login(State(st): State<ApiState>, req: Request) -> Response {
    let client: Arc<str> = req
        .extensions()
        .get::<ConnectInfo<ClientAddr>>()
        .map_or_else(|| "unknown".into(), |c| c.0 .0.to_string().into());
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    // A form post from another site cannot send this type without a
    // CORS preflight, which this server never grants.
    if !json {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the token as JSON: Content-Type: application/json, {\"token\": \"srs_...\"}",
        );
    }
    let body = match axum::body::to_bytes(req.into_body(), MAX_LOGIN_BODY).await {
        Ok(b) => b,
        Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "sign-in body too large"),
    };
    let Login { token: secret } = match serde_json::from_slice(&body) {
        Ok(l) => l,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("sign-in body: {e}")),
    };
    let tokens = st.access.tokens();
    if !tokens.required {
        return error(
            StatusCode::BAD_REQUEST,
            "no API token exists: the API is open and the page needs no sign-in",
        );
    }
    let Some(token) = tokens.lookup(&secret) else {
        st.access
            .note_unauthenticated(&client, "sign-in with an unknown or revoked token");
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid token: unknown or revoked",
        );
    };
    let caller = Caller {
        actor: token.name.as_str().into(),
        role: Some(token.role),
        scope: Arc::new(token.scope.clone()),
        client,
    };
    if !caller.allows(Right::Search) {
        let entry = caller.entry("login", Vec::new(), serde_json::json!({}), "denied");
        let resp = error(
            StatusCode::FORBIDDEN,
            format!(
                "forbidden: the role {} reads no recordings, so it cannot use the web page",
                token.role
            ),
        );
        return st.answer(entry, resp).await;
    }
    // Audited before the session exists: an entry that cannot be written
    // leaves no session behind.
    let entry = caller.entry("login", Vec::new(), serde_json::json!({}), "ok");
    if let Err(r) = st.access.record(entry).await {
        return r;
    }
    let opened = match st.sessions.open(hash_secret(&secret), Instant::now()) {
        Ok(o) => o,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    let mut resp = Json(whoami(&caller, true, Some(&opened.csrf))).into_response();
    if let Ok(v) = HeaderValue::from_str(&st.sessions.set_cookie(&opened.id)) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `POST /api/v1/logout`: ends the cookie's session (204, the cookie
/// cleared). Needs the CSRF token like every change.
async fn logout(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    signed: Option<Extension<SignedIn>>,
) -> Response {
    let mut resp = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(&st.sessions.clear_cookie()) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    let Some(Extension(signed)) = signed else {
        return resp;
    };
    let entry = caller.entry("logout", Vec::new(), serde_json::json!({}), "ok");
    if let Err(r) = st.access.record(entry).await {
        return r;
    }
    st.sessions.close(&signed.id);
    resp
}

/// Who the caller is and what the role allows, for the page to show only
/// what will work.
fn whoami(caller: &Caller, access_control: bool, csrf: Option<&str>) -> serde_json::Value {
    let scope: &Scope = &caller.scope;
    serde_json::json!({
        "actor": &*caller.actor,
        "role": caller.role,
        "scopes": scope.items(),
        "access_control": access_control,
        "signed_in": csrf.is_some(),
        "csrf": csrf,
        "rights": {
            "search": caller.allows(Right::Search),
            "view": caller.allows(Right::View),
            "live": caller.allows(Right::Live),
            "download": caller.allows(Right::Download),
            "hold": caller.allows(Right::Hold),
            "delete": caller.allows(Right::Delete),
            "audit": caller.allows_global(Right::ReadAudit),
        },
    })
}

/// `GET /api/v1/me`: the caller (its token's name, role and scopes, the
/// rights they give) and, when signed in, the session's CSRF token. Shows
/// no recording: not audited.
async fn me(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    signed: Option<Extension<SignedIn>>,
) -> Response {
    let required = st.access.tokens().required;
    let csrf = signed.as_ref().map(|Extension(s)| &*s.csrf);
    let mut resp = Json(whoami(&caller, required, csrf)).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The parameters of the peaks endpoint.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PeaksQuery {
    /// Buckets (default [`peaks::DEFAULT_POINTS`], at most
    /// [`peaks::MAX_POINTS`]: more is cut to it).
    points: Option<usize>,
}

/// `GET /api/v1/recordings/{id}/files/{name}/peaks?points=N`: the min and
/// max sample of each of N buckets of a WAV file, per channel. Viewer and
/// above (peaks are a picture of loudness, not audio: no word can be
/// recovered from 4,000 pairs of numbers); audited as `view`.
async fn peaks(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    ids: Result<Path<(String, String)>, PathRejection>,
    q: Result<QueryParams<PeaksQuery>, QueryRejection>,
) -> Response {
    let Path((id, name)) = match ids {
        Ok(ids) => ids,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let q = match q {
        Ok(QueryParams(q)) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let asked = q.points.unwrap_or(peaks::DEFAULT_POINTS);
    if asked == 0 {
        return error(StatusCode::BAD_REQUEST, "invalid points: at least 1");
    }
    let points = asked.min(peaks::MAX_POINTS);
    let filters = serde_json::json!({ "id": id, "file": name, "peaks": points });
    if !caller.allows(Right::View) {
        return st.deny(&caller, Right::View, "view", filters).await;
    }
    let answer = |rid: Vec<String>, outcome: &str, resp: Response| {
        let entry = caller.entry("view", rid, filters.clone(), outcome);
        st.answer(entry, resp)
    };
    let meta = match find(&st, id, caller.scope.clone()).await {
        Ok(Some(m)) => m,
        Ok(None) => return answer(Vec::new(), "not-found", no_such_recording()).await,
        Err(r) => return r,
    };
    let rid = vec![meta.recording_id.clone()];
    let Some(f) = meta.files.iter().find(|f| f.name == name) else {
        let resp = error(StatusCode::NOT_FOUND, "no such file in this recording");
        return answer(rid, "not-found", resp).await;
    };
    if f.format == Format::OggOpus || f.name.ends_with(".opus") {
        let resp = error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "peaks are computed from WAV files: this file is Ogg Opus; ask for the WAV of the same stream",
        );
        return answer(rid, "unsupported", resp).await;
    }
    // Encrypted at rest (issue 15): the peaks are read through the
    // decryption, which needs an identity like a download does.
    let decryptor = match (&f.encryption, &st.decryptor) {
        (None, _) => None,
        (Some(_), Some(d)) => Some(d.clone()),
        (Some(_), None) => {
            let resp = error(StatusCode::CONFLICT, CryptError::NoIdentity);
            return answer(rid, "encrypted", resp).await;
        }
    };
    let (root, dir, fname) = (
        st.drop_root.clone(),
        meta.path.clone(),
        f.stored_name().to_string(),
    );
    let computed = tokio::task::spawn_blocking(move || {
        let (file, len) = open_recording_file(&root, &dir, &fname)?;
        match decryptor {
            None => Ok::<_, Refused>(peaks::compute(file, Some(len), points)?),
            Some(d) => {
                let path = root.join(&dir).join(&fname);
                let (plain, len) = d.open(file, &path).map_err(Refused::Decrypt)?;
                Ok(peaks::compute(plain, Some(len), points)?)
            }
        }
    })
    .await;
    let p = match computed {
        Ok(Ok(p)) => p,
        Ok(Err(Refused::Open(super::FileRefused::Io(e))))
            if e.kind() == std::io::ErrorKind::NotFound =>
        {
            let resp = error(StatusCode::NOT_FOUND, "file missing from the drop");
            return answer(rid, "not-found", resp).await;
        }
        Ok(Err(Refused::Open(e))) => {
            tracing::warn!(recording_id = %meta.recording_id, file = %f.name, error = %e,
                "refused to read a recording's file for peaks");
            let resp = error(StatusCode::NOT_FOUND, "no such file in this recording");
            return answer(rid, "not-found", resp).await;
        }
        Ok(Err(Refused::Peaks(PeaksError::Io(e)))) => {
            return error(StatusCode::INTERNAL_SERVER_ERROR, e)
        }
        Ok(Err(Refused::Decrypt(e))) => {
            tracing::warn!(error = %e, "cannot decrypt a recording's file for peaks");
            let resp = error(StatusCode::CONFLICT, e);
            return answer(rid, "undecryptable", resp).await;
        }
        Ok(Err(Refused::Peaks(e))) => {
            let resp = error(StatusCode::UNSUPPORTED_MEDIA_TYPE, e);
            return answer(rid, "unsupported", resp).await;
        }
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    let body = serde_json::json!({
        "recording_id": meta.recording_id,
        "file": f.name,
        "format": f.format,
        "labels": f.labels,
        "sample_rate": p.sample_rate,
        "channels": p.channels,
        "frames": p.frames,
        "duration_ms": p.duration_ms,
        "points": p.points,
        "peaks": p.peaks,
    });
    answer(rid, "ok", Json(body).into_response()).await
}

/// Why peaks could not be computed.
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("{0}")]
    Open(#[from] super::FileRefused),
    #[error("{0}")]
    Peaks(#[from] PeaksError),
    #[error("{0}")]
    Decrypt(CryptError),
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_assets_are_embedded_and_load_nothing_from_elsewhere() {
        for text in [super::INDEX_HTML, super::APP_JS, super::APP_CSS] {
            assert!(!text.is_empty());
            for outside in ["http://", "https://", "//cdn", "fonts.googleapis"] {
                assert!(
                    !text.contains(outside),
                    "an asset refers to another origin: {outside}"
                );
            }
            assert!(
                !text.contains("localStorage"),
                "no secret store in the page"
            );
        }
        // No inline script or style: the CSP forbids them.
        assert!(!super::INDEX_HTML.contains("<script>"));
        assert!(!super::INDEX_HTML.contains("style="));
        assert!(super::INDEX_HTML.contains("/assets/app.js"));
    }
}
