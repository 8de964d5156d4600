//! The API's endpoints of issue 14 (docs/api.md: Call events, Webhooks,
//! Metrics), and the `attached.KEY=VALUE` filters of a search.
//!
//! - `POST /api/v1/call-events` (role `integration` or `admin`): one event
//!   or an array, checked whole ([`crate::events::parse_events`]: a bad
//!   field is a 400 naming it, and nothing is stored), then stored and tied
//!   by the events thread; `202 {"accepted": N, "duplicates": D}` once
//!   committed, audited (`call-events`, the recordings it reached).
//! - `GET /api/v1/webhooks/deliveries[?failed=true&limit=N]` (admin): the
//!   outbox, newest first; `POST /api/v1/webhooks/deliveries/{id}/retry`
//!   (admin) sends one again.
//! - `GET /metrics` (viewer, listener, admin; not integration): the text
//!   format of [`crate::metrics`]. Not audited: it shows no recording.

use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Extension, Path, Query as QueryParams, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{error, filters_of, json_bytes, ApiState, Caller};
use crate::auth::Right;
use crate::events::worker::PostError;
use crate::store::query::Query;

/// Prefix of an attached-data filter in a search's query string.
pub const ATTACHED_PREFIX: &str = "attached.";

/// A search's query string: the `attached.KEY=VALUE` pairs (repeatable,
/// exact) apart, the rest read as [`Query`] (unknown names refused).
pub fn search_query(uri: &Uri) -> Result<Query, String> {
    let raw = uri.query().unwrap_or("");
    let mut kept = Vec::new();
    let mut attached = Vec::new();
    for part in raw.split('&').filter(|p| !p.is_empty()) {
        let one: Uri = format!("/?{part}")
            .parse()
            .map_err(|e| format!("bad query string: {e}"))?;
        let pairs = QueryParams::<Vec<(String, String)>>::try_from_uri(&one)
            .map_err(|e| e.body_text())?
            .0;
        match pairs.into_iter().next() {
            Some((k, v)) if k.starts_with(ATTACHED_PREFIX) => {
                let key = k[ATTACHED_PREFIX.len()..].to_string();
                if key.trim().is_empty() {
                    return Err("invalid attached: expected attached.KEY=VALUE with a key".into());
                }
                attached.push((key, v));
            }
            _ => kept.push(part),
        }
    }
    let rest: Uri = format!("/?{}", kept.join("&"))
        .parse()
        .map_err(|e| format!("bad query string: {e}"))?;
    let mut q = QueryParams::<Query>::try_from_uri(&rest)
        .map_err(|e: QueryRejection| e.body_text())?
        .0;
    q.attached = attached;
    Ok(q)
}

/// `POST /api/v1/call-events`.
pub(super) async fn call_events(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Response {
    if !caller.allows(Right::PostEvents) {
        return st
            .deny(
                &caller,
                Right::PostEvents,
                "call-events",
                serde_json::json!({}),
            )
            .await;
    }
    let events = match crate::events::parse_events(&body, chrono::Utc::now()) {
        Ok(e) => e,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({
                    "error": e.to_string(),
                    "field": e.field,
                    "index": e.index,
                })),
            )
                .into_response()
        }
    };
    let Some(events_thread) = &st.events else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "call events are not taken by this server",
        );
    };
    let n = events.len();
    match events_thread.post(events).await {
        Ok(out) => {
            let filters = serde_json::json!({ "events": n, "duplicates": out.duplicates });
            let resp = (
                StatusCode::ACCEPTED,
                Json(serde_json::json!({
                    "accepted": out.accepted,
                    "duplicates": out.duplicates,
                })),
            )
                .into_response();
            st.answer(
                caller.entry("call-events", out.recordings, filters, "ok"),
                resp,
            )
            .await
        }
        Err(e) => {
            let mut r = error(StatusCode::SERVICE_UNAVAILABLE, &e);
            if matches!(e, PostError::Busy | PostError::Index(_)) {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            r
        }
    }
}

