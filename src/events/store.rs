//! Call events in the index (schema step [`MIGRATION`]): the events as
//! posted, which recording each belongs to, and what a search finds a
//! recording by through its events (attached data, DNs).
//!
//! - `call_events`: one row per posted event (`id`: arrival order), its
//!   CallUUID and ConnIDs as searched keys (ConnIDs in lower case), the
//!   whole event as JSON. Not a cache of the drop: the index is where
//!   events live until a recording takes them (then `call-events.json` in
//!   the drop has them too).
//! - `call_event_links`: recording -> event, as [`super::associate`] says.
//! - `recording_attached` (`key`, `value`): the merged attached data of a
//!   recording, indexed on (`key`, `value`) for `attached.KEY=VALUE`.
//! - `recording_event_dns`: every `this_dn`/`other_dn`/`agent_id` of a
//!   recording's events, indexed on `dn` for the `dn` filter.
//! - `call_events_sync`: recordings whose `call-events.json` must be
//!   written again (a durable to-do, in the same transaction as the links).
//!
//! [`relink`] recomputes one recording's links: when events arrive
//! ([`super::worker`]) and whenever the recording is written to the index
//! (publication, reindex: [`crate::store::index`] calls it in the same
//! transaction), whichever comes first.

use std::collections::{BTreeSet, HashSet};

use crate::params;
use crate::store::db::{Db, Dialect, OptionalExt};
use chrono::{DateTime, Utc};

use super::{
    associate, conn_key, merge_attached, utc_millis, CallEvent, Candidate, RecordingKeys,
    StoredEvent, CONN_ID_WINDOW_AFTER, CONN_ID_WINDOW_BEFORE,
};
use crate::recording::RecordingMeta;

