//! The index of published recordings: a SQLite file (the default) or a
//! PostgreSQL database shared by several recorders ([`super::backend`],
//! `docs/scale-out.md`), through one connection API ([`super::db`]).
//!
//! The index is a cache of the `metadata.json` files of the drop: each row
//! keeps the full object in `meta_json`, plus a few columns to search and
//! sort on. It can always be rebuilt from [`super::FileDrop::scan`].
//!
//! The schema is versioned by `PRAGMA user_version` (SQLite) or the one row
//! of `srs_schema` (PostgreSQL): [`MIGRATIONS`] is an ordered list of SQL
//! steps, step `i` bringing the schema from version `i` to `i + 1`, and
//! [`PG_MIGRATIONS`] the same steps in PostgreSQL's dialect, side by side
//! (same tables, columns and indexes; text columns in the "C" collation so
//! that they sort and compare byte-wise as SQLite's do). Append steps to
//! both; never edit a released one.
//!
//! Tables (version 4; the call-event tables of step 4 are described in
//! [`crate::events::store`]):
//! - `recordings`: one row per recording, `meta_json` the full object, plus
//!   the searched columns (`record_dn`, `call_uuid` from
//!   `correlation["calluuid"]`, `ani`, `dnis`, `geo_location`, `status`,
//!   `started_at` normalised to RFC 3339 UTC with milliseconds, ...);
//! - `participants`: one row per participant of the metadata;
//! - `recording_dns`: every DN of [`RecordingMeta::dns`];
//! - `correlation`: every correlation id (`key`, `value`);
//! - `events`: the session events in order (`seq`), then the DTMF digits as
//!   rows of kind `dtmf` (`label`: the stream, `detail`: the digit, `at`: the
//!   time of the digit).
//!
//! - `tokens`: the API tokens, by the SHA-256 of their secret
//!   ([`crate::auth::tokens`]);
//! - `audit`, `audit_recordings`: the audit trail ([`super::audit`]),
//!   append-only (triggers refuse UPDATE and DELETE) and hash-chained.
//! - `holds` (version 4): legal holds ([`crate::lifecycle`]), also kept in
//!   the drop (`hold.json`), so `srs reindex` rebuilds them.
//!
//! The index is a cache of the drop except for those last three tables:
//! `srs reindex` rebuilds the recordings in place and keeps them, but an
//! index deleted or rebuilt into a new file loses the tokens and the
//! audit trail (back the index up; `docs/operations.md`).
//!
//! Every derived row of a recording is replaced with it in one transaction.
//! Recordings indexed before version 2 have NULL in the new columns and no
//! rows in the new tables until `srs reindex` replaces them.
//!
//! The file uses a rollback journal (`journal_mode=TRUNCATE`), not WAL, and
//! no memory map (`mmap_size=0`): WAL maps `index.sqlite-shm` into memory,
//! and a fault on that mapping (the file made immutable, a full or broken
//! disk) is a SIGBUS that kills the whole server, every live call with it.
//! With every access a read(2) or write(2), a faulty index is an error the
//! caller logs. The price: readers and the writer exclude each other while
//! a transaction commits (both wait, [`BUSY_TIMEOUT`] at most), and a
//! commit costs one more fsync (`docs/operations.md`).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags};

use super::backend::IndexAt;
use super::db::{Db, DbError, Dialect, OptionalExt, Value};
use crate::params;

use super::drop::{DropError, FileDrop};
use super::query::{utc_millis, Query, QueryError};
use crate::auth::Scope;
use crate::recording::RecordingMeta;

/// Schema migrations, in order. The schema version is the number of steps applied.
pub const MIGRATIONS: &[&str] = &[
    // 1: recordings and their participants.
    "CREATE TABLE recordings (
        recording_id TEXT PRIMARY KEY NOT NULL,
        call_id      TEXT NOT NULL,
        status       TEXT,
        started_at   TEXT,
        ended_at     TEXT,
        duration_ms  INTEGER,
        source       TEXT,
        path         TEXT,
        meta_json    TEXT NOT NULL
    );
    CREATE INDEX recordings_call_id ON recordings(call_id);
    CREATE INDEX recordings_started_at ON recordings(started_at);
    CREATE TABLE participants (
        recording_id   TEXT NOT NULL REFERENCES recordings(recording_id) ON DELETE CASCADE,
        participant_id TEXT NOT NULL,
        aor            TEXT,
        name           TEXT,
        labels         TEXT NOT NULL
    );
    CREATE INDEX participants_recording_id ON participants(recording_id);
    CREATE INDEX participants_aor ON participants(aor);",
    // 2: searched columns (Record DN, correlation ids, geo), every DN of a
    // recording, correlation ids, events and DTMF.
    "ALTER TABLE recordings ADD COLUMN record_dn TEXT;
    ALTER TABLE recordings ADD COLUMN record_dn_kind TEXT;
    ALTER TABLE recordings ADD COLUMN geo_location TEXT COLLATE NOCASE;
    ALTER TABLE recordings ADD COLUMN direction TEXT;
    ALTER TABLE recordings ADD COLUMN call_uuid TEXT COLLATE NOCASE;
    ALTER TABLE recordings ADD COLUMN ani TEXT;
    ALTER TABLE recordings ADD COLUMN dnis TEXT;
    CREATE INDEX recordings_record_dn ON recordings(record_dn);
    CREATE INDEX recordings_call_uuid ON recordings(call_uuid);
    CREATE INDEX recordings_ani ON recordings(ani);
    CREATE INDEX recordings_dnis ON recordings(dnis);
    CREATE INDEX recordings_geo_location ON recordings(geo_location);
    CREATE INDEX recordings_status ON recordings(status);
    CREATE TABLE recording_dns (
        recording_id TEXT NOT NULL REFERENCES recordings(recording_id) ON DELETE CASCADE,
        dn           TEXT NOT NULL,
        PRIMARY KEY (recording_id, dn)
    );
    CREATE INDEX recording_dns_dn ON recording_dns(dn);
    CREATE TABLE correlation (
        recording_id TEXT NOT NULL REFERENCES recordings(recording_id) ON DELETE CASCADE,
        key          TEXT NOT NULL,
        value        TEXT NOT NULL,
        PRIMARY KEY (recording_id, key)
    );
    CREATE INDEX correlation_key_value ON correlation(key, value);
    CREATE TABLE events (
        recording_id   TEXT NOT NULL REFERENCES recordings(recording_id) ON DELETE CASCADE,
        seq            INTEGER NOT NULL,
        at             TEXT,
        kind           TEXT NOT NULL,
        label          TEXT,
        participant_id TEXT,
        aor            TEXT,
        detail         TEXT,
        PRIMARY KEY (recording_id, seq)
    );
    CREATE INDEX events_recording_id ON events(recording_id);
    CREATE INDEX events_kind ON events(kind);",
    // 3: API tokens (only the SHA-256 of each secret) and the audit trail
    // (crate::store::audit): append-only, each entry chained to the one
    // before by its hash; audit_recordings finds the entries of one
    // recording without reading them all.
    "CREATE TABLE tokens (
        id         INTEGER PRIMARY KEY,
        name       TEXT NOT NULL,
        hash       TEXT NOT NULL UNIQUE,
        role       TEXT NOT NULL,
        scopes     TEXT NOT NULL,
        created_at TEXT NOT NULL,
        created_by TEXT NOT NULL,
        revoked_at TEXT
    );
    CREATE UNIQUE INDEX tokens_active_name ON tokens(name) WHERE revoked_at IS NULL;
    CREATE TABLE audit (
        seq             INTEGER PRIMARY KEY,
        at              TEXT NOT NULL,
        actor           TEXT NOT NULL,
        role            TEXT NOT NULL,
        client          TEXT NOT NULL,
        action          TEXT NOT NULL,
        recording_ids   TEXT NOT NULL,
        recording_count INTEGER NOT NULL,
        filters         TEXT NOT NULL,
        outcome         TEXT NOT NULL,
        prev_hash       TEXT NOT NULL,
        hash            TEXT NOT NULL
    );
    CREATE INDEX audit_at ON audit(at);
    CREATE TABLE audit_recordings (
        recording_id TEXT NOT NULL,
        seq          INTEGER NOT NULL,
        PRIMARY KEY (recording_id, seq)
    ) WITHOUT ROWID;
    CREATE INDEX audit_recordings_seq ON audit_recordings(seq);
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
    CREATE TRIGGER audit_recordings_no_update BEFORE UPDATE ON audit_recordings
        BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
    CREATE TRIGGER audit_recordings_no_delete BEFORE DELETE ON audit_recordings
        BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;",
    // 4 (issue 15, the life of a recording): legal holds (crate::lifecycle),
    // one row per held recording; `meta_json` carries the hold too (the
    // recording's JSON shows it). Searched by `held=true`.
    "CREATE TABLE holds (
        recording_id TEXT PRIMARY KEY NOT NULL REFERENCES recordings(recording_id) ON DELETE CASCADE,
        reason       TEXT,
        at           TEXT NOT NULL,
        by           TEXT NOT NULL
    );",
    // 5 (issue 14): call events, their links to recordings, the searched
    // attached data and event DNs, and the webhook outbox.
    crate::events::store::MIGRATION,
    // 6 (issue 16, many recorders): the recorder that made each recording
    // (`[node] id`), and where each file of a recording is in the object
    // store (`crate::store::objects`). recordings_id_started: a search by
    // DN (or attached data) finds its recordings by id and then needs their
    // start time to sort and to filter by time: from this index alone,
    // not from each row (an agent's DN with 5,000 recordings and a month:
    // 39 -> 21 ms, docs/performance.md).
    "ALTER TABLE recordings ADD COLUMN node TEXT;
    CREATE INDEX recordings_node ON recordings(node);
    CREATE INDEX recordings_id_started ON recordings(recording_id, started_at);
    CREATE TABLE recording_objects (
        recording_id TEXT NOT NULL,
        name         TEXT NOT NULL,
        key          TEXT NOT NULL,
        size         INTEGER NOT NULL,
        sha256       TEXT,
        uploaded_at  TEXT NOT NULL,
        PRIMARY KEY (recording_id, name)
    ) WITHOUT ROWID;",
    // 7 (issue 16, DN searches at scale): every DN of a recording in one
    // table, its call events' DNs included (recording_event_dns goes), with
    // the recording's start time next to it: a search by DN walks
    // `(dn, started_at, recording_id)` from the newest and stops at the
    // page, and counts the DN's entries without reading a recording (an
    // agent's DN with 5,000 recordings: docs/performance.md).
    "ALTER TABLE recording_dns ADD COLUMN started_at TEXT;
    UPDATE recording_dns SET started_at =
        (SELECT r.started_at FROM recordings r WHERE r.recording_id = recording_dns.recording_id);
    INSERT INTO recording_dns (recording_id, dn, started_at)
        SELECT x.recording_id, x.dn, r.started_at
        FROM recording_event_dns x JOIN recordings r ON r.recording_id = x.recording_id
        WHERE true
        ON CONFLICT DO NOTHING;
    DROP INDEX recording_dns_dn;
    CREATE INDEX recording_dns_dn_started ON recording_dns(dn, started_at, recording_id);
    DROP TABLE recording_event_dns;",
];

