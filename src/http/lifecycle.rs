//! The life of a recording through the API (docs/api.md; issue 15):
//!
//! - `PUT /api/v1/recordings/{id}/hold` (body optional: `{"reason": ".."}`)
//!   and `DELETE /api/v1/recordings/{id}/hold`: legal hold (right `Hold`);
//! - `DELETE /api/v1/recordings/{id}`: deletion (right `Delete`); a held
//!   recording is `409` with a JSON error naming the hold;
//! - `GET /api/v1/recordings/{id}/verify`: the integrity check (right
//!   `View`: hashes, no audio);
//! - the download of a file encrypted at rest, decrypted with the
//!   identities of `[encryption]` (HTTP Range included), or `409` saying
//!   the recording is encrypted and this server has no identity.
//!
//! Scopes apply as everywhere: a recording out of the token's scope is
//! not found. Each change is audited in the same transaction as the change
//! itself ([`crate::lifecycle`]); refusals and reads through the access
//! thread, like every other request.

use std::path::PathBuf;

use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{Extension, Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{error, find, no_such_recording, parse_range, ApiState, Caller, Streamed, CHUNK};
use crate::auth::{Right, Role};
use crate::lifecycle::{describe, LifecycleError, Who};
use crate::store::crypt::{self, CryptError};

/// The audit trail's name for the caller.
fn who(caller: &Caller) -> Who {
    Who {
        actor: caller.actor.to_string(),
        role: caller.role.map_or("none", Role::as_str).to_string(),
        client: caller.client.to_string(),
    }
}

/// A lifecycle error as an answer (not found is answered by the caller,
/// with its audit entry).
fn failure(e: &LifecycleError) -> Response {
    match e {
        LifecycleError::Held { id, hold } => (
            StatusCode::CONFLICT,
            Json(serde_json::json!({
                "error": format!("recording {id} is under legal hold ({}): release it first", describe(hold)),
                "recording_id": id,
                "hold": hold,
            })),
        )
            .into_response(),
        LifecycleError::Missing(_) => error(StatusCode::CONFLICT, e),
        LifecycleError::NotFound(_) | LifecycleError::NoIndex(_) => no_such_recording(),
        _ => {
            tracing::error!(error = %e, "a lifecycle change failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, e)
        }
    }
}

/// The body of `PUT .../hold`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct HoldBody {
    #[serde(default)]
    reason: Option<String>,
}

/// Runs a lifecycle change on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, LifecycleError> + Send + 'static,
) -> Result<T, LifecycleError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(LifecycleError::Replicas(format!("worker failed: {e}"))))
}

/// Runs `op` on the recording `id` with the caller's scope and name, on a
/// blocking thread (hold, release, delete).
async fn on_recording<T: Send + 'static>(
    st: &ApiState,
    caller: &Caller,
    id: &str,
    op: impl FnOnce(
            &crate::lifecycle::Lifecycle,
            &str,
            &crate::auth::Scope,
            &Who,
        ) -> Result<T, LifecycleError>
        + Send
        + 'static,
) -> Result<T, LifecycleError> {
    let (life, scope, w, rid) = (
        st.life.clone(),
        caller.scope.clone(),
        who(caller),
        id.to_string(),
    );
    blocking(move || op(&life, &rid, &scope, &w)).await
}

/// The `{id}` of the path, or the `400` to answer (boxed: a response is large).
fn path_id(id: Result<Path<String>, PathRejection>) -> Result<String, Box<Response>> {
    id.map(|Path(id)| id)
        .map_err(|e| Box::new(error(StatusCode::BAD_REQUEST, e.body_text())))
}

/// `PUT /api/v1/recordings/{id}/hold`: `200` with the recording's JSON
/// (its `hold` set).
pub(super) async fn hold(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Response {
    let id = match path_id(id) {
        Ok(id) => id,
        Err(r) => return *r,
    };
    let reason = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        match serde_json::from_slice::<HoldBody>(&body) {
            Ok(b) => b.reason,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("invalid body: {e} (expected {{\"reason\": \"...\"}} or nothing)"),
                )
            }
        }
    };
    let filters = serde_json::json!({ "id": id, "reason": reason });
    if !caller.allows(Right::Hold) {
        return st.deny(&caller, Right::Hold, "hold", filters).await;
    }
    match on_recording(&st, &caller, &id, move |life, rid, scope, w| {
        life.hold(rid, scope, reason, w)
    })
    .await
    {
        Ok(meta) => Json(meta).into_response(),
        Err(LifecycleError::NotFound(_)) => {
            let entry = caller.entry("hold", Vec::new(), filters, "not-found");
            st.answer(entry, no_such_recording()).await
        }
        Err(e) => failure(&e),
    }
}

/// `DELETE /api/v1/recordings/{id}/hold`: `200` with the recording's JSON
/// (no `hold`), whether or not it was held.
pub(super) async fn release(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let id = match path_id(id) {
        Ok(id) => id,
        Err(r) => return *r,
    };
    let filters = serde_json::json!({ "id": id });
    if !caller.allows(Right::Hold) {
        return st.deny(&caller, Right::Hold, "release", filters).await;
    }
    match on_recording(&st, &caller, &id, |life, rid, scope, w| {
        life.release(rid, scope, w)
    })
    .await
    {
        Ok((meta, _)) => Json(meta).into_response(),
        Err(LifecycleError::NotFound(_)) => {
            let entry = caller.entry("release", Vec::new(), filters, "not-found");
            st.answer(entry, no_such_recording()).await
        }
        Err(e) => failure(&e),
    }
}