/// The query of `GET /api/v1/webhooks/deliveries`.
#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeliveriesQuery {
    /// Only dead deliveries and pending ones that failed at least once.
    #[serde(default)]
    failed: bool,
    /// At most this many (100 by default, at most 1000).
    #[serde(default)]
    limit: Option<usize>,
}

/// `GET /api/v1/webhooks/deliveries`.
pub(super) async fn deliveries(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    q: Result<QueryParams<DeliveriesQuery>, QueryRejection>,
) -> Response {
    if !caller.allows_global(Right::ReadWebhooks) {
        return st
            .deny(
                &caller,
                Right::ReadWebhooks,
                "webhook-deliveries",
                serde_json::json!({}),
            )
            .await;
    }
    let q = match q {
        Ok(QueryParams(q)) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let limit = q.limit.unwrap_or(100);
    if limit > 1000 {
        return error(
            StatusCode::BAD_REQUEST,
            format!("invalid limit: at most 1000, got {limit}"),
        );
    }
    let filters = filters_of(&q);
    let failed = q.failed;
    let listed = st
        .pool
        .run(move |index| match index {
            Some(index) => Ok(crate::webhooks::outbox::list(index.conn(), failed, limit)
                .map_err(|e| e.to_string())),
            None => Ok(Ok(Vec::new())),
        })
        .await;
    match listed {
        Ok(Ok(list)) => {
            let bytes =
                serde_json::to_vec(&serde_json::json!({ "deliveries": list })).unwrap_or_default();
            st.answer(
                caller.entry("webhook-deliveries", Vec::new(), filters, "ok"),
                json_bytes(bytes),
            )
            .await
        }
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(e) => e.into_response(),
    }
}

/// `POST /api/v1/webhooks/deliveries/{id}/retry`.
pub(super) async fn retry_delivery(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let Path(id) = match id {
        Ok(id) => id,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let filters = serde_json::json!({ "id": id });
    // A change: an admin token, never anonymous.
    if caller.role.is_none() || !caller.allows_global(Right::RetryWebhooks) {
        return st
            .deny(&caller, Right::RetryWebhooks, "webhook-retry", filters)
            .await;
    }
    let Some(events_thread) = &st.events else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "webhooks are not run by this server",
        );
    };
    match events_thread.retry(id.clone()).await {
        Ok(true) => {
            let resp = Json(serde_json::json!({ "retried": id })).into_response();
            st.answer(
                caller.entry("webhook-retry", Vec::new(), filters, "ok"),
                resp,
            )
            .await
        }
        Ok(false) => error(
            StatusCode::NOT_FOUND,
            "no such delivery waiting or dead (delivered ones are not sent again)",
        ),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

/// `GET /metrics`.
pub(super) async fn metrics(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> Response {
    if !caller.allows(Right::Metrics) {
        return st
            .deny(&caller, Right::Metrics, "metrics", serde_json::json!({}))
            .await;
    }
    let text = st.health.metrics.render().await;
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
        )],
        text,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attached_pairs_are_read_apart_and_decoded() {
        let uri: Uri =
            "/api/v1/recordings?dn=7001&attached.case%20no=C%2D42&attached.queue=sales&limit=5"
                .parse()
                .unwrap();
        let q = search_query(&uri).unwrap();
        assert_eq!(q.dn.as_deref(), Some("7001"));
        assert_eq!(q.limit, Some(5));
        assert_eq!(
            q.attached,
            [
                ("case no".to_string(), "C-42".to_string()),
                ("queue".to_string(), "sales".to_string())
            ]
        );
        let bad: Uri = "/x?attached.=1".parse().unwrap();
        assert!(search_query(&bad).unwrap_err().contains("attached"));
        let unknown: Uri = "/x?attached=1".parse().unwrap();
        assert!(search_query(&unknown).unwrap_err().contains("attached"));
        let none: Uri = "/x".parse().unwrap();
        assert_eq!(search_query(&none).unwrap(), Query::default());
    }
}