/// The first schema version that [`Index::search`] can query.
const SEARCH_VERSION: u32 = 2;

/// The first schema version that [`Index::search`] can query by DN
/// (every DN with its start time in `recording_dns`).
const DN_SEARCH_VERSION: u32 = 7;

/// Recordings written per transaction by [`Index::reindex`].
pub const REINDEX_BATCH: usize = 500;

/// How long a connection waits for another's lock before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Journal of the index: a rollback journal (see the module doc for why
/// not WAL); TRUNCATE keeps the file, which is cheaper than recreating it.
const JOURNAL_MODE: &str = "truncate";

/// Errors of the index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// Creating the directory of the index failed.
    #[error("creating {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Any SQLite error.
    #[error("index: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Any error of the connection (SQLite or PostgreSQL).
    #[error("index: {0}")]
    Db(#[from] DbError),
    /// The PostgreSQL index is not usable as configured.
    #[error("{0}")]
    Target(#[from] super::backend::TargetError),
    /// The index was created by a newer version of this program.
    #[error("index schema version {found} is newer than this program knows ({known})")]
    SchemaTooNew { found: u32, known: u32 },
    /// The file exists but has no schema (never opened read-write).
    #[error("{0} is not an initialised recording index")]
    NotInitialised(PathBuf),
    /// A row holds JSON that is not a `RecordingMeta`.
    #[error("index row {recording_id}: bad meta_json: {source}")]
    BadRow {
        recording_id: String,
        #[source]
        source: serde_json::Error,
    },
    /// Serialising a recording or its labels failed.
    #[error("serialising: {0}")]
    Json(#[from] serde_json::Error),
    /// The search filters are not valid (the message names the field).
    #[error("{0}")]
    Query(#[from] QueryError),
    /// The index (opened read-only) predates the searched columns.
    #[error("index schema version {found} is older than this program's ({known}): run `srs reindex` (or restart `srs serve`) to upgrade it")]
    SchemaTooOld { found: u32, known: u32 },
    /// Scanning the file drop failed (reindex).
    #[error("{0}")]
    Drop(#[from] DropError),
}

/// A connection to the index.
#[derive(Debug)]
pub struct Index {
    conn: Db,
    /// Schema version of the file as opened.
    version: u32,
    /// The file opened, to notice it deleted or replaced ([`Index::is_at`]).
    file: Option<FileId>,
}

/// Which file a path names: device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(path: &Path) -> std::io::Result<Self> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path)?;
        Ok(Self {
            dev: m.dev(),
            ino: m.ino(),
        })
    }
}

/// Settings of every connection: the busy timeout, and no memory map of
/// the database (a fault on a mapping is a SIGBUS, not an error).
fn configure(conn: &Connection) -> Result<(), IndexError> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "mmap_size", 0)?;
    Ok(())
}

/// What [`Index::reindex`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReindexReport {
    /// Recordings found in the drop and written to the index.
    pub indexed: usize,
    /// Index rows removed because their recording is no longer in the drop.
    pub removed: usize,
}

fn known_version() -> u32 {
    u32::try_from(MIGRATIONS.len()).unwrap_or(u32::MAX)
}

fn user_version(conn: &Connection) -> Result<u32, IndexError> {
    let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    Ok(u32::try_from(v).unwrap_or(0))
}

/// Applies the missing migration steps, each in its own transaction together
/// with the bump of `user_version`. Returns how many steps ran.
fn migrate(conn: &mut Connection) -> Result<usize, IndexError> {
    let known = known_version();
    if user_version(conn)? == known {
        return Ok(0);
    }
    // Several processes may open a new or old index at once (the server's
    // publisher and events threads, `srs list`): each step runs in a write
    // transaction that reads the version again inside it, so a step
    // another process applied meanwhile is never run twice.
    let mut ran = 0;
    loop {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let found = user_version(&tx)?;
        if found > known {
            return Err(IndexError::SchemaTooNew { found, known });
        }
        let Some(step) = MIGRATIONS.get(found as usize) else {
            return Ok(ran);
        };
        tx.execute_batch(step)?;
        tx.pragma_update(None, "user_version", found + 1)?;
        tx.commit()?;
        tracing::info!(version = found + 1, "index schema migrated");
        ran += 1;
    }
}

/// `started_at` as stored for sorting: RFC 3339 UTC with milliseconds, so
/// that text order is time order whatever the offset or precision in the
/// metadata. Unparsable values are kept as they are.
fn sort_key(t: &str) -> String {
    match DateTime::parse_from_rfc3339(t) {
        Ok(t) => utc_millis(t.with_timezone(&Utc)),
        Err(_) => t.to_string(),
    }
}

/// The index a long-lived writer thread holds in `slot` (events, audit):
/// reopened when the file at `at` was deleted or replaced, opened when
/// there is none yet; never created (the publisher creates it).
pub fn open_current<'a>(slot: &'a mut Option<Index>, at: &IndexAt) -> Result<&'a Index, String> {
    if slot.as_ref().is_some_and(|ix| !ix.is_current(at)) {
        *slot = None;
    }
    if slot.is_none() {
        match Index::open_existing_rw_at(at) {
            Ok(Some(ix)) => *slot = Some(ix),
            Ok(None) => return Err(format!("no index at {at} yet")),
            Err(e) => return Err(e.to_string()),
        }
    }
    slot.as_ref().ok_or_else(|| "no index".into())
}

/// Inserts `rows` (`types.len()` values each) with `head` (`INSERT INTO t
/// (a, b)`) and `tail` (`ON CONFLICT ...`). SQLite: multi-row `VALUES` of
/// [`ROWS_PER_INSERT`] rows per statement (in-process, no round trip).
/// PostgreSQL: every row in one statement, whatever their number, as one
/// JSON array bound to one parameter (`types`: each column's SQL type,
/// `text` or `bigint`), since every statement is a round trip there.
pub(crate) fn insert_rows(
    tx: &Db,
    head: &str,
    tail: &str,
    types: &[&str],
    rows: &[Value],
) -> Result<(), IndexError> {
    use std::fmt::Write;
    let width = types.len();
    if rows.is_empty() || width == 0 {
        return Ok(());
    }
    if tx.dialect() == Dialect::Postgres {
        let mut sql = format!("{head} SELECT ");
        for (c, ty) in types.iter().enumerate() {
            let _ = write!(sql, "{}(x->>{c})::{ty}", if c == 0 { "" } else { ", " });
        }
        let _ = write!(
            sql,
            " FROM jsonb_array_elements(?1::text::jsonb) AS x {tail}"
        );
        let json: Vec<serde_json::Value> = rows
            .chunks(width)
            .map(|r| serde_json::Value::Array(r.iter().map(json_of).collect()))
            .collect();
        tx.prepare_cached(&sql)?
            .execute([serde_json::to_string(&json)?])?;
        return Ok(());
    }
    for chunk in rows.chunks(width * ROWS_PER_INSERT) {
        let mut sql = format!("{head} VALUES ");
        for r in 0..chunk.len() / width {
            sql.push_str(if r == 0 { "(" } else { ", (" });
            for c in 0..width {
                let _ = write!(
                    sql,
                    "{}?{}",
                    if c == 0 { "" } else { ", " },
                    r * width + c + 1
                );
            }
            sql.push(')');
        }
        sql.push(' ');
        sql.push_str(tail);
        tx.prepare_cached(&sql)?.execute(chunk)?;
    }
    Ok(())
}

fn json_of(v: &Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Integer(i) => (*i).into(),
        Value::Real(f) => (*f).into(),
        Value::Text(s) => s.as_str().into(),
        Value::Blob(b) => String::from_utf8_lossy(b).into(),
    }
}

/// Deletes the rows of `table` whose `recording_id` is one of `ids`, in
/// one statement.
pub(crate) fn delete_rows_of<'a>(
    tx: &Db,
    table: &str,
    ids: impl IntoIterator<Item = &'a str>,
) -> Result<(), IndexError> {
    let ids: Vec<&str> = ids.into_iter().collect();
    if ids.is_empty() {
        return Ok(());
    }
    for list in crate::events::store::key_lists(&ids) {
        let (cond, param) = crate::events::store::keyed(tx.dialect(), "recording_id", "text", list);
        tx.prepare_cached(&format!("DELETE FROM {table} WHERE {cond}"))?
            .execute(vec![param])?;
    }
    Ok(())
}

/// Replaces the rows of `table` of the recordings `ids` with `rows`
/// (`types.len()` values each, in the order of `columns`; `tail`: the
/// INSERT's `ON CONFLICT`, if any): one DELETE and one INSERT for a batch.
pub(crate) fn replace_rows<'a>(
    tx: &Db,
    (table, columns, tail): (&str, &str, &str),
    types: &[&str],
    ids: impl IntoIterator<Item = &'a str>,
    rows: &[Value],
) -> Result<(), IndexError> {
    delete_rows_of(tx, table, ids)?;
    insert_rows(
        tx,
        &format!("INSERT INTO {table} ({columns})"),
        tail,
        types,
        rows,
    )
}

/// Replaces the searched DNs of recordings (`recording_dns`): those of
/// its metadata ([`RecordingMeta::dns`]) and of its call events
/// (`event_dns`), each with the recording's start time, which a search by
/// DN sorts and filters by from the index `(dn, started_at,
/// recording_id)` alone.
pub(crate) fn write_dns(
    tx: &Db,
    recs: &[(&RecordingMeta, Option<&BTreeSet<String>>)],
) -> Result<(), IndexError> {
    let arg = |v: &dyn super::db::ToArg| v.to_value();
    let mut rows = Vec::new();
    for (meta, event_dns) in recs {
        let started = sort_key(&meta.started_at);
        let mut dns = meta.dns();
        for d in event_dns.iter().copied().flatten() {
            if !dns.contains(d) {
                dns.push(d.clone());
            }
        }
        for dn in dns {
            rows.extend([arg(&meta.recording_id), arg(&dn), arg(&started)]);
        }
    }
    replace_rows(
        tx,
        (
            "recording_dns",
            "recording_id, dn, started_at",
            "ON CONFLICT DO NOTHING",
        ),
        &["text"; 3],
        recs.iter().map(|(m, _)| m.recording_id.as_str()),
        &rows,
    )
}

/// Rows per multi-row INSERT of [`insert_rows`] on SQLite (a few
/// statement shapes to cache, far under its parameter limit).
const ROWS_PER_INSERT: usize = 32;