/// Schema step of the call events and the webhook outbox
/// ([`crate::webhooks::outbox`]), appended to
/// [`crate::store::index::MIGRATIONS`].
pub const MIGRATION: &str = "CREATE TABLE call_events (
        id          INTEGER PRIMARY KEY,
        received_at TEXT NOT NULL,
        at          TEXT NOT NULL,
        event       TEXT NOT NULL,
        call_uuid   TEXT COLLATE NOCASE,
        conn_key    TEXT,
        prev_key    TEXT,
        digest      TEXT NOT NULL UNIQUE,
        json        TEXT NOT NULL
    );
    CREATE INDEX call_events_call_uuid ON call_events(call_uuid);
    CREATE INDEX call_events_conn_key ON call_events(conn_key, at);
    CREATE INDEX call_events_prev_key ON call_events(prev_key, at);
    CREATE TABLE call_event_links (
        recording_id TEXT NOT NULL,
        event_id     INTEGER NOT NULL,
        PRIMARY KEY (recording_id, event_id)
    ) WITHOUT ROWID;
    CREATE INDEX call_event_links_event ON call_event_links(event_id);
    CREATE TABLE recording_attached (
        recording_id TEXT NOT NULL,
        key          TEXT NOT NULL,
        value        TEXT NOT NULL,
        PRIMARY KEY (recording_id, key)
    ) WITHOUT ROWID;
    CREATE INDEX recording_attached_key_value ON recording_attached(key, value);
    CREATE TABLE recording_event_dns (
        recording_id TEXT NOT NULL,
        dn           TEXT NOT NULL,
        PRIMARY KEY (recording_id, dn)
    ) WITHOUT ROWID;
    CREATE INDEX recording_event_dns_dn ON recording_event_dns(dn);
    CREATE TABLE call_events_sync (
        recording_id TEXT PRIMARY KEY NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE webhook_deliveries (
        id           TEXT PRIMARY KEY NOT NULL,
        url          TEXT NOT NULL,
        event        TEXT NOT NULL,
        recording_id TEXT,
        body         TEXT NOT NULL,
        created_at   TEXT NOT NULL,
        created_ms   INTEGER NOT NULL,
        status       TEXT NOT NULL,
        attempts     INTEGER NOT NULL DEFAULT 0,
        next_ms      INTEGER NOT NULL,
        last_at      TEXT,
        last_error   TEXT,
        done_at      TEXT
    );
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries(status, next_ms);
    CREATE INDEX webhook_deliveries_created ON webhook_deliveries(created_ms);";

/// Most ConnID hops followed from one recording or event.
const MAX_HOPS: usize = 16;
/// Most candidate events read for one recording.
const MAX_CANDIDATES: usize = 10_000;
/// Most recordings one event can touch.
const MAX_RECORDINGS_PER_EVENT: usize = 100;

/// Stores one event; returns its id, or `None` when the same event (the
/// same JSON: a connector posting again after a lost answer) is stored
/// already.
pub fn insert(
    conn: &Db,
    e: &CallEvent,
    received_at: &str,
) -> crate::store::db::DbResult<Option<i64>> {
    let json = serde_json::to_string(e).unwrap_or_else(|_| "{}".into());
    let digest = crate::auth::sha256_hex(json.as_bytes());
    conn.prepare_cached(
        "INSERT INTO call_events
             (received_at, at, event, call_uuid, conn_key, prev_key, digest, json)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT DO NOTHING RETURNING id",
    )?
    .query_row(
        params![
            received_at,
            e.time,
            e.event,
            e.call_uuid,
            e.conn_id.as_deref().map(conn_key),
            e.previous_conn_id.as_deref().map(conn_key),
            digest,
            json
        ],
        |r| r.get(0),
    )
    .optional()
}

fn candidate(r: &crate::store::db::Row) -> crate::store::db::DbResult<Candidate> {
    let at: String = r.get(1)?;
    Ok(Candidate {
        id: r.get(0)?,
        at: DateTime::parse_from_rfc3339(&at)
            .ok()
            .map(|t| t.with_timezone(&Utc)),
        call_uuid: r.get(2)?,
        conn_id: r.get(3)?,
        previous_conn_id: r.get(4)?,
    })
}

const CANDIDATE_COLUMNS: &str = "id, at, call_uuid, conn_key, prev_key";

/// Events by CallUUID, then every event reachable from `seeds` through
/// ConnIDs between `from` and `to` (followed [`MAX_HOPS`] deep at most),
/// each once, at most [`MAX_CANDIDATES`].
fn reachable(
    conn: &Db,
    call_uuids: &[String],
    seeds: Vec<String>,
    from: &str,
    to: &str,
) -> crate::store::db::DbResult<Vec<Candidate>> {
    let mut seen: HashSet<i64> = HashSet::new();
    let mut out = Vec::new();
    let mut keys: HashSet<String> = seeds.iter().cloned().collect();
    let mut frontier = seeds;
    {
        // call_uuid is NOCASE on SQLite, indexed on lower() on PostgreSQL.
        let mut by_uuid = conn.prepare_cached(&match conn.dialect() {
            Dialect::Sqlite => {
                format!("SELECT {CANDIDATE_COLUMNS} FROM call_events WHERE call_uuid = ?1")
            }
            Dialect::Postgres => format!(
                "SELECT {CANDIDATE_COLUMNS} FROM call_events WHERE lower(call_uuid) = lower(?1)"
            ),
        })?;
        for u in call_uuids {
            for c in by_uuid.query_map([u], candidate)? {
                let c = c?;
                if seen.insert(c.id) {
                    for k in [&c.conn_id, &c.previous_conn_id].into_iter().flatten() {
                        if keys.insert(k.clone()) {
                            frontier.push(k.clone());
                        }
                    }
                    out.push(c);
                }
            }
        }
    }
    let mut by_conn = conn.prepare_cached(&format!(
        "SELECT {CANDIDATE_COLUMNS} FROM call_events WHERE conn_key = ?1 AND at >= ?2 AND at <= ?3
         UNION ALL
         SELECT {CANDIDATE_COLUMNS} FROM call_events WHERE prev_key = ?1 AND at >= ?2 AND at <= ?3"
    ))?;
    for _ in 0..MAX_HOPS {
        if frontier.is_empty() || out.len() >= MAX_CANDIDATES {
            break;
        }
        let mut next = Vec::new();
        for k in frontier {
            for c in by_conn.query_map(params![k, from, to], candidate)? {
                let c = c?;
                if seen.insert(c.id) {
                    for k in [&c.conn_id, &c.previous_conn_id].into_iter().flatten() {
                        if keys.insert(k.clone()) {
                            next.push(k.clone());
                        }
                    }
                    out.push(c);
                }
            }
        }
        frontier = next;
    }
    out.truncate(MAX_CANDIDATES);
    Ok(out)
}

/// The events that may belong to a recording with `keys`.
pub fn candidates(conn: &Db, keys: &RecordingKeys) -> crate::store::db::DbResult<Vec<Candidate>> {
    let (from, to) = keys.window();
    let from = from.map_or_else(|| "0".to_string(), utc_millis);
    let to = to.map_or_else(|| "9".to_string(), utc_millis);
    let uuids: Vec<String> = keys.call_uuid.iter().cloned().collect();
    let seeds = keys.conn_id.iter().map(|c| conn_key(c)).collect();
    reachable(conn, &uuids, seeds, &from, &to)
}

/// The indexed recordings an event may belong to: those of its CallUUID,
/// and those whose ConnID is reachable from its own (with the CallUUIDs
/// met on the way).
pub fn recordings_for(conn: &Db, e: &CallEvent) -> crate::store::db::DbResult<BTreeSet<String>> {
    let at = e.at().unwrap_or_else(Utc::now);
    let span = CONN_ID_WINDOW_BEFORE + CONN_ID_WINDOW_AFTER;
    let (from, to) = (utc_millis(at - span), utc_millis(at + span));
    let seeds: Vec<String> = [&e.conn_id, &e.previous_conn_id]
        .into_iter()
        .flatten()
        .map(|c| conn_key(c))
        .collect();
    let uuids: Vec<String> = e.call_uuid.iter().cloned().collect();
    let found = reachable(conn, &uuids, seeds.clone(), &from, &to)?;
    let mut uuid_set: BTreeSet<String> = uuids.iter().map(|u| u.to_ascii_lowercase()).collect();
    let mut conn_set: BTreeSet<String> = seeds.into_iter().collect();
    for c in &found {
        if let Some(u) = &c.call_uuid {
            uuid_set.insert(u.to_ascii_lowercase());
        }
        for k in [&c.conn_id, &c.previous_conn_id].into_iter().flatten() {
            conn_set.insert(k.clone());
        }
    }
    let mut out = BTreeSet::new();
    let mut by_uuid = conn.prepare_cached(match conn.dialect() {
        Dialect::Sqlite => "SELECT recording_id FROM recordings WHERE call_uuid = ?1 LIMIT ?2",
        Dialect::Postgres => {
            "SELECT recording_id FROM recordings WHERE lower(call_uuid) = lower(?1) LIMIT ?2"
        }
    })?;
    for u in &uuid_set {
        for id in by_uuid.query_map(params![u, MAX_RECORDINGS_PER_EVENT as i64], |r| r.get(0))? {
            out.insert(id?);
        }
    }
    let mut by_conn = conn.prepare_cached(
        "SELECT recording_id FROM correlation WHERE key = 'connid' AND value IN (?1, upper(?1))
         LIMIT ?2",
    )?;
    for k in &conn_set {
        for id in by_conn.query_map(params![k, MAX_RECORDINGS_PER_EVENT as i64], |r| r.get(0))? {
            out.insert(id?);
        }
        if out.len() >= MAX_RECORDINGS_PER_EVENT {
            break;
        }
    }
    Ok(out)
}

/// What [`relink`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Relinked {
    /// The recording is in the index.
    pub indexed: bool,
    /// Its set of events changed.
    pub changed: bool,
    /// Events newly tied to it.
    pub added: usize,
    /// The recording as it is now (with `call_events`, `attached_data`),
    /// when it has events.
    pub meta: Option<RecordingMeta>,
}

