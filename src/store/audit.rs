//! The audit trail: who searched, viewed, downloaded or changed what, and
//! when (`docs/api.md`, Audit trail; `srs audit`).
//!
//! One table in the index, `audit`, one row per action, appended and never
//! changed: triggers refuse `UPDATE` and `DELETE` (a guard against
//! mistakes; whoever can write the file can drop them), and each row
//! carries the hash of the one before, so that any change to a row, a row
//! removed or inserted in the middle, breaks the chain ([`verify`]):
//!
//! ```text
//! hash = hex(SHA-256(prev_hash || canonical))
//! canonical = {"seq":..,"at":"..","actor":"..","role":"..","client":"..","action":"..",
//!              "recording_ids":"<the column's text>","recording_count":..,
//!              "filters":"<the column's text>","outcome":".."}
//! ```
//!
//! `canonical` is that JSON object, keys in that order, no blanks, strings
//! escaped as serde_json does; `prev_hash` of the first row (`seq` 1) is 64
//! zeros. The text columns enter it as stored, so the hash never depends
//! on how JSON is re-serialised.
//!
//! What the chain cannot show alone: the newest rows removed (the chain
//! just ends earlier) or the whole chain recomputed by someone who can
//! write the file. [`verify`] reports the head (last `seq` and hash): keep
//! it elsewhere (the server logs it at start; a log shipper or a daily
//! `srs audit --verify` into another system anchors it).
//!
//! Writers: the API (one thread, group commits) and the command-line tools
//! (other processes). Each append is one write transaction begun with
//! `BEGIN IMMEDIATE`, in which the last hash is read and the new rows
//! written, so that concurrent writers still make one chain.
//!
//! A search records the recording ids it returned when they are at most
//! [`MAX_IDS`], else only their number (`recording_count`).
//! `audit_recordings` indexes the recorded ids (for `--recording`); it is
//! checked against the rows by [`verify`].

use crate::params;
use crate::store::db::{Db, DbError, OptionalExt, Value};

use super::query::{time_condition, utc_millis, QueryError};
use crate::auth::sha256_hex;

/// `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Most recording ids one entry lists; past it, only their number.
pub const MAX_IDS: usize = 100;

/// Default and largest number of entries of one read through the API.
pub const DEFAULT_LIMIT: usize = 1000;
pub const MAX_LIMIT: usize = 10_000;

/// The first schema version with an audit trail.
pub const AUDIT_VERSION: u32 = 3;

/// Entries read at once by [`verify`].
const VERIFY_PAGE: usize = 10_000;

/// Why the audit trail could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit trail: {0}")]
    Db(#[from] crate::store::db::DbError),
    #[error("audit trail: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Query(#[from] QueryError),
    #[error("invalid limit: at most {MAX_LIMIT}, got {0}")]
    Limit(usize),
}

/// One action to record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Entry {
    /// The token's name, `cli:<user>`, or `anonymous` (no tokens exist).
    pub actor: String,
    /// The token's role (`none` for anonymous, `cli` for the tools).
    pub role: String,
    /// `ip:port` of the client, `local` for the tools.
    pub client: String,
    /// `search`, `view`, `download`, `live`, `audit`, `token-add`, ...
    pub action: String,
    /// Every recording the action touched (only the number is kept past
    /// [`MAX_IDS`]).
    pub recording_ids: Vec<String>,
    /// The request's filters and parameters (a JSON object).
    pub filters: serde_json::Value,
    /// `ok`, `denied` (403), `not-found`, `error`, ...
    pub outcome: String,
}

/// One entry as stored.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Row {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub role: String,
    pub client: String,
    pub action: String,
    pub recording_ids: Vec<String>,
    pub recording_count: i64,
    pub filters: serde_json::Value,
    pub outcome: String,
    pub prev_hash: String,
    pub hash: String,
}

/// The hashed form of a row (module doc).
#[derive(serde::Serialize)]
struct Canonical<'a> {
    seq: i64,
    at: &'a str,
    actor: &'a str,
    role: &'a str,
    client: &'a str,
    action: &'a str,
    recording_ids: &'a str,
    recording_count: i64,
    filters: &'a str,
    outcome: &'a str,
}