/// [`upsert_many_in`] for one recording.
pub(crate) fn upsert_in(tx: &Db, meta: &RecordingMeta) -> Result<(), IndexError> {
    upsert_many_in(tx, std::slice::from_ref(meta))
}

/// Inserts or replaces recordings with all their derived rows and their
/// call events ([`crate::events::store`]: which events each takes, the
/// links, attached data, event DNs, the JSON with them), in the caller's
/// transaction. A statement per table for the whole batch, not per
/// recording: on PostgreSQL every statement is a round trip, and a Genesys
/// recording has a dozen correlation ids, its DNs, participants, events
/// and call events. A batch naming a recording twice keeps the last, as
/// upserting them in turn would.
pub(crate) fn upsert_many_in(tx: &Db, metas: &[RecordingMeta]) -> Result<(), IndexError> {
    use crate::events::store as ev;
    let last: HashMap<&str, usize> = metas
        .iter()
        .enumerate()
        .map(|(i, m)| (m.recording_id.as_str(), i))
        .collect();
    let metas: Vec<&RecordingMeta> = metas
        .iter()
        .enumerate()
        .filter(|(i, m)| last[m.recording_id.as_str()] == *i)
        .map(|(_, m)| m)
        .collect();
    if metas.is_empty() {
        return Ok(());
    }
    let plans = ev::plan_links(tx, &metas)?;
    let wanted: BTreeSet<i64> = plans
        .iter()
        .filter(|p| !p.nothing_to_write(true))
        .flat_map(|p| p.ids.iter().copied())
        .collect();
    let events = ev::events_by_id(tx, &wanted)?;
    // Each recording as it is indexed: with its call events when it has
    // (or had) any, else as given.
    let mut finals: Vec<(RecordingMeta, Option<BTreeSet<String>>)> = Vec::new();
    for (m, p) in metas.iter().zip(&plans) {
        let mut m = (*m).clone();
        let dns = (!p.nothing_to_write(true)).then(|| ev::attach(&mut m, &p.ids, &events));
        finals.push((m, dns));
    }
    let arg = |v: &dyn super::db::ToArg| v.to_value();
    let mut rows = Vec::new();
    for (meta, _) in &finals {
        rows.extend([
            arg(&meta.recording_id),
            arg(&meta.call_id),
            arg(&meta.status),
            arg(&sort_key(&meta.started_at)),
            arg(&sort_key(&meta.ended_at)),
            arg(&i64::try_from(meta.duration_ms).unwrap_or(i64::MAX)),
            arg(&meta.source),
            arg(&meta.path),
            arg(&serde_json::to_string(meta)?),
            arg(&meta.record_dn),
            arg(&meta.record_dn_kind),
            arg(&meta.geo_location),
            arg(&meta.direction),
            arg(&meta.correlation.get("calluuid")),
            arg(&meta.correlation.get("ani")),
            arg(&meta.correlation.get("dnis")),
            arg(&meta.node),
        ]);
    }
    let mut types = ["text"; 17];
    types[5] = "bigint";
    insert_rows(
        tx,
        "INSERT INTO recordings
             (recording_id, call_id, status, started_at, ended_at, duration_ms, source, path, meta_json,
              record_dn, record_dn_kind, geo_location, direction, call_uuid, ani, dnis, node)",
        "ON CONFLICT(recording_id) DO UPDATE SET
             call_id = excluded.call_id, status = excluded.status,
             started_at = excluded.started_at, ended_at = excluded.ended_at,
             duration_ms = excluded.duration_ms, source = excluded.source,
             path = excluded.path, meta_json = excluded.meta_json,
             record_dn = excluded.record_dn, record_dn_kind = excluded.record_dn_kind,
             geo_location = excluded.geo_location, direction = excluded.direction,
             call_uuid = excluded.call_uuid, ani = excluded.ani, dnis = excluded.dnis,
             node = excluded.node",
        &types,
        &rows,
    )?;
    let ids = || finals.iter().map(|(m, _)| m.recording_id.as_str());
    let dns: Vec<(&RecordingMeta, Option<&BTreeSet<String>>)> =
        finals.iter().map(|(m, d)| (m, d.as_ref())).collect();
    write_dns(tx, &dns)?;
    let mut rows = Vec::new();
    for (meta, _) in &finals {
        if let Some(h) = &meta.hold {
            rows.extend([
                arg(&meta.recording_id),
                arg(&h.reason),
                arg(&h.at),
                arg(&h.by),
            ]);
        }
    }
    replace_rows(
        tx,
        ("holds", "recording_id, reason, at, by", ""),
        &["text"; 4],
        ids(),
        &rows,
    )?;
    let mut rows = Vec::new();
    for (meta, _) in &finals {
        for p in &meta.participants {
            let labels = serde_json::to_string(&p.labels)?;
            rows.extend([
                arg(&meta.recording_id),
                arg(&p.id),
                arg(&p.aor),
                arg(&p.name),
                arg(&labels),
            ]);
        }
    }
    replace_rows(
        tx,
        (
            "participants",
            "recording_id, participant_id, aor, name, labels",
            "",
        ),
        &["text"; 5],
        ids(),
        &rows,
    )?;
    let rows: Vec<Value> = finals
        .iter()
        .flat_map(|(meta, _)| {
            meta.correlation
                .iter()
                .flat_map(|(k, v)| [arg(&meta.recording_id), arg(k), arg(v)])
        })
        .collect();
    replace_rows(
        tx,
        (
            "correlation",
            "recording_id, key, value",
            "ON CONFLICT (recording_id, key) DO UPDATE SET value = excluded.value",
        ),
        &["text"; 3],
        ids(),
        &rows,
    )?;
    let mut rows = Vec::new();
    for (meta, _) in &finals {
        let id = &meta.recording_id;
        let mut seq: i64 = 0;
        for e in &meta.events {
            rows.extend([
                arg(id),
                arg(&seq),
                arg(&sort_key(&e.at)),
                arg(&e.kind),
                arg(&e.label),
                arg(&e.participant_id),
                arg(&e.aor),
                arg(&e.detail),
            ]);
            seq += 1;
        }
        for d in &meta.dtmf {
            rows.extend([
                arg(id),
                arg(&seq),
                arg(&sort_key(&d.at)),
                arg(&"dtmf"),
                arg(&d.label),
                Value::Null,
                Value::Null,
                arg(&d.digit),
            ]);
            seq += 1;
        }
    }
    let mut types = ["text"; 8];
    types[1] = "bigint";
    replace_rows(
        tx,
        (
            "events",
            "recording_id, seq, at, kind, label, participant_id, aor, detail",
            "",
        ),
        &types,
        ids(),
        &rows,
    )?;
    // Issue 14: the recordings' call events, in the same transaction
    // (whichever comes first, events or the recording, they meet here).
    let linked: Vec<(&RecordingMeta, &ev::LinkPlan)> = finals
        .iter()
        .zip(&plans)
        .filter(|((_, dns), _)| dns.is_some())
        .map(|((m, _), p)| (m, p))
        .collect();
    ev::write_links(tx, &linked)?;
    Ok(())
}

/// Deletes one recording and all its derived rows (the audit trail keeps
/// its entries). The caller holds the transaction. Returns the number of
/// recordings deleted (0 or 1).
pub(crate) fn delete_in(tx: &Db, id: &str) -> Result<usize, IndexError> {
    for table in [
        "participants",
        "recording_dns",
        "correlation",
        "events",
        "holds",
        "recording_objects",
    ] {
        delete_rows_of(tx, table, [id])?;
    }
    // Its ties to call events (the events themselves stay: another
    // recording of the same call may hold them too).
    crate::events::store::forget(tx, id)?;
    Ok(tx
        .prepare_cached("DELETE FROM recordings WHERE recording_id = ?1")?
        .execute(params![id])?)
}

fn parse_row(recording_id: String, json: String) -> Result<RecordingMeta, IndexError> {
    serde_json::from_str(&json).map_err(|source| IndexError::BadRow {
        recording_id,
        source,
    })
}