/// A recording's events in time order (then arrival order).
pub fn events_of(conn: &Db, recording_id: &str) -> crate::store::db::DbResult<Vec<StoredEvent>> {
    let mut stmt = conn.prepare_cached(
        "SELECT e.id, e.received_at, e.json FROM call_event_links l
         JOIN call_events e ON e.id = l.event_id
         WHERE l.recording_id = ?1 ORDER BY e.at, e.id",
    )?;
    let rows = stmt.query_map([recording_id], |r| {
        Ok((r.get::<i64>(0)?, r.get::<String>(1)?, r.get::<String>(2)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, received_at, json) = row?;
        let event = serde_json::from_str(&json).unwrap_or_else(|_| CallEvent {
            event: "unreadable".into(),
            ..Default::default()
        });
        out.push(StoredEvent {
            event_id: id,
            received_at,
            event,
        });
    }
    Ok(out)
}

/// Recomputes which events belong to the recording `recording_id` and
/// writes what follows from it: the links, the searched attached data and
/// DNs, the recording's JSON (`call_events`, `attached_data`) and, when the
/// set changed for a published recording, a `call_events_sync` to-do.
/// `meta`: the recording just written (publication, reindex), else read
/// from the index. `rewrite`: the JSON must be written even if the links
/// did not change (it was just replaced without its events). The caller
/// holds the transaction.
pub fn relink(
    conn: &Db,
    recording_id: &str,
    meta: Option<&RecordingMeta>,
    rewrite: bool,
) -> crate::store::db::DbResult<Relinked> {
    let mut meta = match meta {
        Some(m) => m.clone(),
        None => {
            let json: Option<String> = conn
                .prepare_cached("SELECT meta_json FROM recordings WHERE recording_id = ?1")?
                .query_row([recording_id], |r| r.get(0))
                .optional()?;
            match json.and_then(|j| serde_json::from_str::<RecordingMeta>(&j).ok()) {
                Some(m) => m,
                None => return Ok(Relinked::default()),
            }
        }
    };
    let keys = RecordingKeys::of(&meta);
    let mut ids = if keys.call_uuid.is_none() && keys.conn_id.is_none() {
        Vec::new()
    } else {
        associate(&keys, &candidates(conn, &keys)?)
    };
    ids.sort_unstable();
    let old: Vec<i64> = {
        let mut stmt = conn.prepare_cached(
            "SELECT event_id FROM call_event_links WHERE recording_id = ?1 ORDER BY event_id",
        )?;
        let rows = stmt.query_map([recording_id], |r| r.get(0))?;
        rows.collect::<crate::store::db::DbResult<_>>()?
    };
    let changed = ids != old;
    let mut out = Relinked {
        indexed: true,
        changed,
        added: ids.iter().filter(|i| old.binary_search(i).is_err()).count(),
        meta: None,
    };
    if !changed && (!rewrite || ids.is_empty()) {
        return Ok(out);
    }
    if changed {
        conn.prepare_cached("DELETE FROM call_event_links WHERE recording_id = ?1")?
            .execute([recording_id])?;
        let mut ins = conn.prepare_cached(
            "INSERT INTO call_event_links (recording_id, event_id) VALUES (?1, ?2)",
        )?;
        for id in &ids {
            ins.execute(params![recording_id, id])?;
        }
    }
    let events = events_of(conn, recording_id)?;
    let attached = merge_attached(&events);
    let dns: BTreeSet<&str> = events.iter().flat_map(|e| e.event.dns()).collect();
    for table in ["recording_attached", "recording_event_dns"] {
        conn.prepare_cached(&format!("DELETE FROM {table} WHERE recording_id = ?1"))?
            .execute([recording_id])?;
    }
    {
        let mut ins = conn.prepare_cached(
            "INSERT INTO recording_attached (recording_id, key, value) VALUES (?1, ?2, ?3)",
        )?;
        for (k, v) in &attached {
            ins.execute(params![recording_id, k, v])?;
        }
        let mut ins = conn
            .prepare_cached("INSERT INTO recording_event_dns (recording_id, dn) VALUES (?1, ?2)")?;
        for dn in dns {
            ins.execute(params![recording_id, dn])?;
        }
    }
    meta.call_events = events;
    meta.attached_data = attached;
    let json = serde_json::to_string(&meta).unwrap_or_default();
    conn.prepare_cached("UPDATE recordings SET meta_json = ?2 WHERE recording_id = ?1")?
        .execute(params![recording_id, json])?;
    if changed && !meta.path.is_empty() {
        conn.prepare_cached(
            "INSERT INTO call_events_sync (recording_id) VALUES (?1) ON CONFLICT DO NOTHING",
        )?
        .execute([recording_id])?;
    }
    out.meta = Some(meta);
    Ok(out)
}

/// Removes what ties a recording to its events (its row is being removed
/// from the index: reindex of a recording gone from the drop, deletion).
/// The events stay: another recording of the call may take them.
pub fn forget(conn: &Db, recording_id: &str) -> crate::store::db::DbResult<()> {
    for table in [
        "call_event_links",
        "recording_attached",
        "recording_event_dns",
        "call_events_sync",
    ] {
        conn.prepare_cached(&format!("DELETE FROM {table} WHERE recording_id = ?1"))?
            .execute([recording_id])?;
    }
    Ok(())
}

/// A recording is deleted (by id, by a retention rule, an erasure): the
/// call events tied to it that no other recording holds go with it, so
/// that retention and erasure cover the events' numbers and attached data
/// too. Run before [`forget`] removes its ties. Returns how many went.
pub fn delete_events_of(conn: &Db, recording_id: &str) -> crate::store::db::DbResult<usize> {
    conn.prepare_cached(
        "DELETE FROM call_events WHERE id IN
             (SELECT event_id FROM call_event_links WHERE recording_id = ?1)
         AND NOT EXISTS (SELECT 1 FROM call_event_links l
             WHERE l.event_id = call_events.id AND l.recording_id <> ?1)",
    )?
    .execute([recording_id])
}

/// Recordings whose `call-events.json` waits to be written: id, drop path,
/// and the recording's JSON.
pub fn pending_sync(
    conn: &Db,
    limit: usize,
) -> crate::store::db::DbResult<Vec<(String, String, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT s.recording_id, coalesce(r.path, ''), coalesce(r.meta_json, '')
         FROM call_events_sync s LEFT JOIN recordings r ON r.recording_id = s.recording_id
         LIMIT ?1",
    )?;
    let rows = stmt.query_map([limit as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    rows.collect()
}

/// The to-do of a recording done.
pub fn synced(conn: &Db, recording_id: &str) -> crate::store::db::DbResult<()> {
    conn.prepare_cached("DELETE FROM call_events_sync WHERE recording_id = ?1")?
        .execute([recording_id])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Index, Query};

    fn meta(id: &str, uuid: Option<&str>, conn: Option<&str>) -> RecordingMeta {
        let mut m = RecordingMeta {
            recording_id: id.into(),
            call_id: format!("call-{id}"),
            status: "complete".into(),
            started_at: "2026-11-23T10:00:00.000Z".into(),
            ended_at: "2026-11-23T10:05:00.000Z".into(),
            path: format!("2026/11/23/{id}"),
            ..Default::default()
        };
        if let Some(u) = uuid {
            m.correlation.insert("calluuid".into(), u.into());
        }
        if let Some(c) = conn {
            m.correlation.insert("connid".into(), c.into());
        }
        m
    }

    fn post(ix: &Index, json: &str) -> BTreeSet<String> {
        let now = DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut touched = BTreeSet::new();
        for e in super::super::parse_events(json.as_bytes(), now).unwrap() {
            insert(ix.conn(), &e, "2026-11-23T10:00:00.000Z").unwrap();
            touched.extend(recordings_for(ix.conn(), &e).unwrap());
        }
        for id in &touched {
            relink(ix.conn(), id, None, false).unwrap();
        }
        touched
    }

    fn ids(ix: &Index, q: Query) -> Vec<String> {
        ix.search(&q)
            .unwrap()
            .0
            .into_iter()
            .map(|m| m.recording_id)
            .collect()
    }

    #[test]
    fn events_before_and_after_publication_reach_the_recording_and_its_searches() {
        crate::testkit::pg::each_backend(
            "events_before_and_after_publication_reach_the_recording_and_its_searches",
            |at| {
                let ix = Index::open_at(at).unwrap();
                // Before the recording exists: stored, tied to nothing.
                let touched = post(
                    &ix,
                    r#"[{"event":"EventRinging","time":"2026-11-23T09:59:50Z","conn_id":"00A1","this_dn":"7001","user_data":{"case":"C-1"}},
                {"event":"EventEstablished","time":"2026-11-23T10:00:01Z","call_uuid":"U-1","conn_id":"00a1","agent_id":"alice"}]"#,
                );
                assert!(touched.is_empty());
                // Publication: the upsert ties them in its own transaction.
                ix.upsert(&meta("r1", Some("u-1"), Some("00a1"))).unwrap();
                let got = ix.get("r1").unwrap().unwrap();
                assert_eq!(got.call_events.len(), 2);
                assert_eq!(got.call_events[0].event.event, "EventRinging");
                assert_eq!(got.attached_data["case"], "C-1");
                let pending = pending_sync(ix.conn(), 10).unwrap();
                assert_eq!(pending.len(), 1, "call-events.json to write");
                // After: a transfer's new ConnID, then wrap-up data on it.
                let touched = post(
                    &ix,
                    r#"[{"event":"EventPartyChanged","time":"2026-11-23T10:03:00Z","conn_id":"00b2","previous_conn_id":"00a1","this_dn":"7002"},
                {"event":"EventAttachedDataChanged","time":"2026-11-23T13:00:00Z","conn_id":"00B2","user_data":{"case":"C-2","disposition":"sale"}}]"#,
                );
                assert_eq!(touched.into_iter().collect::<Vec<_>>(), ["r1"]);
                let got = ix.get("r1").unwrap().unwrap();
                assert_eq!(got.call_events.len(), 4);
                assert_eq!(got.attached_data["case"], "C-2");
                // A re-upsert (reindex) keeps them.
                ix.upsert(&meta("r1", Some("u-1"), Some("00a1"))).unwrap();
                assert_eq!(ix.get("r1").unwrap().unwrap().call_events.len(), 4);
                // Searches.
                ix.upsert(&meta("other", None, Some("ffff"))).unwrap();
                let q = |f: &dyn Fn(&mut Query)| {
                    let mut q = Query::default();
                    f(&mut q);
                    ids(&ix, q)
                };
                assert_eq!(
                    q(&|q| q.attached = vec![("case".into(), "C-2".into())]),
                    ["r1"]
                );
                assert!(
                    q(&|q| q.attached = vec![("case".into(), "C-1".into())]).is_empty(),
                    "latest wins"
                );
                assert_eq!(
                    q(&|q| q.attached = vec![
                        ("case".into(), "C-2".into()),
                        ("disposition".into(), "sale".into())
                    ]),
                    ["r1"]
                );
                assert!(q(&|q| q.attached = vec![
                    ("case".into(), "C-2".into()),
                    ("disposition".into(), "none".into())
                ])
                .is_empty());
                for dn in ["7001", "7002", "alice"] {
                    assert_eq!(q(&|q| q.dn = Some(dn.into())), ["r1"], "{dn}");
                }
                // Forgetting the recording leaves the events for another.
                forget(ix.conn(), "r1").unwrap();
                assert!(q(&|q| q.dn = Some("7002".into())).is_empty());
            },
        );
    }

    #[test]
    fn the_searches_use_their_indexes() {
        crate::testkit::pg::each_backend("the_searches_use_their_indexes", |at| {
            // SQLite's plans; PostgreSQL's are in docs/performance.md
            // (benches/index_scale.rs), on a table large enough for them.
            if at.is_postgres() {
                return;
            }
            let ix = Index::open_at(at).unwrap();
            let q = Query {
                dn: Some("7001".into()),
                attached: vec![("case".into(), "C-1".into())],
                ..Default::default()
            };
            let plan = crate::store::index::explain_search(&ix, &q).unwrap();
            for want in [
                "USING COVERING INDEX recording_attached_key_value (key=? AND value=?)",
                "USING COVERING INDEX recording_event_dns_dn (dn=?)",
                "INDEX recording_dns_dn (dn=?)",
                // ... and each recording is then found by its key, never scanned.
                "SEARCH r USING INDEX sqlite_autoindex_recordings_1 (recording_id=?)",
            ] {
                assert!(plan.contains(want), "{want} not in the plan:\n{plan}");
            }
            assert!(!plan.contains("SCAN"), "{plan}");
            // Association's lookups too.
            let plan: Vec<String> = {
                let mut stmt = ix
                .conn()
                .prepare(
                    "EXPLAIN QUERY PLAN SELECT id FROM call_events WHERE conn_key = ?1 AND at >= ?2 AND at <= ?3
                     UNION ALL SELECT id FROM call_events WHERE prev_key = ?1 AND at >= ?2 AND at <= ?3",
                )
                .unwrap();
                stmt.query_map(params!["a", "0", "9"], |r| r.get::<String>(3))
                    .unwrap()
                    .map(Result::unwrap)
                    .collect()
            };
            let plan = plan.join("\n");
            assert!(plan.contains("INDEX call_events_conn_key"), "{plan}");
            assert!(plan.contains("INDEX call_events_prev_key"), "{plan}");
        });
    }
}