/// A row's columns as stored, text as text.
#[derive(Debug, Clone)]
struct Raw {
    seq: i64,
    at: String,
    actor: String,
    role: String,
    client: String,
    action: String,
    recording_ids: String,
    recording_count: i64,
    filters: String,
    outcome: String,
    prev_hash: String,
    hash: String,
}

impl Raw {
    fn canonical(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&Canonical {
            seq: self.seq,
            at: &self.at,
            actor: &self.actor,
            role: &self.role,
            client: &self.client,
            action: &self.action,
            recording_ids: &self.recording_ids,
            recording_count: self.recording_count,
            filters: &self.filters,
            outcome: &self.outcome,
        })
    }

    /// The hash this row should carry after `prev_hash`.
    fn expected_hash(&self, prev_hash: &str) -> Result<String, serde_json::Error> {
        let mut data = prev_hash.as_bytes().to_vec();
        data.extend_from_slice(&self.canonical()?);
        Ok(sha256_hex(&data))
    }

    fn ids(&self) -> Vec<String> {
        serde_json::from_str(&self.recording_ids).unwrap_or_default()
    }

    fn into_row(self) -> Row {
        let filters = serde_json::from_str(&self.filters)
            .unwrap_or(serde_json::Value::String(self.filters.clone()));
        Row {
            recording_ids: self.ids(),
            seq: self.seq,
            at: self.at,
            actor: self.actor,
            role: self.role,
            client: self.client,
            action: self.action,
            recording_count: self.recording_count,
            filters,
            outcome: self.outcome,
            prev_hash: self.prev_hash,
            hash: self.hash,
        }
    }
}

const COLUMNS: &str = "seq, at, actor, role, client, action, recording_ids, recording_count, \
                       filters, outcome, prev_hash, hash";

/// Any stored value as text (a value whose type was changed still reads,
/// and then fails its hash).
fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Integer(i) => i.to_string(),
        Value::Real(f) => f.to_string(),
        Value::Text(t) => t.clone(),
        Value::Blob(t) => String::from_utf8_lossy(t).into_owned(),
    }
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Integer(i) => *i,
        other => text(other).parse().unwrap_or(-1),
    }
}

fn raw(r: &crate::store::db::Row) -> Raw {
    Raw {
        seq: int(r.value(0)),
        at: text(r.value(1)),
        actor: text(r.value(2)),
        role: text(r.value(3)),
        client: text(r.value(4)),
        action: text(r.value(5)),
        recording_ids: text(r.value(6)),
        recording_count: int(r.value(7)),
        filters: text(r.value(8)),
        outcome: text(r.value(9)),
        prev_hash: text(r.value(10)),
        hash: text(r.value(11)),
    }
}

/// Runs `f` in a write transaction taken at once ([`Db::write_transaction`]:
/// `BEGIN IMMEDIATE` on SQLite; on PostgreSQL one advisory lock that every
/// recorder sharing the index takes): with a deferred one, two writers
/// that both read first would both need to upgrade their lock, and SQLite
/// fails one of them at once instead of letting it wait; on PostgreSQL,
/// two recorders would both read the same chain head and fork the chain.
/// Committed if `f` succeeds, rolled back otherwise.
pub fn with_write<T, E: From<DbError>>(
    conn: &Db,
    f: impl FnOnce(&Db) -> Result<T, E>,
) -> Result<T, E> {
    let tx = conn.write_transaction()?;
    let v = f(&tx)?;
    tx.commit()?;
    Ok(v)
}

/// Appends `entries` in one write transaction; returns their `seq`.
pub fn append(conn: &Db, entries: &[Entry]) -> Result<Vec<i64>, AuditError> {
    with_write(conn, |c| append_in(c, entries))
}