/// `DELETE /api/v1/recordings/{id}`: `200` `{"deleted": id, "path": ..}`;
/// `409` when held (the error names the hold).
pub(super) async fn delete_recording(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let id = match path_id(id) {
        Ok(id) => id,
        Err(r) => return *r,
    };
    let filters = serde_json::json!({ "id": id });
    if !caller.allows(Right::Delete) {
        return st.deny(&caller, Right::Delete, "delete", filters).await;
    }
    let report = match on_recording(&st, &caller, &id, |life, rid, scope, w| {
        life.delete(&[rid.to_string()], scope, w, false)
    })
    .await
    {
        Ok(r) => r,
        Err(e) => return failure(&e),
    };
    if let Some(d) = report.deleted.first() {
        return Json(serde_json::json!({ "deleted": d.recording_id, "path": d.path }))
            .into_response();
    }
    if let Some(k) = report.held.into_iter().next() {
        return failure(&LifecycleError::Held {
            id: k.recording_id,
            hold: k.hold,
        });
    }
    let entry = caller.entry("delete", Vec::new(), filters, "not-found");
    st.answer(entry, no_such_recording()).await
}

/// `GET /api/v1/recordings/{id}/verify`: the integrity report
/// (`store::integrity::Report`), `200` whatever it finds.
pub(super) async fn verify(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let id = match path_id(id) {
        Ok(id) => id,
        Err(r) => return *r,
    };
    let filters = serde_json::json!({ "id": id });
    if !caller.allows(Right::View) {
        return st.deny(&caller, Right::View, "verify", filters).await;
    }
    let meta = match find(&st, id, caller.scope.clone()).await {
        Ok(Some(m)) => m,
        Ok(None) => {
            let entry = caller.entry("verify", Vec::new(), filters, "not-found");
            return st.answer(entry, no_such_recording()).await;
        }
        Err(r) => return r,
    };
    let root = st.drop_root.clone();
    let rid = vec![meta.recording_id.clone()];
    let report =
        match tokio::task::spawn_blocking(move || crate::store::integrity::verify(&root, &meta))
            .await
        {
            Ok(r) => r,
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
        };
    let outcome = if report.damaged() { "damaged" } else { "ok" };
    let entry = caller.entry("verify", rid, filters, outcome);
    st.answer(entry, Json(report).into_response()).await
}

/// A download being answered (what the plain path had gathered).
pub(super) struct Download<'a> {
    pub caller: &'a Caller,
    pub rid: Vec<String>,
    pub filters: serde_json::Value,
    pub range: Option<&'a str>,
    pub ctype: &'static str,
}

/// Serves a file encrypted at rest, decrypted (HTTP Range over the
/// plaintext), each piece decrypted on a blocking thread as the client
/// reads; or `409` when this server cannot decrypt it.
pub(super) async fn serve_encrypted(
    st: &ApiState,
    d: Download<'_>,
    file: std::fs::File,
    path: PathBuf,
) -> Response {
    let Download {
        caller,
        rid,
        filters,
        range,
        ctype,
    } = d;
    let Some(dec) = st.decryptor.clone() else {
        let entry = caller.entry("download", rid, filters, "encrypted");
        return st
            .answer(entry, error(StatusCode::CONFLICT, CryptError::NoIdentity))
            .await;
    };
    let opened = tokio::task::spawn_blocking(move || dec.open(file, &path)).await;
    let (mut reader, len) = match opened {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot decrypt a recording's file");
            let entry = caller.entry("download", rid, filters, "undecryptable");
            return st.answer(entry, error(StatusCode::CONFLICT, e)).await;
        }
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    let (a, b, partial) = match parse_range(range, len) {
        Ok(Some((a, b))) => (a, b, true),
        Ok(None) => (0, len.saturating_sub(1), false),
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
    // No unaudited download: the entry is written before the first byte.
    if let Err(r) = st
        .access
        .record(caller.entry("download", rid, filters, "ok"))
        .await
    {
        return r;
    }
    let count = if len == 0 { 0 } else { b - a + 1 };
    if a > 0 {
        use std::io::{Seek, SeekFrom};
        let sought = tokio::task::spawn_blocking(move || {
            let r = reader.seek(SeekFrom::Start(a));
            (reader, r)
        })
        .await;
        match sought {
            Ok((r, Ok(_))) => reader = r,
            Ok((_, Err(e))) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
        }
    }
    let pieces = futures_util::stream::unfold(
        (Some(reader), count),
        |(reader, left): (Option<crypt::DecryptingReader>, u64)| async move {
            let mut reader = reader?;
            if left == 0 {
                return None;
            }
            let want = left.min(CHUNK as u64) as usize;
            let read = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; want];
                let n = crypt::read_full(&mut reader, &mut buf);
                (reader, buf, n)
            })
            .await;
            Some(match read {
                Ok((reader, mut buf, Ok(n))) if n > 0 => {
                    buf.truncate(n);
                    (Ok(Bytes::from(buf)), (Some(reader), left - n as u64))
                }
                Ok((_, _, Ok(_))) => (
                    Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the encrypted file ended early",
                    )),
                    (None, 0),
                ),
                Ok((_, _, Err(e))) => (Err(e), (None, 0)),
                Err(e) => (Err(std::io::Error::other(e)), (None, 0)),
            })
        },
    );
    let mut builder = axum::http::Response::builder()
        .header(header::CONTENT_TYPE, ctype)
        .header(header::CONTENT_LENGTH, count)
        .header(header::ACCEPT_RANGES, "bytes");
    if partial {
        builder = builder
            .status(StatusCode::PARTIAL_CONTENT)
            .header(header::CONTENT_RANGE, format!("bytes {a}-{b}/{len}"));
    }
    let mut resp = builder
        .body(Body::from_stream(pieces))
        .unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e));
    resp.extensions_mut().insert(Streamed);
    resp
}
