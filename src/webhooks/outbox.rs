//! The webhook outbox: table `webhook_deliveries` of the index (schema in
//! [`crate::events::store::MIGRATION`]).
//!
//! Why the index and not a spool directory in the drop: a delivery is
//! written in the same transaction as what it announces (call events tied
//! to a recording), it survives restarts with the index, the admin API and
//! `srs webhooks` list and retry it with one query, and the drop stays
//! what QM tools read (recordings only). Its writes are small and batched
//! by the events thread, never by the publisher.
//!
//! A row is `pending` (due at `next_ms`), `delivered` (a 2xx came back;
//! pruned after [`KEEP_DELIVERED_MS`]) or `dead` (its `retry_for` ran out,
//! or its receiver left the config): the dead-letter list.

use crate::params;
use crate::store::db::{Db, OptionalExt};
use chrono::{DateTime, Utc};

use super::WebhookConfig;

/// How long delivered rows are kept (for `GET /api/v1/webhooks/deliveries`).
pub const KEEP_DELIVERED_MS: i64 = 7 * 24 * 3600 * 1000;

/// A delivery to attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: String,
    pub url: String,
    pub event: String,
    pub body: String,
    pub attempts: u32,
    pub created_ms: i64,
}

/// A delivery as listed (API, CLI).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeliveryInfo {
    pub id: String,
    pub url: String,
    pub event: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recording_id: Option<String>,
    pub status: String,
    pub attempts: u32,
    pub created_at: String,
    /// When the next attempt is due (pending only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_attempt_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When it was delivered, or declared dead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub done_at: Option<String>,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    crate::events::utc_millis(t)
}

fn ms_to_rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(rfc3339)
        .unwrap_or_default()
}

/// Queues `event` about `recording` for every webhook subscribed to it;
/// returns how many deliveries were queued. The body is made once here, so
/// that every retry sends the same bytes (and signature).
pub fn enqueue(
    conn: &Db,
    hooks: &[WebhookConfig],
    event: &str,
    recording_id: Option<&str>,
    recording: &serde_json::Value,
    now: DateTime<Utc>,
) -> crate::store::db::DbResult<usize> {
    let mut n = 0;
    let mut ins = conn.prepare_cached(
        "INSERT INTO webhook_deliveries
             (id, url, event, recording_id, body, created_at, created_ms, status, attempts, next_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', 0, ?7)",
    )?;
    for hook in hooks.iter().filter(|h| h.wants(event)) {
        let id = uuid::Uuid::now_v7().to_string();
        let at = rfc3339(now);
        let body = serde_json::json!({
            "event": event,
            "delivery": id,
            "at": at,
            "recording": recording,
        })
        .to_string();
        ins.execute(params![
            id,
            hook.url,
            event,
            recording_id,
            body,
            at,
            now.timestamp_millis()
        ])?;
        n += 1;
    }
    Ok(n)
}

/// Pending deliveries due at `now_ms`, soonest first, at most `limit`.
pub fn due(conn: &Db, now_ms: i64, limit: usize) -> crate::store::db::DbResult<Vec<Delivery>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, url, event, body, attempts, created_ms FROM webhook_deliveries
         WHERE status = 'pending' AND next_ms <= ?1 ORDER BY next_ms LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![now_ms, limit as i64], |r| {
        Ok(Delivery {
            id: r.get(0)?,
            url: r.get(1)?,
            event: r.get(2)?,
            body: r.get(3)?,
            attempts: r.get(4)?,
            created_ms: r.get(5)?,
        })
    })?;
    rows.collect()
}

/// The receiver took it (2xx).
pub fn delivered(conn: &Db, id: &str, now: DateTime<Utc>) -> crate::store::db::DbResult<()> {
    conn.prepare_cached(
        "UPDATE webhook_deliveries SET status = 'delivered', attempts = attempts + 1,
             last_at = ?2, done_at = ?2, last_error = NULL
         WHERE id = ?1 AND status = 'pending'",
    )?
    .execute(params![id, rfc3339(now)])?;
    Ok(())
}

/// An attempt failed: due again at `next_ms`, or dead (`None`).
pub fn failed(
    conn: &Db,
    id: &str,
    error: &str,
    now: DateTime<Utc>,
    next_ms: Option<i64>,
) -> crate::store::db::DbResult<()> {
    let at = rfc3339(now);
    match next_ms {
        Some(next) => conn
            .prepare_cached(
                "UPDATE webhook_deliveries SET attempts = attempts + 1, last_at = ?2,
                     last_error = ?3, next_ms = ?4
                 WHERE id = ?1 AND status = 'pending'",
            )?
            .execute(params![id, at, error, next])?,
        None => conn
            .prepare_cached(
                "UPDATE webhook_deliveries SET status = 'dead', attempts = attempts + 1,
                     last_at = ?2, last_error = ?3, done_at = ?2
                 WHERE id = ?1 AND status = 'pending'",
            )?
            .execute(params![id, at, error])?,
    };
    Ok(())
}

/// A pending delivery whose receiver is no longer configured: dead.
pub fn orphaned(conn: &Db, id: &str, now: DateTime<Utc>) -> crate::store::db::DbResult<()> {
    conn.prepare_cached(
        "UPDATE webhook_deliveries SET status = 'dead', done_at = ?2,
             last_error = 'no [[webhooks]] entry has this url any more'
         WHERE id = ?1 AND status = 'pending'",
    )?
    .execute(params![id, rfc3339(now)])?;
    Ok(())
}