/// Appends `entries` within the caller's write transaction (begun with
/// [`with_write`]).
pub fn append_in(conn: &Db, entries: &[Entry]) -> Result<Vec<i64>, AuditError> {
    let last: Option<(i64, String)> = conn
        .prepare_cached("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (mut seq, mut prev) = last.unwrap_or((0, GENESIS.to_string()));
    let mut out = Vec::with_capacity(entries.len());
    let mut ins = conn.prepare_cached(&format!(
        "INSERT INTO audit ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
    ))?;
    let mut ins_id = conn.prepare_cached(
        "INSERT INTO audit_recordings (recording_id, seq) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
    )?;
    for e in entries {
        seq += 1;
        let mut ids: Vec<&str> = e.recording_ids.iter().map(String::as_str).collect();
        ids.sort_unstable();
        ids.dedup();
        let count = i64::try_from(ids.len()).unwrap_or(i64::MAX);
        let kept: &[&str] = if ids.len() <= MAX_IDS { &ids } else { &[] };
        let filters = match &e.filters {
            serde_json::Value::Null => "{}".to_string(),
            v => serde_json::to_string(v)?,
        };
        let row = Raw {
            seq,
            at: utc_millis(chrono::Utc::now()),
            actor: e.actor.clone(),
            role: e.role.clone(),
            client: e.client.clone(),
            action: e.action.clone(),
            recording_ids: serde_json::to_string(kept)?,
            recording_count: count,
            filters,
            outcome: e.outcome.clone(),
            hash: String::new(),
            prev_hash: prev.clone(),
        };
        let hash = row.expected_hash(&prev)?;
        ins.execute(params![
            row.seq,
            row.at,
            row.actor,
            row.role,
            row.client,
            row.action,
            row.recording_ids,
            row.recording_count,
            row.filters,
            row.outcome,
            row.prev_hash,
            hash,
        ])?;
        for id in kept {
            ins_id.execute(params![id, seq])?;
        }
        out.push(seq);
        prev = hash;
    }
    Ok(out)
}

/// `seq` and hash of the last entry, if any.
pub fn head(conn: &Db) -> Result<Option<(i64, String)>, AuditError> {
    Ok(conn
        .query_row(
            "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

/// Which entries to read (`srs audit`, `GET /api/v1/audit`): every filter
/// optional, all given must match.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// At or after: RFC 3339, or `YYYY-MM-DD` (from 00:00 UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// At or before: RFC 3339, or `YYYY-MM-DD` (that whole UTC day).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// Entries that list this recording id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recording: Option<String>,
    /// Entries of this actor (token name or `cli:<user>`), exactly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Entries of this action, exactly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Entries after this `seq` (paging).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<i64>,
    /// At most this many entries (none: all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// Reads the entries `q` selects, oldest first, handing each to `each`
/// (which returns false to stop).
pub fn read(
    conn: &Db,
    q: &AuditQuery,
    mut each: impl FnMut(Row) -> bool,
) -> Result<(), AuditError> {
    let mut conds: Vec<String> = Vec::new();
    let mut params: Vec<Value> = Vec::new();
    if let Some(v) = given(&q.since) {
        conds.extend(time_condition("a.at", "since", v, false, &mut params)?);
    }
    if let Some(v) = given(&q.until) {
        conds.extend(time_condition("a.at", "until", v, true, &mut params)?);
    }
    if let Some(v) = given(&q.recording) {
        params.push(Value::Text(v.to_string()));
        conds.push(format!(
            "a.seq IN (SELECT seq FROM audit_recordings WHERE recording_id = ?{})",
            params.len()
        ));
    }
    for (col, v) in [("a.actor", given(&q.actor)), ("a.action", given(&q.action))] {
        if let Some(v) = v {
            params.push(Value::Text(v.to_string()));
            conds.push(format!("{col} = ?{}", params.len()));
        }
    }
    if let Some(after) = q.after {
        params.push(Value::Integer(after));
        conds.push(format!("a.seq > ?{}", params.len()));
    }
    let limit = match q.limit {
        Some(l) => i64::try_from(l).unwrap_or(i64::MAX),
        None => i64::MAX,
    };
    params.push(Value::Integer(limit));
    let where_sql = if conds.is_empty() {
        "TRUE".to_string()
    } else {
        conds.join(" AND ")
    };
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM audit a WHERE {where_sql} ORDER BY a.seq LIMIT ?{}",
        params.len()
    ))?;
    for r in stmt.query(&params)? {
        if !each(raw(&r).into_row()) {
            break;
        }
    }
    Ok(())
}

/// The chain checked whole.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Verified {
    pub entries: u64,
    /// `seq` and hash of the last entry: keep them elsewhere to detect a
    /// truncated or recomputed chain later.
    pub head_seq: Option<i64>,
    pub head_hash: Option<String>,
}

/// The first entry at which the chain breaks, and how.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, thiserror::Error)]
#[error("audit chain broken at entry {seq}: {reason}")]
pub struct Broken {
    pub seq: i64,
    pub reason: String,
    /// Entries checked and found intact before it.
    pub intact: u64,
}

/// Checks the whole chain, oldest first: `seq` without gaps from 1, each
/// `prev_hash` the hash of the entry before, each hash that of the entry's
/// content, and `audit_recordings` exactly the ids each entry lists.
pub fn verify(conn: &Db) -> Result<Result<Verified, Broken>, AuditError> {
    // Read in pages of VERIFY_PAGE entries (by seq): a long trail is never
    // held in memory whole.
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM audit WHERE seq > ?1 ORDER BY seq LIMIT {VERIFY_PAGE}"
    ))?;
    let mut ids_of =
        conn.prepare("SELECT recording_id FROM audit_recordings WHERE seq = ?1 ORDER BY 1")?;
    let mut after = i64::MIN;
    let mut page = stmt.query([after])?;
    let mut next_row = move || -> Result<Option<Raw>, AuditError> {
        if let Some(r) = page.next() {
            after = int(r.value(0));
            return Ok(Some(raw(&r)));
        }
        page = stmt.query([after])?;
        Ok(page.next().map(|r| {
            after = int(r.value(0));
            raw(&r)
        }))
    };
    let mut prev = GENESIS.to_string();
    let mut n: u64 = 0;
    let mut head: Option<i64> = None;
    let broken = |seq: i64, n: u64, reason: String| {
        Ok(Err(Broken {
            seq,
            reason,
            intact: n,
        }))
    };
    while let Some(row) = next_row()? {
        let expected_seq = head.map_or(1, |h| h + 1);
        if row.seq != expected_seq {
            let reason = if expected_seq == 1 {
                format!("entries before {} are missing (deleted)", row.seq)
            } else {
                format!(
                    "entries {expected_seq} to {} are missing (deleted)",
                    row.seq - 1
                )
            };
            return broken(row.seq, n, reason);
        }
        if row.prev_hash != prev {
            return broken(
                row.seq,
                n,
                "its prev_hash is not the hash of the entry before it (an entry was replaced or inserted)"
                    .into(),
            );
        }
        if row.expected_hash(&prev)? != row.hash {
            return broken(
                row.seq,
                n,
                "its content does not match its hash (the entry was altered)".into(),
            );
        }
        let mut listed = row.ids();
        listed.sort();
        listed.dedup();
        let indexed: Vec<String> = ids_of
            .query_map(params![row.seq], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        if listed != indexed {
            return broken(
                row.seq,
                n,
                "audit_recordings does not list exactly the entry's recording ids (altered)".into(),
            );
        }
        prev = row.hash;
        head = Some(row.seq);
        n += 1;
    }
    let stray: Option<i64> = conn
        .query_row(
            "SELECT seq FROM audit_recordings WHERE seq NOT IN (SELECT seq FROM audit) LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(seq) = stray {
        return broken(
            seq,
            n,
            "audit_recordings lists an entry that does not exist (inserted)".into(),
        );
    }
    Ok(Ok(Verified {
        entries: n,
        head_seq: head,
        head_hash: head.map(|_| prev),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Index;

    fn entry(actor: &str, action: &str, ids: &[&str]) -> Entry {
        Entry {
            actor: actor.into(),
            role: "listener".into(),
            client: "127.0.0.1:5000".into(),
            action: action.into(),
            recording_ids: ids.iter().map(|s| s.to_string()).collect(),
            filters: serde_json::json!({"dn": "7001"}),
            outcome: "ok".into(),
        }
    }

    fn all(c: &Db, q: &AuditQuery) -> Vec<Row> {
        let mut out = Vec::new();
        read(c, q, |r| {
            out.push(r);
            true
        })
        .unwrap();
        out
    }

    /// A new, empty index of the same kind as `at` (SQLite or PostgreSQL).
    fn index(at: &crate::store::IndexAt) -> (tempfile::TempDir, Index) {
        let tmp = tempfile::tempdir().unwrap();
        let at = match at {
            crate::store::IndexAt::Sqlite(_) => {
                crate::store::IndexAt::Sqlite(tmp.path().join("index.sqlite"))
            }
            crate::store::IndexAt::Postgres(_) => {
                crate::testkit::pg::cluster("audit").unwrap().fresh()
            }
        };
        let ix = Index::open_at(&at).unwrap();
        (tmp, ix)
    }

    #[test]
    fn appends_chain_and_read_back() {
        crate::testkit::pg::each_backend("appends_chain_and_read_back", |at| {
            let (_t, ix) = index(at);
            let c = ix.conn();
            assert_eq!(
                verify(c).unwrap().unwrap(),
                Verified {
                    entries: 0,
                    head_seq: None,
                    head_hash: None
                }
            );
            assert_eq!(
                append(c, &[entry("a", "search", &["r2", "r1", "r1"])]).unwrap(),
                [1]
            );
            assert_eq!(
                append(
                    c,
                    &[
                        entry("b", "download", &["r1"]),
                        entry("cli:root", "view", &[])
                    ]
                )
                .unwrap(),
                [2, 3]
            );
            let rows = all(c, &AuditQuery::default());
            assert_eq!(rows.len(), 3);
            assert_eq!(rows[0].prev_hash, GENESIS);
            assert_eq!(rows[1].prev_hash, rows[0].hash);
            assert_eq!(rows[0].recording_ids, ["r1", "r2"]);
            assert_eq!(rows[0].recording_count, 2);
            assert_eq!(rows[0].filters, serde_json::json!({"dn": "7001"}));
            // The documented recipe gives the stored hash.
            let canonical = format!(
                r#"{{"seq":1,"at":"{}","actor":"a","role":"listener","client":"127.0.0.1:5000","action":"search","recording_ids":"[\"r1\",\"r2\"]","recording_count":2,"filters":"{{\"dn\":\"7001\"}}","outcome":"ok"}}"#,
                rows[0].at
            );
            assert_eq!(
                rows[0].hash,
                sha256_hex(format!("{GENESIS}{canonical}").as_bytes())
            );
            let v = verify(c).unwrap().unwrap();
            assert_eq!((v.entries, v.head_seq), (3, Some(3)));
            assert_eq!(v.head_hash.as_deref(), Some(rows[2].hash.as_str()));

            // Filters.
            let q = |f: &dyn Fn(&mut AuditQuery)| {
                let mut q = AuditQuery::default();
                f(&mut q);
                all(c, &q).iter().map(|r| r.seq).collect::<Vec<_>>()
            };
            assert_eq!(q(&|q| q.recording = Some("r1".into())), [1, 2]);
            assert_eq!(q(&|q| q.recording = Some("r2".into())), [1]);
            assert_eq!(q(&|q| q.actor = Some("cli:root".into())), [3]);
            assert_eq!(q(&|q| q.action = Some("download".into())), [2]);
            assert_eq!(q(&|q| q.after = Some(1)), [2, 3]);
            assert_eq!(q(&|q| q.limit = Some(2)), [1, 2]);
            assert_eq!(q(&|q| q.since = Some("2000-01-01".into())), [1, 2, 3]);
            assert_eq!(
                q(&|q| q.until = Some("2000-01-01".into())),
                Vec::<i64>::new()
            );
            assert_eq!(q(&|q| q.since = Some(rows[2].at.clone())).last(), Some(&3));
            let bad = AuditQuery {
                since: Some("yesterday".into()),
                ..Default::default()
            };
            assert!(read(c, &bad, |_| true)
                .unwrap_err()
                .to_string()
                .contains("since"));
        });
    }

    #[test]
    fn past_the_bound_only_the_count_is_kept() {
        crate::testkit::pg::each_backend("past_the_bound_only_the_count_is_kept", |at| {
            let (_t, ix) = index(at);
            let c = ix.conn();
            let ids: Vec<String> = (0..=MAX_IDS).map(|i| format!("r{i:04}")).collect();
            let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            append(c, &[entry("a", "search", &refs)]).unwrap();
            let rows = all(c, &AuditQuery::default());
            assert!(rows[0].recording_ids.is_empty());
            assert_eq!(rows[0].recording_count, (MAX_IDS + 1) as i64);
            assert!(verify(c).unwrap().is_ok());
        });
    }

    #[test]
    fn the_table_refuses_changes_and_any_change_breaks_the_chain() {
        crate::testkit::pg::each_backend(
            "the_table_refuses_changes_and_any_change_breaks_the_chain",
            |at| {
                let (_t, ix) = index(at);
                let c = ix.conn();
                for i in 0..5 {
                    append(c, &[entry("a", "view", &[&format!("r{i}")])]).unwrap();
                }
                let e = c
                    .execute("UPDATE audit SET actor = 'x' WHERE seq = 2", [])
                    .unwrap_err()
                    .to_string();
                assert!(e.contains("append-only"), "{e}");
                assert!(c.execute("DELETE FROM audit WHERE seq = 5", []).is_err());
                assert!(c.execute("DELETE FROM audit_recordings", []).is_err());

                // Whoever can write the file can drop the triggers: the chain
                // still tells.
                let snapshot = |c: &Db| {
                    c.execute_batch(match c.dialect() {
                crate::store::db::Dialect::Sqlite => {
                    "DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;
                     DROP TRIGGER audit_recordings_no_update; DROP TRIGGER audit_recordings_no_delete;"
                }
                crate::store::db::Dialect::Postgres => {
                    "DROP TRIGGER audit_no_update ON audit;
                     DROP TRIGGER audit_recordings_no_update ON audit_recordings;"
                }
            })
            .unwrap();
                };
                let cases: &[(&str, i64, &str)] = &[
                    ("UPDATE audit SET actor = 'x' WHERE seq = 3", 3, "altered"),
                    (
                        "UPDATE audit SET recording_count = 7 WHERE seq = 2",
                        2,
                        "altered",
                    ),
                    (
                        "UPDATE audit SET at = '2000-01-01T00:00:00.000Z' WHERE seq = 4",
                        4,
                        "altered",
                    ),
                    ("DELETE FROM audit WHERE seq = 3", 4, "missing"),
                    ("DELETE FROM audit WHERE seq = 1", 2, "missing"),
                    (
                        "DELETE FROM audit_recordings WHERE seq = 2",
                        2,
                        "audit_recordings",
                    ),
                    (
                        "INSERT INTO audit_recordings VALUES ('x', 99)",
                        99,
                        "does not exist",
                    ),
                ];
                for (sql, seq, what) in cases {
                    let (_t, ix) = index(at);
                    let c = ix.conn();
                    for i in 0..5 {
                        append(c, &[entry("a", "view", &[&format!("r{i}")])]).unwrap();
                    }
                    snapshot(c);
                    c.execute(sql, []).unwrap();
                    let b = verify(c).unwrap().unwrap_err();
                    assert_eq!(b.seq, *seq, "{sql}: {b}");
                    assert!(b.reason.contains(what), "{sql}: {b}");
                }
                // A row replaced with a self-consistent one (hash recomputed) still
                // breaks at the next entry.
                let (_t, ix) = index(at);
                let c = ix.conn();
                for i in 0..3 {
                    append(c, &[entry("a", "view", &[&format!("r{i}")])]).unwrap();
                }
                snapshot(c);
                let mut r: Raw = c
                    .query_row(
                        &format!("SELECT {COLUMNS} FROM audit WHERE seq = 2"),
                        [],
                        |r| Ok(raw(r)),
                    )
                    .unwrap();
                r.actor = "someone-else".into();
                let h = r.expected_hash(&r.prev_hash).unwrap();
                c.execute(
                    "UPDATE audit SET actor = ?1, hash = ?2 WHERE seq = 2",
                    params![r.actor, h],
                )
                .unwrap();
                let b = verify(c).unwrap().unwrap_err();
                assert_eq!((b.seq, b.intact), (3, 2), "{b}");
            },
        );
    }

    #[test]
    fn two_connections_keep_one_chain() {
        crate::testkit::pg::each_backend("two_connections_keep_one_chain", |at| {
            Index::open_at(at).unwrap();
            let threads: Vec<_> = (0..4)
                .map(|t| {
                    let path = at.clone();
                    std::thread::spawn(move || {
                        let ix = Index::open_existing_rw_at(&path).unwrap().unwrap();
                        for i in 0..25 {
                            append(
                                ix.conn(),
                                &[entry(&format!("w{t}"), "view", &[&format!("r{i}")])],
                            )
                            .unwrap();
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            let ix = Index::open_existing_at(at).unwrap().unwrap();
            let v = verify(ix.conn()).unwrap().unwrap();
            assert_eq!(v.entries, 100);
        });
    }
}