impl Index {
    /// Opens or creates the index at `path` (creating its directory), in WAL
    /// mode with a 5 s busy timeout, and migrates it to the current schema.
    pub fn open(path: &Path) -> Result<Self, IndexError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| IndexError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let mut conn = Connection::open(path)?;
        configure(&conn)?;
        // From WAL (indexes made by earlier versions) this needs the only
        // connection to the file; if another process holds one, the index
        // stays in WAL until it is opened again (at the next start).
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", JOURNAL_MODE, |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case(JOURNAL_MODE) {
            tracing::warn!(path = %path.display(), mode,
                "the index could not leave {mode} mode (another process has it open?): until the next start, a fault of its -shm file would stop the server");
        }
        conn.pragma_update(None, "foreign_keys", true)?;
        let found = user_version(&conn)?;
        migrate(&mut conn)?;
        if (1..SEARCH_VERSION).contains(&found) {
            let n: i64 = conn.query_row("SELECT COUNT(*) FROM recordings", [], |r| r.get(0))?;
            if n > 0 {
                tracing::warn!(path = %path.display(), recordings = n,
                    "index upgraded: run `srs reindex` so that older recordings can be found by DN, correlation id and geo");
            }
        }
        Ok(Self {
            conn: Db::sqlite(conn),
            version: known_version(),
            file: FileId::of(path).ok(),
        })
    }

    /// Opens or creates the index at `at` (SQLite: [`Index::open`];
    /// PostgreSQL: connects and brings the schema up to date).
    pub fn open_at(at: &IndexAt) -> Result<Self, IndexError> {
        match at {
            IndexAt::Sqlite(p) => Self::open(p),
            IndexAt::Postgres(t) => {
                let db = t.connect()?;
                super::pg_schema::migrate(&db)?;
                Ok(Self {
                    conn: db,
                    version: known_version(),
                    file: None,
                })
            }
        }
    }

    /// [`Index::open_existing`] at `at`. On PostgreSQL, `Ok(None)` when
    /// the database has no schema yet (no recorder created it).
    pub fn open_existing_at(at: &IndexAt) -> Result<Option<Self>, IndexError> {
        match at {
            IndexAt::Sqlite(p) => Self::open_existing(p),
            IndexAt::Postgres(t) => {
                let db = t.connect()?;
                let Some(version) = super::pg_schema::version(&db)? else {
                    return Ok(None);
                };
                Ok(Some(Self {
                    conn: db,
                    version,
                    file: None,
                }))
            }
        }
    }

    /// [`Index::open_existing_rw`] at `at` (PostgreSQL: the schema is
    /// brought up to date when it exists).
    pub fn open_existing_rw_at(at: &IndexAt) -> Result<Option<Self>, IndexError> {
        match at {
            IndexAt::Sqlite(p) => Self::open_existing_rw(p),
            IndexAt::Postgres(t) => {
                let db = t.connect()?;
                if super::pg_schema::version(&db)?.is_none() {
                    return Ok(None);
                }
                super::pg_schema::migrate(&db)?;
                Ok(Some(Self {
                    conn: db,
                    version: known_version(),
                    file: None,
                }))
            }
        }
    }

    /// Opens an existing index read-only (for the CLI). `Ok(None)` if the
    /// file does not exist. A schema newer than known is accepted, since
    /// migrations only add; a file without a schema is an error.
    pub fn open_existing(path: &Path) -> Result<Option<Self>, IndexError> {
        if !path.is_file() {
            return Ok(None);
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        configure(&conn)?;
        let version = user_version(&conn)?;
        if version == 0 {
            return Err(IndexError::NotInitialised(path.to_path_buf()));
        }
        Ok(Some(Self {
            conn: Db::sqlite(conn),
            version,
            file: FileId::of(path).ok(),
        }))
    }

    /// Opens an existing index read-write, without creating it, and
    /// brings its schema up to date: for the command-line tools that write
    /// the audit trail or tokens (`Ok(None)`: there is no index). Unlike
    /// [`Index::open`], it never creates a file that a running server
    /// would take for a replaced index.
    pub fn open_existing_rw(path: &Path) -> Result<Option<Self>, IndexError> {
        if !path.is_file() {
            return Ok(None);
        }
        let mut conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        configure(&conn)?;
        conn.pragma_update(None, "foreign_keys", true)?;
        if user_version(&conn)? == 0 {
            return Err(IndexError::NotInitialised(path.to_path_buf()));
        }
        migrate(&mut conn)?;
        Ok(Some(Self {
            conn: Db::sqlite(conn),
            version: known_version(),
            file: FileId::of(path).ok(),
        }))
    }

    /// The connection, for the modules that keep their own tables in the
    /// index ([`crate::auth::tokens`], [`super::audit`]) and the tools
    /// that call them.
    pub fn conn(&self) -> &Db {
        &self.conn
    }

    /// Which SQL the index speaks.
    pub fn dialect(&self) -> Dialect {
        self.conn.dialect()
    }

    /// The schema version of the file as opened.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Whether `path` still names the file this connection has open: false
    /// once it was deleted or replaced (e.g. renamed over), when writing on
    /// would go to a file nobody reads. One stat(2).
    pub fn is_at(&self, path: &Path) -> bool {
        match (self.file, FileId::of(path)) {
            (Some(open), Ok(now)) => open == now,
            _ => false,
        }
    }

    /// [`Index::is_at`] for any index: on PostgreSQL, whether the
    /// connection is still open (the server did not close it).
    pub fn is_current(&self, at: &IndexAt) -> bool {
        match at {
            IndexAt::Sqlite(p) => self.is_at(p),
            IndexAt::Postgres(_) => !self.conn.is_closed(),
        }
    }

    /// Inserts or replaces one recording and all its derived rows
    /// (participants, DNs, correlation ids, events, DTMF), in one transaction.
    pub fn upsert(&self, meta: &RecordingMeta) -> Result<(), IndexError> {
        let tx = self.conn.immediate_transaction()?;
        upsert_in(&tx, meta)?;
        tx.commit()?;
        Ok(())
    }

    /// Like [`Index::upsert`] for many recordings, all in one transaction.
    pub fn upsert_batch(&self, metas: &[RecordingMeta]) -> Result<(), IndexError> {
        let tx = self.conn.immediate_transaction()?;
        upsert_many_in(&tx, metas)?;
        tx.commit()?;
        Ok(())
    }

    /// Rebuilds the index from the drop: every recording of
    /// [`FileDrop::scan`] is upserted (replaced if indexed already), in
    /// transactions of [`REINDEX_BATCH`] recordings, and the rows of
    /// recordings no longer in the drop are removed. Idempotent.
    ///
    /// Safe while a server is running: only rows that were in the index
    /// before the scan can be removed, and the server indexes a recording
    /// only after publishing it, so a recording published during the
    /// reindex is never removed.
    ///
    /// `progress(done, total)` is called once after the scan with
    /// `done == 0`, then after each batch.
    pub fn reindex(
        &self,
        drop: &FileDrop,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<ReindexReport, IndexError> {
        // (id, node, in the object store) of every row before the scan.
        let before: Vec<(String, Option<String>, bool)> = {
            let mut stmt = self.conn.prepare(
                "SELECT r.recording_id, r.node,
                        EXISTS (SELECT 1 FROM recording_objects o WHERE o.recording_id = r.recording_id)
                 FROM recordings r",
            )?;
            let ids = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            ids.collect::<Result<_, DbError>>()?
        };
        let recs = drop.scan()?;
        // With several recorders sharing the index, a row is this drop's
        // to prune only if it was made by a recorder whose recordings are
        // in this drop (or by none recorded), and it is not kept in the
        // object store (a recording without a local copy is not gone).
        let nodes: std::collections::HashSet<&str> =
            recs.iter().filter_map(|r| r.node.as_deref()).collect();
        let before: std::collections::HashSet<String> = before
            .into_iter()
            .filter(|(_, node, stored)| {
                !stored && node.as_deref().is_none_or(|n| nodes.contains(n))
            })
            .map(|(id, _, _)| id)
            .collect();
        let total = recs.len();
        progress(0, total);
        let mut done = 0;
        for batch in recs.chunks(REINDEX_BATCH) {
            self.upsert_batch(batch)?;
            done += batch.len();
            progress(done, total);
        }
        let found: std::collections::HashSet<&str> =
            recs.iter().map(|r| r.recording_id.as_str()).collect();
        let stale: Vec<&String> = before
            .iter()
            .filter(|id| !found.contains(id.as_str()))
            .collect();
        let mut removed = 0;
        for batch in stale.chunks(REINDEX_BATCH) {
            let tx = self.conn.immediate_transaction()?;
            for id in batch {
                removed += delete_in(&tx, id)?;
            }
            tx.commit()?;
        }
        Ok(ReindexReport {
            indexed: total,
            removed,
        })
    }

    /// Recordings matching `q`, newest first (`started_at` then
    /// `recording_id`, descending), one page of them (`limit`, `offset`),
    /// and the number of all matching recordings.
    pub fn search(&self, q: &Query) -> Result<(Vec<RecordingMeta>, u64), IndexError> {
        self.search_with(q, |total, rows| {
            Ok((rows.collect::<Result<_, _>>()?, total))
        })
    }

    /// [`Index::search`] without collecting the page: `page` gets the
    /// number of all matching recordings and the page's recordings one at
    /// a time (it may stop early), so a caller can bound what it keeps.
    ///
    /// The filter is one `WHERE` clause with bound parameters, used by the
    /// page query and the count query within one read transaction.
    pub fn search_with<T>(
        &self,
        q: &Query,
        page: impl FnOnce(
            u64,
            &mut dyn Iterator<Item = Result<RecordingMeta, IndexError>>,
        ) -> Result<T, IndexError>,
    ) -> Result<T, IndexError> {
        self.search_scoped(q, &Scope::default(), page)
    }

    /// [`Index::search_with`] within a token's scope: the scope is one
    /// more condition of the same `WHERE` clause, so `total` and the pages
    /// count only what the scope lets through. A restricted scope needs
    /// the functions of [`crate::auth::scope::register_sql_functions`] on
    /// this connection.
    pub fn search_scoped<T>(
        &self,
        q: &Query,
        scope: &Scope,
        page: impl FnOnce(
            u64,
            &mut dyn Iterator<Item = Result<RecordingMeta, IndexError>>,
        ) -> Result<T, IndexError>,
    ) -> Result<T, IndexError> {
        let dn = q.dn.as_deref().is_some_and(|d| !d.trim().is_empty());
        if self.version < SEARCH_VERSION || (dn && self.version < DN_SEARCH_VERSION) {
            return Err(IndexError::SchemaTooOld {
                found: self.version,
                known: known_version(),
            });
        }
        let sql = search_sql(q, scope, self.dialect())?;
        let limit = i64::try_from(q.effective_limit()).unwrap_or(i64::MAX);
        let offset = i64::try_from(q.effective_offset()).unwrap_or(i64::MAX);
        let tx = self.conn.unchecked_transaction()?;
        let total: i64 = tx.query_row(&sql.count, &sql.params, |r| r.get(0))?;
        let out = {
            // The page's ids first, then their rows: sorting the matches
            // carries only (started_at, recording_id), not every match's
            // meta_json (a DN with thousands of recordings sorted all of
            // them, several KB each, to keep 100).
            let mut stmt = tx.prepare(&sql.page)?;
            let mut page_params = sql.params.clone();
            page_params.push(Value::Integer(limit));
            page_params.push(Value::Integer(offset));
            let rows = stmt.query_map(&page_params, |r| Ok((r.get(0)?, r.get(1)?)))?;
            let mut rows = rows.map(|row| {
                let (id, json) = row?;
                parse_row(id, json)
            });
            page(u64::try_from(total).unwrap_or(0), &mut rows)?
        };
        tx.commit()?;
        Ok(out)
    }

    /// Recordings, newest first (`started_at` then `recording_id`, descending),
    /// at most `limit` of them if given.
    pub fn list(&self, limit: Option<usize>) -> Result<Vec<RecordingMeta>, IndexError> {
        let limit = limit.map_or(i64::MAX, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let mut stmt = self.conn.prepare(
            "SELECT recording_id, meta_json FROM recordings
             ORDER BY started_at DESC, recording_id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![limit], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, json) = row?;
            out.push(parse_row(id, json)?);
        }
        Ok(out)
    }

    /// The recording with that recording id, else the newest with that Call-ID.
    pub fn get(&self, id_or_call_id: &str) -> Result<Option<RecordingMeta>, IndexError> {
        self.get_scoped(id_or_call_id, &Scope::default())
    }

    /// [`Index::get`] within a token's scope: a recording outside it is
    /// not found, whether its id or its Call-ID is asked (and a Call-ID
    /// gives the newest recording of that call inside the scope).
    pub fn get_scoped(
        &self,
        id_or_call_id: &str,
        scope: &Scope,
    ) -> Result<Option<RecordingMeta>, IndexError> {
        let (cond, scope_params) = scope.to_sql(2, self.dialect());
        let mut all = vec![Value::Text(id_or_call_id.to_string())];
        all.extend(scope_params);
        let row: Option<(String, String)> = self
            .conn
            .query_row(
                &format!(
                    "SELECT recording_id, meta_json FROM recordings r
                     WHERE recording_id = ?1 AND {cond}"
                ),
                &all,
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let row = match row {
            Some(row) => Some(row),
            None => self
                .conn
                .query_row(
                    &format!(
                        "SELECT recording_id, meta_json FROM recordings r WHERE call_id = ?1
                         AND {cond}
                         ORDER BY started_at DESC, recording_id DESC LIMIT 1"
                    ),
                    &all,
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?,
        };
        row.map(|(id, json)| parse_row(id, json)).transpose()
    }

    /// Number of recordings in the index.
    pub fn count(&self) -> Result<u64, IndexError> {
        let n: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM recordings", [], |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

/// The query plan of [`Index::search`]'s page query for `q` (`EXPLAIN
/// QUERY PLAN`, one line per step): for the tests and docs/performance.md
/// that show which indexes a search uses.
pub fn explain_search(index: &Index, q: &Query) -> Result<String, IndexError> {
    let search = search_sql(q, &Scope::default(), index.dialect())?;
    let mut params = search.params.clone();
    params.extend([Value::Integer(100), Value::Integer(0)]);
    let (sql, column) = match index.dialect() {
        Dialect::Sqlite => (format!("EXPLAIN QUERY PLAN {}", search.page), 3),
        Dialect::Postgres => (format!("EXPLAIN {}", search.page), 0),
    };
    let mut stmt = index.conn.prepare(&sql)?;
    let rows = stmt.query_map(&params, |r| r.get::<String>(column))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?.join("\n"))
}

/// The SQL of a search ([`Index::search_scoped`]): the count of the
/// matches, and the page (ids and JSON, newest first; its last two
/// parameters are the limit and the offset, after `params`).
struct SearchSql {
    count: String,
    page: String,
    params: Vec<Value>,
}

/// A search by DN is driven by the DN's entries in `recording_dns`,
/// which carry the start time: the page comes from the index `(dn,
/// started_at, recording_id)` newest first and stops at the page, the
/// count reads that index alone when nothing else is asked (an agent's DN
/// matches thousands of recordings). Any other search is a `WHERE`
/// clause over `recordings r`. The scope is one more condition over `r`.
fn search_sql(q: &Query, scope: &Scope, dialect: Dialect) -> Result<SearchSql, IndexError> {
    let scoped = |r: Option<String>, params: &mut Vec<Value>| {
        if scope.is_unrestricted() {
            return r;
        }
        let (sql, p) = scope.to_sql(params.len() + 1, dialect);
        params.extend(p);
        Some(match r {
            Some(w) => format!("({w})\n   AND {sql}"),
            None => sql,
        })
    };
    let (from, where_sql, order, mut params) = match q.to_sql_by_dn(dialect)? {
        Some(f) => {
            let mut params = f.params;
            match scoped(f.r_sql, &mut params) {
                None => ("recording_dns d".to_string(), f.d_sql, "d", params),
                Some(r) => (
                    "recording_dns d JOIN recordings r ON r.recording_id = d.recording_id".into(),
                    format!("{}\n   AND {r}", f.d_sql),
                    "d",
                    params,
                ),
            }
        }
        None => {
            let f = q.to_sql(dialect)?;
            let mut params = f.params;
            let w = scoped(Some(f.where_sql), &mut params).unwrap_or_default();
            ("recordings r".to_string(), w, "r", params)
        }
    };
    let n = params.len();
    params.shrink_to_fit();
    Ok(SearchSql {
        count: format!("SELECT COUNT(*) FROM {from} WHERE {where_sql}"),
        page: format!(
            "SELECT o.recording_id, o.meta_json FROM recordings o
             WHERE o.recording_id IN (
                 SELECT {order}.recording_id FROM {from}
                 WHERE {where_sql}
                 ORDER BY {order}.started_at DESC, {order}.recording_id DESC
                 LIMIT ?{} OFFSET ?{})
             ORDER BY o.started_at DESC, o.recording_id DESC",
            n + 1,
            n + 2
        ),
        params,
    })
}

/// Published recordings kept for the index while it is unusable; beyond,
/// the oldest are left to `srs reindex` (they are in the drop).
pub const MAX_BACKLOG: usize = 10_000;

/// How often an index fault is logged again while it lasts.
const FAULT_LOG_EVERY: Duration = Duration::from_secs(60);

/// The server's writer of the index (its publisher thread owns it).
///
/// No fault of the index stops publishing: the drop comes first, and a
/// recording the index cannot take is logged and kept in a backlog, which
/// is written with the next batch (or retry) once the index is usable again.
/// Before each batch the index file at the path is checked to be the one
/// open (one stat): a file deleted or replaced (`srs reindex` into a new
/// file, a restore) is reopened at its path, created if need be, and said in
/// the log, instead of writing on into a file nobody reads.
///
/// On PostgreSQL the same holds: a server that is down, restarting or
/// refusing connections is a fault like any other; the backlog waits, and
/// a fresh connection is made for the next batch.
#[derive(Debug)]
pub struct IndexWriter {
    path: IndexAt,
    index: Option<Index>,
    backlog: Vec<RecordingMeta>,
    /// Since when the index has been failing, and when that was last logged.
    failing: Option<(std::time::Instant, std::time::Instant)>,
    /// Recordings dropped from the backlog during this fault.
    given_up: usize,
}

impl IndexWriter {
    /// Opens the index at `path` (an error is logged; the writer retries).
    pub fn open(path: impl Into<IndexAt>) -> Self {
        let mut w = IndexWriter {
            path: path.into(),
            index: None,
            backlog: Vec::new(),
            failing: None,
            given_up: 0,
        };
        if let Err(e) = w.connect() {
            w.fault(&e);
        }
        w
    }

    /// Recordings published but not yet in the index.
    pub fn pending(&self) -> usize {
        self.backlog.len()
    }

    /// Whether the last write reached the index.
    pub fn is_healthy(&self) -> bool {
        self.failing.is_none()
    }

    /// Opens the index unless the open connection is to the file at the path.
    fn connect(&mut self) -> Result<(), IndexError> {
        if let Some(ix) = &self.index {
            if !ix.is_current(&self.path) {
                self.index = None;
                if let Some(path) = self.path.sqlite_path() {
                    let gone = !path.exists();
                    let ix = Index::open(path)?;
                    if gone {
                        tracing::warn!(path = %path.display(),
                            "the index file was deleted: created a new one at its path; run `srs reindex` to bring back the recordings published before");
                    } else {
                        tracing::warn!(path = %path.display(),
                            "the index file was replaced: reopened it at its path");
                    }
                    self.index = Some(ix);
                }
            }
        }
        if self.index.is_none() {
            self.index = Some(Index::open_at(&self.path)?);
        }
        Ok(())
    }

    /// Writes the backlog, [`REINDEX_BATCH`] recordings per transaction (a
    /// long backlog must not hold the lock against readers for long).
    fn write_backlog(&mut self, written: &mut usize) -> Result<(), IndexError> {
        while !self.backlog.is_empty() {
            self.connect()?;
            let n = self.backlog.len().min(REINDEX_BATCH);
            if let Some(ix) = &self.index {
                ix.upsert_batch(&self.backlog[..n])?;
            }
            self.backlog.drain(..n);
            *written += n;
        }
        Ok(())
    }

    /// Indexes `published`, after whatever an earlier fault left waiting.
    /// Never fails: see the type's doc.
    pub fn index(&mut self, published: Vec<RecordingMeta>) {
        self.backlog.extend(published);
        if self.backlog.is_empty() {
            return;
        }
        let t = std::time::Instant::now();
        let total = self.backlog.len();
        let mut written = 0;
        let result = self.write_backlog(&mut written);
        tracing::debug!(
            recordings = written,
            index_ms = t.elapsed().as_secs_f64() * 1e3,
            "index batch"
        );
        match result {
            Ok(()) => {
                if let Some((since, _)) = self.failing.take() {
                    tracing::warn!(index = %self.path, indexed_late = total,
                        given_up = self.given_up, fault_s = since.elapsed().as_secs(),
                        "the index is usable again: the recordings published meanwhile are indexed");
                    if self.given_up > 0 {
                        tracing::warn!(missing = self.given_up,
                            "some recordings of the fault are in the drop but not the index: run `srs reindex`");
                    }
                    self.given_up = 0;
                }
            }
            Err(e) => {
                // A fresh connection next time: this one may be stuck in
                // a failed transaction, or on a file since replaced.
                self.index = None;
                self.fault(&e);
            }
        }
    }

    /// Logs a fault (at once when it starts, then every minute) and bounds
    /// the backlog.
    fn fault(&mut self, e: &IndexError) {
        let now = std::time::Instant::now();
        if self.backlog.len() > MAX_BACKLOG {
            let excess = self.backlog.len() - MAX_BACKLOG;
            self.backlog.drain(..excess);
            self.given_up += excess;
        }
        match &mut self.failing {
            None => {
                self.failing = Some((now, now));
                let ids: Vec<&str> = self
                    .backlog
                    .iter()
                    .take(20)
                    .map(|m| m.recording_id.as_str())
                    .collect();
                tracing::error!(index = %self.path, error = %e, waiting = self.backlog.len(),
                    recording_ids = ?ids,
                    "index unusable: recordings still land in the drop and are indexed once it is usable again (or run `srs reindex`)");
            }
            Some((since, logged)) if now.duration_since(*logged) >= FAULT_LOG_EVERY => {
                *logged = now;
                tracing::error!(index = %self.path, error = %e, waiting = self.backlog.len(),
                    given_up = self.given_up, fault_s = since.elapsed().as_secs(),
                    "index still unusable");
            }
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::{DtmfMeta, EventMeta, ParticipantMeta};

    /// Processes opening a new index at once (the server's threads and
    /// `srs list`) each migrate it; a step is never run twice (it failed
    /// with "duplicate column name" when the version was read outside the
    /// step's transaction).
    #[test]
    fn concurrent_openers_migrate_once() {
        for round in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("index.sqlite");
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let path = path.clone();
                    std::thread::spawn(move || Index::open(&path).map(|_| ()))
                })
                .collect();
            for h in handles {
                h.join()
                    .unwrap()
                    .unwrap_or_else(|e| panic!("round {round}: {e}"));
            }
            let conn = Connection::open(&path).unwrap();
            assert_eq!(user_version(&conn).unwrap(), known_version());
        }
    }

    fn rec(id: &str, call_id: &str, started_at: &str, aors: &[&str]) -> RecordingMeta {
        RecordingMeta {
            recording_id: id.to_string(),
            call_id: call_id.to_string(),
            status: "complete".to_string(),
            started_at: started_at.to_string(),
            ended_at: started_at.to_string(),
            duration_ms: 1000,
            path: format!("2026/11/23/{id}"),
            participants: aors
                .iter()
                .enumerate()
                .map(|(i, a)| ParticipantMeta {
                    id: format!("p{i}"),
                    aor: Some(a.to_string()),
                    labels: vec![i.to_string()],
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn participants(ix: &Index, id: &str) -> Vec<(String, Option<String>, String)> {
        let mut stmt = ix
            .conn
            .prepare(
                "SELECT participant_id, aor, labels FROM participants
                 WHERE recording_id = ?1 ORDER BY participant_id",
            )
            .unwrap();
        stmt.query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn open_creates_schema_in_nested_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a/b/index.sqlite");
        let ix = Index::open(&path).unwrap();
        assert!(path.is_file());
        assert_eq!(
            user_version(ix.conn.as_sqlite().unwrap()).unwrap(),
            known_version()
        );
        assert!(known_version() >= 1);
        let mode: String = ix
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "truncate");
        let mmap: i64 = ix
            .conn
            .query_row("PRAGMA mmap_size", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mmap, 0, "no memory map: a fault is an error, not a SIGBUS");
        assert_eq!(ix.count().unwrap(), 0);
        assert!(ix.list(None).unwrap().is_empty());
        assert!(ix.get("x").unwrap().is_none());
    }

    #[test]
    fn a_wal_index_of_an_earlier_version_leaves_wal() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("index.sqlite");
        {
            let conn = Connection::open(&path).unwrap();
            let mode: String = conn
                .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
                .unwrap();
            assert_eq!(mode, "wal");
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
        }
        let ix = Index::open(&path).unwrap();
        ix.upsert(&rec("r", "c", "2026-11-23T10:00:00Z", &[]))
            .unwrap();
        let mode: String = ix
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "truncate");
        assert!(!tmp.path().join("index.sqlite-shm").exists());
        assert!(!tmp.path().join("index.sqlite-wal").exists());
    }

    #[test]
    fn a_deleted_or_replaced_index_file_is_noticed() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("index.sqlite");
        let ix = Index::open(&path).unwrap();
        assert!(ix.is_at(&path));
        let ro = Index::open_existing(&path).unwrap().unwrap();
        assert!(ro.is_at(&path));
        // Replaced: another file renamed over it.
        let other = tmp.path().join("other.sqlite");
        drop(Index::open(&other).unwrap());
        std::fs::rename(&other, &path).unwrap();
        assert!(!ix.is_at(&path));
        assert!(!ro.is_at(&path));
        assert!(Index::open(&path).unwrap().is_at(&path));
        // Deleted.
        std::fs::remove_file(&path).unwrap();
        assert!(!ix.is_at(&path));
    }

    #[test]
    fn the_writer_follows_the_file_at_its_path_and_outlives_faults() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("index.sqlite");
        let r = |id: &str| rec(id, &format!("c-{id}"), "2026-11-23T10:00:00Z", &[]);
        let ids = |path: &Path| -> Vec<String> {
            let ix = Index::open_existing(path).unwrap().unwrap();
            let mut v: Vec<_> = ix
                .list(None)
                .unwrap()
                .into_iter()
                .map(|m| m.recording_id)
                .collect();
            v.sort();
            v
        };
        let mut w = IndexWriter::open(path.clone());
        w.index(vec![r("a")]);
        assert_eq!(ids(&path), ["a"]);
        // Deleted: a new index at the path.
        std::fs::remove_file(&path).unwrap();
        w.index(vec![r("b")]);
        assert_eq!(ids(&path), ["b"]);
        // Replaced (as a rebuild renamed into place would).
        let other = tmp.path().join("rebuilt.sqlite");
        Index::open(&other).unwrap().upsert(&r("x")).unwrap();
        std::fs::rename(&other, &path).unwrap();
        w.index(vec![r("c")]);
        assert_eq!(ids(&path), ["c", "x"]);
        // Unusable (here: a directory where the file should be): nothing
        // indexed, nothing lost, and it all comes back once it is usable.
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        w.index(vec![r("d")]);
        w.index(vec![r("e")]);
        assert!(!w.is_healthy());
        assert_eq!(w.pending(), 2);
        std::fs::remove_dir(&path).unwrap();
        w.index(Vec::new());
        assert!(w.is_healthy());
        assert_eq!(w.pending(), 0);
        assert_eq!(ids(&path), ["d", "e"]);
    }

    #[test]
    fn reopen_does_not_rerun_migrations() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("index.sqlite");
        {
            let ix = Index::open(&path).unwrap();
            ix.upsert(&rec("r1", "c1", "2026-11-23T10:00:00Z", &["sip:a@x"]))
                .unwrap();
        }
        let ix = Index::open(&path).unwrap();
        assert_eq!(ix.count().unwrap(), 1);
        assert_eq!(
            user_version(ix.conn.as_sqlite().unwrap()).unwrap(),
            known_version()
        );
        let mut conn = Connection::open(&path).unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), 0);
        drop(conn);
        // A fresh database runs every step.
        let mut fresh = Connection::open_in_memory().unwrap();
        assert_eq!(migrate(&mut fresh).unwrap(), MIGRATIONS.len());
    }

    #[test]
    fn newer_schema_is_refused_read_write() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("index.sqlite");
        drop(Index::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", known_version() + 1)
            .unwrap();
        drop(conn);
        assert!(matches!(
            Index::open(&path),
            Err(IndexError::SchemaTooNew { .. })
        ));
        // Still readable by the CLI.
        assert!(Index::open_existing(&path).unwrap().is_some());
    }

    #[test]
    fn upsert_list_get() {
        crate::testkit::pg::each_backend("upsert_list_get", |at| {
            let ix = Index::open_at(at).unwrap();
            let a = rec("a", "call-1", "2026-11-23T10:00:00Z", &["sip:a@x"]);
            // Same instant as `a` written with an offset and later by 1 ms.
            let b = rec("b", "call-2", "2026-11-23T11:00:00.001+01:00", &["sip:b@x"]);
            let c = rec("c", "call-1", "2026-11-23T12:00:00Z", &["sip:c@x"]);
            let d = rec("d", "call-3", "2026-11-23T10:00:00Z", &[]);
            for r in [&a, &b, &c, &d] {
                ix.upsert(r).unwrap();
            }
            assert_eq!(ix.count().unwrap(), 4);
            let ids: Vec<_> = ix
                .list(None)
                .unwrap()
                .into_iter()
                .map(|r| r.recording_id)
                .collect();
            assert_eq!(ids, ["c", "b", "d", "a"]);
            assert_eq!(ix.list(Some(2)).unwrap(), vec![c.clone(), b.clone()]);
            assert!(ix.list(Some(0)).unwrap().is_empty());

            assert_eq!(ix.get("a").unwrap(), Some(a.clone()));
            assert_eq!(ix.get("call-2").unwrap(), Some(b.clone()));
            // Newest of several recordings of one call.
            assert_eq!(ix.get("call-1").unwrap(), Some(c.clone()));
            assert_eq!(ix.get("nope").unwrap(), None);
        });
    }

    #[test]
    fn upsert_twice_replaces() {
        crate::testkit::pg::each_backend("upsert_twice_replaces", |at| {
            let ix = Index::open_at(at).unwrap();
            ix.upsert(&rec(
                "r",
                "c",
                "2026-11-23T10:00:00Z",
                &["sip:a@x", "sip:b@x"],
            ))
            .unwrap();
            assert_eq!(participants(&ix, "r").len(), 2);
            let mut r2 = rec("r", "c2", "2026-11-23T10:00:00Z", &["sip:z@x"]);
            r2.status = "updated".to_string();
            ix.upsert(&r2).unwrap();
            assert_eq!(ix.count().unwrap(), 1);
            assert_eq!(ix.get("r").unwrap(), Some(r2.clone()));
            assert_eq!(ix.get("c2").unwrap(), Some(r2));
            assert_eq!(ix.get("c").unwrap(), None);
            assert_eq!(
                participants(&ix, "r"),
                vec![(
                    "p0".to_string(),
                    Some("sip:z@x".to_string()),
                    "[\"0\"]".to_string()
                )]
            );
        });
    }

    #[test]
    fn open_existing_missing_and_read_only() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("index.sqlite");
        assert!(Index::open_existing(&path).unwrap().is_none());
        assert!(!path.exists());

        let r = rec("r", "c", "2026-11-23T10:00:00Z", &["sip:a@x"]);
        Index::open(&path).unwrap().upsert(&r).unwrap();
        let ro = Index::open_existing(&path).unwrap().unwrap();
        assert_eq!(ro.list(None).unwrap(), vec![r.clone()]);
        assert_eq!(ro.get("c").unwrap(), Some(r.clone()));
        assert!(ro.upsert(&r).is_err());
    }

    #[test]
    fn open_existing_rejects_uninitialised_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("empty.sqlite");
        std::fs::write(&path, b"").unwrap();
        assert!(matches!(
            Index::open_existing(&path),
            Err(IndexError::NotInitialised(_))
        ));
    }

    #[test]
    fn bad_row_is_an_error_not_a_panic() {
        crate::testkit::pg::each_backend("bad_row_is_an_error_not_a_panic", |at| {
            let ix = Index::open_at(at).unwrap();
            ix.conn
            .execute(
                "INSERT INTO recordings (recording_id, call_id, meta_json) VALUES ('x', 'c', '{')",
                [],
            )
            .unwrap();
            assert!(matches!(ix.list(None), Err(IndexError::BadRow { .. })));
            assert!(matches!(ix.get("x"), Err(IndexError::BadRow { .. })));
        });
    }

    /// The schema-1 upsert, as the code before version 2 wrote rows.
    fn upsert_v1(conn: &Connection, meta: &RecordingMeta) {
        conn.execute(
            "INSERT INTO recordings
                 (recording_id, call_id, status, started_at, ended_at, duration_ms, source, path, meta_json)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            rusqlite::params![
                meta.recording_id,
                meta.call_id,
                meta.status,
                sort_key(&meta.started_at),
                sort_key(&meta.ended_at),
                1000,
                meta.source,
                meta.path,
                serde_json::to_string(meta).unwrap(),
            ],
        )
        .unwrap();
        for p in &meta.participants {
            conn.execute(
                "INSERT INTO participants (recording_id, participant_id, aor, name, labels)
                 VALUES (?1, ?2, ?3, ?4, '[]')",
                rusqlite::params![meta.recording_id, p.id, p.aor, p.name],
            )
            .unwrap();
        }
    }

    /// A Genesys-style recording: Record DN 1001, a caller, then agent 7002
    /// joining by transfer (event only), and a DTMF digit.
    fn genesys_rec(id: &str, started_at: &str) -> RecordingMeta {
        let mut r = rec(
            id,
            &format!("call-{id}"),
            started_at,
            &["sip:+15551230001@carrier", "sip:1001@pbx"],
        );
        r.record_dn = Some("1001".into());
        r.record_dn_kind = Some("extension".into());
        r.geo_location = Some("EMEA-Paris".into());
        r.direction = Some("inbound".into());
        r.participants[1].name = Some("Agent Alice".into());
        for (k, v) in [
            ("calluuid", "0A1B2C3D4E5F"),
            ("ani", "+15551230001"),
            ("dnis", "8005550100"),
            ("connid", "006f02a5c3e1d001"),
        ] {
            r.correlation.insert(k.into(), v.into());
        }
        r.events = vec![EventMeta {
            at: "2026-11-23T10:00:30+00:00".into(),
            kind: "participant-joined".into(),
            participant_id: Some("p9".into()),
            aor: Some("sip:7002@pbx".into()),
            ..Default::default()
        }];
        r.dtmf = vec![DtmfMeta {
            label: "1".into(),
            digit: "5".into(),
            at_ms: 1200,
            duration_ms: 100,
            at: "2026-11-23T10:00:01.200Z".into(),
        }];
        r
    }

    fn ids(res: (Vec<RecordingMeta>, u64)) -> (Vec<String>, u64) {
        (res.0.into_iter().map(|r| r.recording_id).collect(), res.1)
    }

    #[test]
    fn a_dn_search_pages_and_filters_as_any_search_does() {
        crate::testkit::pg::each_backend(
            "a_dn_search_pages_and_filters_as_any_search_does",
            |at| {
                let ix = Index::open_at(at).unwrap();
                // r1..r5 share agent 7001 (in an offset, a time of the same
                // instant twice, another status); r6 is someone else's.
                let mut recs = vec![
                    rec("r1", "c1", "2026-11-23T09:00:00Z", &["sip:7001@x"]),
                    rec("r2", "c2", "2026-11-23T10:00:00+01:00", &["sip:7001@x"]),
                    rec(
                        "r3",
                        "c3",
                        "2026-11-23T09:00:00Z",
                        &["sip:7001@x", "sip:+331@y"],
                    ),
                    rec("r4", "c4", "2026-11-24T08:00:00Z", &["sip:7001@x"]),
                    rec("r5", "c5", "2026-11-22T08:00:00Z", &["sip:7001@x"]),
                    rec("r6", "c6", "2026-11-25T08:00:00Z", &["sip:7002@x"]),
                ];
                recs[3].status = "truncated".into();
                ix.upsert_batch(&recs).unwrap();
                let search = |f: &dyn Fn(&mut Query)| {
                    let mut q = Query {
                        dn: Some("7001".into()),
                        ..Default::default()
                    };
                    f(&mut q);
                    ids(ix.search(&q).unwrap())
                };
                let all = |v: &[&str], n| (v.iter().map(|s| s.to_string()).collect::<Vec<_>>(), n);
                // Newest first, then the id, descending: r2 and r3 start at
                // the same instant (09:00 UTC).
                assert_eq!(search(&|_| {}), all(&["r4", "r3", "r2", "r1", "r5"], 5));
                assert_eq!(
                    search(&|q| {
                        q.limit = Some(2);
                        q.offset = Some(1);
                    }),
                    all(&["r3", "r2"], 5)
                );
                assert_eq!(
                    search(&|q| {
                        q.since = Some("2026-11-23".into());
                        q.until = Some("2026-11-23".into());
                    }),
                    all(&["r3", "r2", "r1"], 3),
                    "a day, on the DN's stored start times"
                );
                assert_eq!(
                    search(&|q| q.status = Some("truncated".into())),
                    all(&["r4"], 1)
                );
                assert_eq!(search(&|q| q.dn = Some("+331".into())), all(&["r3"], 1));
                // Replaced: the DN's entries follow the recording's new time.
                let mut moved = recs[4].clone();
                moved.started_at = "2026-11-26T08:00:00Z".into();
                ix.upsert(&moved).unwrap();
                assert_eq!(search(&|q| q.limit = Some(1)), all(&["r5"], 5));
            },
        );
    }

    /// After schema step 7: the DN of `recording_dns` (1001) and the one of
    /// `recording_event_dns` (7002, 1001 again), once each, with the start.
    fn assert_every_dn_with_its_start(ix: &Index) {
        let rows: Vec<(String, String)> = ix
            .conn
            .query_all("SELECT dn, started_at FROM recording_dns ORDER BY dn", [])
            .unwrap()
            .iter()
            .map(|r| (r.get(0).unwrap(), r.get(1).unwrap()))
            .collect();
        let at = "2026-11-23T09:00:00.000Z".to_string();
        assert_eq!(rows, [("1001".into(), at.clone()), ("7002".into(), at)]);
    }

    #[test]
    fn migrates_a_v6_database_with_every_dn_and_its_start_time() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("index.sqlite");
        let old = genesys_rec("old", "2026-11-23T09:00:00Z");
        {
            let conn = Connection::open(&path).unwrap();
            for step in &MIGRATIONS[..6] {
                conn.execute_batch(step).unwrap();
            }
            conn.pragma_update(None, "user_version", 6).unwrap();
            conn.execute(
                "INSERT INTO recordings (recording_id, call_id, started_at, meta_json)
                 VALUES ('old', 'c-old', '2026-11-23T09:00:00.000Z', ?1)",
                [serde_json::to_string(&old).unwrap()],
            )
            .unwrap();
            conn.execute_batch(
                "INSERT INTO recording_dns (recording_id, dn) VALUES ('old', '1001');
                 INSERT INTO recording_event_dns (recording_id, dn) VALUES ('old', '7002'), ('old', '1001');",
            )
            .unwrap();
        }
        let by_dn = |dn: &str| Query {
            dn: Some(dn.into()),
            ..Default::default()
        };
        // Read-only and not migrated: a DN search says to upgrade, the
        // others still work.
        let ro = Index::open_existing(&path).unwrap().unwrap();
        assert!(matches!(
            ro.search(&by_dn("1001")),
            Err(IndexError::SchemaTooOld { found: 6, .. })
        ));
        assert_eq!(ro.search(&Query::default()).unwrap().1, 1);
        drop(ro);
        let ix = Index::open(&path).unwrap();
        for dn in ["1001", "7002"] {
            assert_eq!(
                ids(ix.search(&by_dn(dn)).unwrap()),
                (vec!["old".into()], 1),
                "{dn}"
            );
        }
        assert_every_dn_with_its_start(&ix);
        let mut month = by_dn("7002");
        month.since = Some("2026-11-24".into());
        assert_eq!(
            ix.search(&month).unwrap().1,
            0,
            "the time range on the DN's entries"
        );
    }

    #[test]
    fn migrates_a_v6_postgres_index_with_every_dn_and_its_start_time() {
        let Some(c) = crate::testkit::pg::cluster(
            "migrates_a_v6_postgres_index_with_every_dn_and_its_start_time",
        ) else {
            return;
        };
        let at = c.fresh();
        let IndexAt::Postgres(target) = &at else {
            unreachable!()
        };
        {
            let db = target.connect().unwrap();
            for step in &super::super::pg_schema::PG_MIGRATIONS[..6] {
                db.execute_batch(step).unwrap();
            }
            db.execute_batch(
                "CREATE TABLE srs_schema (version BIGINT NOT NULL);
                 INSERT INTO srs_schema (version) VALUES (6);
                 INSERT INTO recordings (recording_id, call_id, started_at, meta_json)
                     VALUES ('old', 'c-old', '2026-11-23T09:00:00.000Z', '{}');
                 INSERT INTO recording_dns (recording_id, dn) VALUES ('old', '1001');
                 INSERT INTO recording_event_dns (recording_id, dn) VALUES ('old', '7002'), ('old', '1001');",
            )
            .unwrap();
        }
        let ix = Index::open_at(&at).unwrap();
        assert_every_dn_with_its_start(&ix);
    }

    #[test]
    fn migrates_a_v1_database() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("index.sqlite");
        let old = genesys_rec("old", "2026-11-23T09:00:00Z");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            upsert_v1(&conn, &old);
        }
        // The CLI (read-only) can still get, but search says to reindex.
        let ro = Index::open_existing(&path).unwrap().unwrap();
        assert_eq!(ro.get("old").unwrap(), Some(old.clone()));
        assert!(matches!(
            ro.search(&Query::default()),
            Err(IndexError::SchemaTooOld { found: 1, .. })
        ));
        drop(ro);

        let ix = Index::open(&path).unwrap();
        assert_eq!(
            user_version(ix.conn.as_sqlite().unwrap()).unwrap(),
            known_version()
        );
        // The old row is there, without the new columns until reindexed.
        assert_eq!(
            ids(ix.search(&Query::default()).unwrap()),
            (vec!["old".into()], 1)
        );
        let (record_dn, call_uuid): (Option<String>, Option<String>) = ix
            .conn
            .query_row(
                "SELECT record_dn, call_uuid FROM recordings WHERE recording_id = 'old'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((record_dn, call_uuid), (None, None));
        let by_dn = Query {
            record_dn: Some("1001".into()),
            ..Default::default()
        };
        assert_eq!(ix.search(&by_dn).unwrap().1, 0);
        // The v1 participants are searchable already.
        let by_name = Query {
            participant: Some("alice".into()),
            ..Default::default()
        };
        assert_eq!(ix.search(&by_name).unwrap().1, 1);
        // New rows next to old ones; then re-upserting the old row fills it.
        ix.upsert(&genesys_rec("new", "2026-11-23T10:00:00Z"))
            .unwrap();
        assert_eq!(ids(ix.search(&by_dn).unwrap()), (vec!["new".into()], 1));
        ix.upsert(&old).unwrap();
        assert_eq!(
            ids(ix.search(&by_dn).unwrap()),
            (vec!["new".into(), "old".into()], 2)
        );
        // Read-only at version 2 searches.
        drop(ix);
        let ro = Index::open_existing(&path).unwrap().unwrap();
        assert_eq!(ro.search(&by_dn).unwrap().1, 2);
    }

    #[test]
    fn derived_rows_are_replaced_with_the_recording() {
        crate::testkit::pg::each_backend("derived_rows_are_replaced_with_the_recording", |at| {
            let ix = Index::open_at(at).unwrap();
            let r = genesys_rec("r", "2026-11-23T10:00:00Z");
            ix.upsert(&r).unwrap();
            ix.upsert(&r).unwrap();
            let count = |table: &str| -> i64 {
                ix.conn
                    .query_row(
                        &format!("SELECT COUNT(*) FROM {table} WHERE recording_id = 'r'"),
                        [],
                        |row| row.get(0),
                    )
                    .unwrap()
            };
            assert_eq!(count("recording_dns") as usize, r.dns().len());
            assert_eq!(count("correlation"), 4);
            assert_eq!(count("events"), 2);
            let dtmf: (i64, String, Option<String>, Option<String>) = ix
                .conn
                .query_row(
                    "SELECT seq, at, label, detail FROM events WHERE kind = 'dtmf'",
                    [],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
                )
                .unwrap();
            assert_eq!(
                dtmf,
                (
                    1,
                    "2026-11-23T10:00:01.200Z".to_string(),
                    Some("1".to_string()),
                    Some("5".to_string())
                )
            );
            let at: String = ix
                .conn
                .query_row("SELECT at FROM events WHERE seq = 0", [], |row| row.get(0))
                .unwrap();
            assert_eq!(at, "2026-11-23T10:00:30.000Z");

            // A new version without events, DTMF or correlation clears them.
            let mut r2 = rec("r", "c", "2026-11-23T10:00:00Z", &["sip:1001@pbx"]);
            r2.record_dn = Some("1001".into());
            ix.upsert(&r2).unwrap();
            assert_eq!(count("recording_dns"), 1);
            assert_eq!(count("correlation"), 0);
            assert_eq!(count("events"), 0);
            let q = Query {
                call_uuid: Some("0a1b2c3d4e5f".into()),
                ..Default::default()
            };
            assert_eq!(ix.search(&q).unwrap().1, 0);
        });
    }

    #[test]
    fn search_filters() {
        crate::testkit::pg::each_backend("search_filters", |at| {
            let ix = Index::open_at(at).unwrap();
            let a = genesys_rec("a", "2026-11-23T10:00:00Z");
            let mut b = rec(
                "b",
                "cb",
                "2026-11-23T23:59:59.999+00:00",
                &["sip:1002@pbx"],
            );
            b.record_dn = Some("1002".into());
            b.status = "partial".into();
            let c = rec("c", "cc", "2026-11-24T00:00:00Z", &[]);
            ix.upsert_batch(&[a, b, c]).unwrap();
            let q = |f: &dyn Fn(&mut Query)| {
                let mut q = Query::default();
                f(&mut q);
                ids(ix.search(&q).unwrap()).0
            };
            assert_eq!(q(&|_| {}), ["c", "b", "a"]);
            assert_eq!(q(&|q| q.record_dn = Some("1001".into())), ["a"]);
            assert_eq!(q(&|q| q.dn = Some("7002".into())), ["a"]);
            assert_eq!(q(&|q| q.dn = Some("1002".into())), ["b"]);
            assert_eq!(q(&|q| q.participant = Some("ALICE".into())), ["a"]);
            assert_eq!(q(&|q| q.participant = Some("7002@".into())), ["a"]);
            assert_eq!(q(&|q| q.participant = Some("pbx".into())), ["b", "a"]);
            assert_eq!(q(&|q| q.call_uuid = Some("0a1b2c3d4e5f".into())), ["a"]);
            assert_eq!(q(&|q| q.ani = Some("+15551230001".into())), ["a"]);
            assert_eq!(q(&|q| q.dnis = Some("8005550100".into())), ["a"]);
            assert_eq!(q(&|q| q.geo = Some("emea-paris".into())), ["a"]);
            assert_eq!(q(&|q| q.status = Some("partial".into())), ["b"]);
            assert_eq!(q(&|q| q.until = Some("2026-11-23".into())), ["b", "a"]);
            assert_eq!(q(&|q| q.since = Some("2026-11-24".into())), ["c"]);
            assert_eq!(
                q(&|q| q.since = Some("2026-11-23T11:00:00+01:00".into())),
                ["c", "b", "a"]
            );
            assert_eq!(
                q(&|q| q.until = Some("2026-11-23T11:00:00+01:00".into())),
                ["a"]
            );
            assert_eq!(
                q(&|q| {
                    q.dn = Some("1001".into());
                    q.status = Some("partial".into());
                }),
                Vec::<String>::new()
            );
            let page = |limit, offset| {
                ids(ix
                    .search(&Query {
                        limit: Some(limit),
                        offset: Some(offset),
                        ..Default::default()
                    })
                    .unwrap())
            };
            assert_eq!(page(2, 0), (vec!["c".into(), "b".into()], 3));
            assert_eq!(page(2, 2), (vec!["a".into()], 3));
            assert_eq!(page(2, 5), (vec![], 3));
            assert_eq!(page(0, 0), (vec![], 3));
            // list and get still work.
            assert_eq!(ix.list(Some(1)).unwrap()[0].recording_id, "c");
            assert_eq!(ix.get("cb").unwrap().unwrap().recording_id, "b");
        });
    }

    #[test]
    fn filter_values_are_bound_not_sql() {
        crate::testkit::pg::each_backend("filter_values_are_bound_not_sql", |at| {
            let ix = Index::open_at(at).unwrap();
            ix.upsert(&genesys_rec("a", "2026-11-23T10:00:00Z"))
                .unwrap();
            let evil = "x' OR '1'='1";
            let mut q = Query::default();
            for set in [
                (|q: &mut Query, v: &str| q.record_dn = Some(v.into())) as fn(&mut Query, &str),
                |q, v| q.dn = Some(v.into()),
                |q, v| q.participant = Some(v.into()),
                |q, v| q.call_uuid = Some(v.into()),
                |q, v| q.ani = Some(v.into()),
                |q, v| q.dnis = Some(v.into()),
                |q, v| q.geo = Some(v.into()),
                |q, v| q.status = Some(v.into()),
            ] {
                let mut one = Query::default();
                set(&mut one, evil);
                assert_eq!(ix.search(&one).unwrap().1, 0, "{one:?}");
                set(&mut q, evil);
            }
            assert_eq!(ix.search(&q).unwrap().1, 0);
            // SQL wildcards in a substring are literal.
            for v in ["%", "_", "%'--"] {
                let q = Query {
                    participant: Some(v.into()),
                    ..Default::default()
                };
                assert_eq!(ix.search(&q).unwrap().1, 0, "{v}");
            }
            // And a recording whose DN is that text is found exactly.
            let mut r = rec("evil", "ce", "2026-11-23T11:00:00Z", &[]);
            r.record_dn = Some(evil.into());
            ix.upsert(&r).unwrap();
            let q = Query {
                record_dn: Some(evil.into()),
                ..Default::default()
            };
            assert_eq!(ids(ix.search(&q).unwrap()), (vec!["evil".into()], 1));
            assert_eq!(ix.count().unwrap(), 2);
        });
    }

    #[test]
    fn a_scope_narrows_totals_pages_and_lookups() {
        crate::testkit::pg::each_backend("a_scope_narrows_totals_pages_and_lookups", |at| {
            let ix = Index::open_at(at).unwrap();
            let directory: std::sync::Arc<[crate::filing::DnEntry]> =
                vec![crate::filing::DnEntry {
                    dn: "70*".into(),
                    kind: "extension".into(),
                    geo_location: None,
                    site: Some("par-1".into()),
                }]
                .into();
            crate::auth::scope::register_sql_functions(&ix.conn, directory).unwrap();
            let mut all = Vec::new();
            for (i, (dn, geo)) in [
                ("7001", "paris"),
                ("7002", "paris"),
                ("7101", "lyon"),
                ("7003", "lyon"),
            ]
            .into_iter()
            .enumerate()
            {
                let mut r = rec(
                    &format!("r{i}"),
                    "same-call",
                    &format!("2026-11-23T10:0{i}:00Z"),
                    &[],
                );
                r.record_dn = Some(dn.into());
                r.geo_location = Some(geo.into());
                all.push(r);
            }
            ix.upsert_batch(&all).unwrap();
            let scope = Scope::parse(&["dn=70*", "geo=paris"]).unwrap();
            let page = Query {
                limit: Some(1),
                ..Default::default()
            };
            let (recs, total) = ix
                .search_scoped(&page, &scope, |t, rows| {
                    Ok((rows.collect::<Result<Vec<_>, _>>()?, t))
                })
                .unwrap();
            assert_eq!(total, 2, "the total counts only what the scope sees");
            assert_eq!(recs[0].recording_id, "r1");
            let q = Query {
                dn: Some("7101".into()),
                ..Default::default()
            };
            let (_, total) = ix.search_scoped(&q, &scope, |t, _| Ok(((), t))).unwrap();
            assert_eq!(total, 0);
            // By id: out of scope is not found; by Call-ID: the newest in scope.
            assert!(ix.get_scoped("r2", &scope).unwrap().is_none());
            assert!(ix.get_scoped("r0", &scope).unwrap().is_some());
            assert_eq!(ix.get("same-call").unwrap().unwrap().recording_id, "r3");
            assert_eq!(
                ix.get_scoped("same-call", &scope)
                    .unwrap()
                    .unwrap()
                    .recording_id,
                "r1"
            );
            let site = Scope::parse(&["site=PAR-1"]).unwrap();
            let (_, total) = ix
                .search_scoped(&Query::default(), &site, |t, _| Ok(((), t)))
                .unwrap();
            assert_eq!(total, 3);
        });
    }

    #[test]
    fn search_rejects_bad_queries() {
        crate::testkit::pg::each_backend("search_rejects_bad_queries", |at| {
            let ix = Index::open_at(at).unwrap();
            let q = Query {
                since: Some("last tuesday".into()),
                ..Default::default()
            };
            let e = ix.search(&q).unwrap_err();
            assert!(matches!(e, IndexError::Query(_)), "{e:?}");
            assert!(e.to_string().contains("since"), "{e}");
        });
    }

    #[test]
    fn reindex_replaces_and_prunes() {
        crate::testkit::pg::each_backend("reindex_replaces_and_prunes", |at| {
            let tmp = tempfile::tempdir().unwrap();
            let fd = FileDrop::new(tmp.path().join("drop"));
            let mut metas = Vec::new();
            for (id, t) in [
                ("r1", "2026-11-23T10:00:00Z"),
                ("r2", "2026-11-24T10:00:00Z"),
            ] {
                fd.create_incoming(id).unwrap();
                let mut m = genesys_rec(id, t);
                fd.publish(&mut m).unwrap();
                metas.push(m);
            }
            let ix = Index::open_at(at).unwrap();
            // A stale row (no longer in the drop) and an outdated version of r1.
            ix.upsert(&rec("gone", "cg", "2026-01-01T00:00:00Z", &[]))
                .unwrap();
            ix.upsert(&rec("r1", "old", "2026-11-23T10:00:00Z", &[]))
                .unwrap();
            let mut calls = Vec::new();
            let report = ix.reindex(&fd, |d, t| calls.push((d, t))).unwrap();
            assert_eq!(
                report,
                ReindexReport {
                    indexed: 2,
                    removed: 1
                }
            );
            assert_eq!(calls, [(0, 2), (2, 2)]);
            let all = ix.search(&Query::default()).unwrap();
            assert_eq!(all.1, 2);
            assert_eq!(ix.get("r1").unwrap(), Some(metas[0].clone()));
            // Idempotent.
            let again = ix.reindex(&fd, |_, _| {}).unwrap();
            assert_eq!(
                again,
                ReindexReport {
                    indexed: 2,
                    removed: 0
                }
            );
            assert_eq!(ix.search(&Query::default()).unwrap(), all);
            let n: i64 = ix
                .conn
                .query_row("SELECT COUNT(*) FROM recording_dns", [], |r| r.get(0))
                .unwrap();
            assert_eq!(n as usize, metas[0].dns().len() * 2);
        });
    }
}