/// Sends a dead (or pending) delivery again from now, with a fresh
/// `retry_for`; the id and body stay (receivers deduplicate by id).
/// `Ok(false)`: no such delivery, or it was delivered.
pub fn retry(conn: &Db, id: &str, now: DateTime<Utc>) -> crate::store::db::DbResult<bool> {
    let n = conn.execute(
        "UPDATE webhook_deliveries SET status = 'pending', next_ms = ?2, created_ms = ?2,
             done_at = NULL
         WHERE id = ?1 AND status IN ('dead', 'pending')",
        params![id, now.timestamp_millis()],
    )?;
    Ok(n > 0)
}

/// Deliveries not yet delivered nor dead.
pub fn backlog(conn: &Db) -> crate::store::db::DbResult<i64> {
    conn.query_row(
        "SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending'",
        [],
        |r| r.get(0),
    )
}

/// Removes delivered rows older than [`KEEP_DELIVERED_MS`].
pub fn prune(conn: &Db, now_ms: i64) -> crate::store::db::DbResult<usize> {
    conn.execute(
        "DELETE FROM webhook_deliveries WHERE status = 'delivered' AND created_ms < ?1",
        [now_ms - KEEP_DELIVERED_MS],
    )
}

/// Deliveries, newest first: all, or only the dead ones (`failed`) plus
/// the pending ones that failed at least once; at most `limit`.
pub fn list(
    conn: &Db,
    failed: bool,
    limit: usize,
) -> crate::store::db::DbResult<Vec<DeliveryInfo>> {
    let filter = if failed {
        "WHERE status = 'dead' OR (status = 'pending' AND attempts > 0)"
    } else {
        ""
    };
    let mut stmt = conn.prepare(&format!(
        "SELECT id, url, event, recording_id, status, attempts, created_at, next_ms, last_at,
                last_error, done_at
         FROM webhook_deliveries {filter} ORDER BY created_ms DESC, id DESC LIMIT ?1"
    ))?;
    let rows = stmt.query_map([limit as i64], |r| {
        let status: String = r.get(4)?;
        let next: i64 = r.get(7)?;
        Ok(DeliveryInfo {
            id: r.get(0)?,
            url: r.get(1)?,
            event: r.get(2)?,
            recording_id: r.get(3)?,
            next_attempt_at: (status == "pending").then(|| ms_to_rfc3339(next)),
            status,
            attempts: r.get(5)?,
            created_at: r.get(6)?,
            last_attempt_at: r.get(8)?,
            last_error: r.get(9)?,
            done_at: r.get(10)?,
        })
    })?;
    rows.collect()
}

/// One delivery's body (for `srs webhooks --show`... and tests).
pub fn body(conn: &Db, id: &str) -> crate::store::db::DbResult<Option<String>> {
    conn.query_row(
        "SELECT body FROM webhook_deliveries WHERE id = ?1",
        [id],
        |r| r.get(0),
    )
    .optional()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(url: &str, events: &[&str]) -> WebhookConfig {
        WebhookConfig {
            url: url.into(),
            secret: "s".into(),
            events: events.iter().map(|e| e.to_string()).collect(),
            retry_for: 60,
            timeout_ms: 1000,
            retry_initial_ms: 100,
            max_in_flight: 2,
        }
    }

    #[test]
    fn a_delivery_goes_from_pending_to_delivered_or_dead_and_back() {
        crate::testkit::pg::each_backend(
            "a_delivery_goes_from_pending_to_delivered_or_dead_and_back",
            |at| {
                let ix = crate::store::Index::open_at(at).unwrap();
                let c = ix.conn();
                let now = Utc::now();
                let hooks = [
                    hook("http://a/", &["recording.published"]),
                    hook("http://b/", &["recording.started"]),
                ];
                let rec = serde_json::json!({"recording_id": "r1"});
                assert_eq!(
                    enqueue(c, &hooks, "recording.published", Some("r1"), &rec, now).unwrap(),
                    1
                );
                let ms = now.timestamp_millis();
                let d = due(c, ms, 10).unwrap();
                assert_eq!(d.len(), 1);
                assert_eq!(d[0].url, "http://a/");
                let body: serde_json::Value = serde_json::from_str(&d[0].body).unwrap();
                assert_eq!(body["delivery"], d[0].id.as_str());
                assert_eq!(body["event"], "recording.published");
                assert_eq!(body["recording"]["recording_id"], "r1");
                failed(c, &d[0].id, "HTTP 500", now, Some(ms + 1000)).unwrap();
                assert!(due(c, ms, 10).unwrap().is_empty(), "not due yet");
                assert_eq!(due(c, ms + 1000, 10).unwrap()[0].attempts, 1);
                assert_eq!(
                    list(c, true, 10).unwrap().len(),
                    1,
                    "a failed attempt is listed"
                );
                failed(c, &d[0].id, "HTTP 500", now, None).unwrap();
                assert!(due(c, ms + 10_000, 10).unwrap().is_empty(), "dead");
                assert_eq!(backlog(c).unwrap(), 0);
                let l = list(c, true, 10).unwrap();
                assert_eq!((l[0].status.as_str(), l[0].attempts), ("dead", 2));
                assert!(retry(c, &d[0].id, now).unwrap());
                assert_eq!(backlog(c).unwrap(), 1);
                let again = due(c, ms, 10).unwrap();
                assert_eq!(again[0].body, d[0].body, "the same body and id");
                delivered(c, &d[0].id, now).unwrap();
                assert!(
                    !retry(c, &d[0].id, now).unwrap(),
                    "delivered stays delivered"
                );
                assert!(list(c, true, 10).unwrap().is_empty());
                assert_eq!(list(c, false, 10).unwrap()[0].status, "delivered");
                assert_eq!(prune(c, ms + KEEP_DELIVERED_MS + 1).unwrap(), 1);
            },
        );
    }
}
