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
//! - the events' `this_dn`/`other_dn`/`agent_id` join the recording's own
//!   DNs in `recording_dns` (searched by the `dn` filter; schema step 7).
//! - `call_events_sync`: recordings whose `call-events.json` must be
//!   written again (a durable to-do, in the same transaction as the links).
//!
//! [`relink`] recomputes one recording's links when events arrive
//! ([`super::worker`]); whenever recordings are written to the index
//! (publication, reindex) [`crate::store::index`] does the same for the
//! whole batch in its transaction ([`plan_links`], [`attach`],
//! [`write_links`]), whichever comes first.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::params;
use crate::store::db::{Db, Dialect, OptionalExt, ToArg, Value};
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

/// SQL for "`column` is one of the elements of the JSON array bound to
/// `?n`": one statement for a whole batch, whatever its size (on
/// PostgreSQL every statement is a round trip). `ty`: the elements' SQL
/// type, `text` or `bigint`. PostgreSQL: `= ANY(?n::ty[])`, the JSON bound
/// as an array ([`crate::store::db`]), so that the planner knows the list
/// and serves it from the column's index (a subquery over
/// `jsonb_array_elements` is estimated at 100 elements: a sequential scan
/// while the table is young).
fn in_json(dialect: Dialect, column: &str, n: usize, ty: &str) -> String {
    match dialect {
        Dialect::Sqlite => format!("{column} IN (SELECT value FROM json_each(?{n}))"),
        Dialect::Postgres => format!("{column} = ANY(?{n}::{ty}[])"),
    }
}

/// "`column` is one of `keys`", bound to `?1`: an equality for one key
/// (each post of the events thread, a publication alone), else "one of
/// the JSON array" ([`in_json`]) for a batch. The equality is what the
/// column's index serves in any plan: PostgreSQL keeps a connection's
/// generic plan, and one of `= ANY(...)` made while a table was young (a
/// sequential scan of a few rows) stays until the next ANALYZE.
pub fn keyed<T: ToArg + serde::Serialize>(
    dialect: Dialect,
    column: &str,
    ty: &str,
    keys: &[T],
) -> (String, Value) {
    match keys {
        [one] => (format!("{column} = ?1"), one.to_value()),
        _ => (
            in_json(dialect, column, 1, ty),
            Value::Text(json_array(keys)),
        ),
    }
}

/// Below this many keys a lookup is one equality per key: a few round
/// trips, and plans that stay right (see [`keyed`]).
const FEW_KEYS: usize = 4;

/// The statements of a lookup of `keys`: one per key when there are few,
/// else one for all.
pub fn key_lists<T>(keys: &[T]) -> std::slice::Chunks<'_, T> {
    keys.chunks(if keys.len() < FEW_KEYS {
        1
    } else {
        keys.len().max(1)
    })
}

/// `SELECT cols FROM table WHERE column is one of keys and`, with its
/// parameter `?1` ([`keyed`]).
fn select_keyed<T: ToArg + serde::Serialize>(
    dialect: Dialect,
    (cols, table, column, ty): (&str, &str, &str, &str),
    and: &str,
    keys: &[T],
) -> (String, Value) {
    let (cond, param) = keyed(dialect, column, ty, keys);
    (
        format!("SELECT {cols} FROM {table} WHERE {cond} {and}"),
        param,
    )
}

/// A JSON array of `items` (the parameter of [`in_json`]).
fn json_array<T: serde::Serialize>(items: impl IntoIterator<Item = T>) -> String {
    serde_json::to_string(&items.into_iter().collect::<Vec<T>>()).unwrap_or_else(|_| "[]".into())
}

/// One hop of [`reachable`]: the events of any of the ConnIDs `keys` (as
/// `conn_key` or `prev_key`) between `?2` and `?3`; `?1` is returned.
fn hop_sql(dialect: Dialect, keys: &[&str]) -> (String, Value) {
    let and = "AND at >= ?2 AND at <= ?3";
    let (conn, param) = select_keyed(
        dialect,
        (CANDIDATE_COLUMNS, "call_events", "conn_key", "text"),
        and,
        keys,
    );
    let (prev, _) = select_keyed(
        dialect,
        (CANDIDATE_COLUMNS, "call_events", "prev_key", "text"),
        and,
        keys,
    );
    (format!("{conn}\n UNION ALL\n {prev}"), param)
}

/// One search of [`reachable`]: events of these CallUUIDs, then every
/// event reachable from `seeds` through ConnIDs between `from` and `to`.
struct Reach {
    call_uuids: Vec<String>,
    seeds: Vec<String>,
    from: String,
    to: String,
}

/// A candidate row with its `at` as stored (compared as text, as SQL does).
fn candidate_row(r: &crate::store::db::Row) -> crate::store::db::DbResult<(String, Candidate)> {
    Ok((r.get(1)?, candidate(r)?))
}

/// Events by CallUUID, then every event reachable from the seeds through
/// ConnIDs inside the window (followed [`MAX_HOPS`] deep at most), each
/// once, at most [`MAX_CANDIDATES`] per search. All the searches of a
/// batch go together: one statement for the CallUUIDs, one per hop.
fn reachable(conn: &Db, searches: &[Reach]) -> crate::store::db::DbResult<Vec<Vec<Candidate>>> {
    struct State {
        seen: HashSet<i64>,
        keys: HashSet<String>,
        frontier: Vec<String>,
        out: Vec<Candidate>,
    }
    let mut states: Vec<State> = searches
        .iter()
        .map(|s| State {
            seen: HashSet::new(),
            keys: s.seeds.iter().cloned().collect(),
            frontier: s.seeds.clone(),
            out: Vec::new(),
        })
        .collect();
    let take = |st: &mut State, c: &Candidate, next: &mut Vec<String>| {
        if st.seen.insert(c.id) {
            for k in [&c.conn_id, &c.previous_conn_id].into_iter().flatten() {
                if st.keys.insert(k.clone()) {
                    next.push(k.clone());
                }
            }
            st.out.push(c.clone());
        }
    };
    // CallUUIDs: NOCASE on SQLite, indexed on lower() on PostgreSQL.
    let uuids: BTreeSet<String> = searches
        .iter()
        .flat_map(|s| s.call_uuids.iter().map(|u| u.to_ascii_lowercase()))
        .collect();
    if !uuids.is_empty() {
        let column = match conn.dialect() {
            Dialect::Sqlite => "call_uuid",
            Dialect::Postgres => "lower(call_uuid)",
        };
        let uuids: Vec<&str> = uuids.iter().map(String::as_str).collect();
        let mut by_uuid: HashMap<String, Vec<Candidate>> = HashMap::new();
        for list in key_lists(&uuids) {
            let (sql, param) = select_keyed(
                conn.dialect(),
                (CANDIDATE_COLUMNS, "call_events", column, "text"),
                "",
                list,
            );
            for c in conn
                .prepare_cached(&sql)?
                .query_map(vec![param], candidate)?
            {
                let c = c?;
                if let Some(u) = &c.call_uuid {
                    by_uuid.entry(u.to_ascii_lowercase()).or_default().push(c);
                }
            }
        }
        for (s, st) in searches.iter().zip(states.iter_mut()) {
            let mut next = std::mem::take(&mut st.frontier);
            for u in &s.call_uuids {
                for c in by_uuid.get(&u.to_ascii_lowercase()).into_iter().flatten() {
                    take(st, c, &mut next);
                }
            }
            st.frontier = next;
        }
    }
    for _ in 0..MAX_HOPS {
        let active: Vec<usize> = (0..states.len())
            .filter(|&i| !states[i].frontier.is_empty() && states[i].out.len() < MAX_CANDIDATES)
            .collect();
        if active.is_empty() {
            break;
        }
        let keys: BTreeSet<&str> = active
            .iter()
            .flat_map(|&i| states[i].frontier.iter().map(String::as_str))
            .collect();
        let from = active.iter().map(|&i| searches[i].from.as_str()).min();
        let to = active.iter().map(|&i| searches[i].to.as_str()).max();
        // Rows by the key they were found by (conn_key, then prev_key).
        let mut by_key: HashMap<String, Vec<(String, Candidate)>> = HashMap::new();
        let mut by_prev: HashMap<String, Vec<(String, Candidate)>> = HashMap::new();
        let list: Vec<&str> = keys.iter().copied().collect();
        for list in key_lists(&list) {
            let (sql, param) = hop_sql(conn.dialect(), list);
            let values = vec![param, from.to_value(), to.to_value()];
            for row in conn
                .prepare_cached(&sql)?
                .query_map(values, candidate_row)?
            {
                let (at, c) = row?;
                for (k, map) in [
                    (&c.conn_id, &mut by_key),
                    (&c.previous_conn_id, &mut by_prev),
                ] {
                    if let Some(k) = k.as_ref().filter(|k| keys.contains(k.as_str())) {
                        map.entry(k.clone())
                            .or_default()
                            .push((at.clone(), c.clone()));
                    }
                }
            }
        }
        for i in active {
            let (s, st) = (&searches[i], &mut states[i]);
            let mut next = Vec::new();
            for k in std::mem::take(&mut st.frontier) {
                for map in [&by_key, &by_prev] {
                    for (at, c) in map.get(&k).into_iter().flatten() {
                        if *at >= s.from && *at <= s.to {
                            take(st, c, &mut next);
                        }
                    }
                }
            }
            st.frontier = next;
        }
    }
    Ok(states
        .into_iter()
        .map(|mut st| {
            st.out.truncate(MAX_CANDIDATES);
            st.out
        })
        .collect())
}

fn reach_of(keys: &RecordingKeys) -> Reach {
    let (from, to) = keys.window();
    Reach {
        call_uuids: keys.call_uuid.iter().cloned().collect(),
        seeds: keys.conn_id.iter().map(|c| conn_key(c)).collect(),
        from: from.map_or_else(|| "0".to_string(), utc_millis),
        to: to.map_or_else(|| "9".to_string(), utc_millis),
    }
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
    let found = reachable(
        conn,
        &[Reach {
            call_uuids: uuids.clone(),
            seeds: seeds.clone(),
            from,
            to,
        }],
    )?
    .remove(0);
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

/// Which events a recording takes now and which it was tied to
/// ([`plan_links`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinkPlan {
    /// The events it takes (ids, sorted).
    pub ids: Vec<i64>,
    /// The events it was tied to (ids, sorted).
    pub old: Vec<i64>,
}

impl LinkPlan {
    /// Its set of events changed.
    pub fn changed(&self) -> bool {
        self.ids != self.old
    }

    /// Events newly tied to it.
    pub fn added(&self) -> usize {
        self.ids
            .iter()
            .filter(|i| self.old.binary_search(i).is_err())
            .count()
    }

    /// Nothing of the recording follows from its events: they did not
    /// change, and either its JSON need not be rewritten (`rewrite` false)
    /// or it has none.
    pub fn nothing_to_write(&self, rewrite: bool) -> bool {
        !self.changed() && (!rewrite || self.ids.is_empty())
    }
}

/// For each recording of a batch, which events it takes
/// ([`super::associate`]) and which it was tied to: a few statements for
/// the whole batch (one for the CallUUIDs, one per ConnID hop, one for the
/// links), however many recordings it has.
pub fn plan_links(
    conn: &Db,
    metas: &[&RecordingMeta],
) -> crate::store::db::DbResult<Vec<LinkPlan>> {
    let mut plans = vec![LinkPlan::default(); metas.len()];
    if metas.is_empty() {
        return Ok(plans);
    }
    let keys: Vec<RecordingKeys> = metas.iter().map(|m| RecordingKeys::of(m)).collect();
    let searched: Vec<usize> = (0..keys.len())
        .filter(|&i| keys[i].call_uuid.is_some() || keys[i].conn_id.is_some())
        .collect();
    if !searched.is_empty() {
        let reaches: Vec<Reach> = searched.iter().map(|&i| reach_of(&keys[i])).collect();
        for (&i, found) in searched.iter().zip(reachable(conn, &reaches)?) {
            let mut ids = associate(&keys[i], &found);
            ids.sort_unstable();
            plans[i].ids = ids;
        }
    }
    let at: HashMap<&str, usize> = metas
        .iter()
        .enumerate()
        .map(|(i, m)| (m.recording_id.as_str(), i))
        .collect();
    let ids: Vec<&str> = metas.iter().map(|m| m.recording_id.as_str()).collect();
    for list in key_lists(&ids) {
        let (sql, param) = select_keyed(
            conn.dialect(),
            (
                "recording_id, event_id",
                "call_event_links",
                "recording_id",
                "text",
            ),
            "",
            list,
        );
        for row in conn
            .prepare_cached(&sql)?
            .query_map(vec![param], |r| Ok((r.get::<String>(0)?, r.get::<i64>(1)?)))?
        {
            let (id, event) = row?;
            if let Some(&i) = at.get(id.as_str()) {
                plans[i].old.push(event);
            }
        }
    }
    for p in &mut plans {
        p.old.sort_unstable();
    }
    Ok(plans)
}

/// Stored events by id (with their `at` as stored, for ordering), in one
/// statement.
pub fn events_by_id(
    conn: &Db,
    ids: &BTreeSet<i64>,
) -> crate::store::db::DbResult<HashMap<i64, (String, StoredEvent)>> {
    let mut out = HashMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let ids: Vec<i64> = ids.iter().copied().collect();
    for list in key_lists(&ids) {
        let (sql, param) = select_keyed(
            conn.dialect(),
            ("id, received_at, json, at", "call_events", "id", "bigint"),
            "",
            list,
        );
        for row in conn.prepare_cached(&sql)?.query_map(vec![param], |r| {
            Ok((
                r.get::<i64>(0)?,
                r.get::<String>(1)?,
                r.get::<String>(2)?,
                r.get::<String>(3)?,
            ))
        })? {
            let (id, received_at, json, at) = row?;
            let event = serde_json::from_str(&json).unwrap_or_else(|_| CallEvent {
                event: "unreadable".into(),
                ..Default::default()
            });
            out.insert(
                id,
                (
                    at,
                    StoredEvent {
                        event_id: id,
                        received_at,
                        event,
                    },
                ),
            );
        }
    }
    Ok(out)
}

/// Ties `events` (those of `ids` found) to `meta` in time order, then
/// arrival order: `call_events`, `attached_data`. Returns the events' DNs
/// (searched by the `dn` filter).
pub fn attach(
    meta: &mut RecordingMeta,
    ids: &[i64],
    events: &HashMap<i64, (String, StoredEvent)>,
) -> BTreeSet<String> {
    let mut mine: Vec<&(String, StoredEvent)> = ids.iter().filter_map(|i| events.get(i)).collect();
    mine.sort_by(|a, b| (&a.0, a.1.event_id).cmp(&(&b.0, b.1.event_id)));
    let mine: Vec<StoredEvent> = mine.into_iter().map(|(_, e)| e.clone()).collect();
    let dns = mine
        .iter()
        .flat_map(|e| e.event.dns())
        .map(str::to_string)
        .collect();
    meta.attached_data = merge_attached(&mine);
    meta.call_events = mine;
    dns
}

/// Writes what follows from each recording's [`LinkPlan`] (its events
/// attached by [`attach`]): the links (when they changed), the searched
/// attached data, and the `call-events.json` to-do of a published
/// recording whose events changed. A statement per table for the whole
/// batch. The events' DNs go with the recording's own
/// ([`crate::store::index::write_dns`]).
pub fn write_links(
    conn: &Db,
    recs: &[(&RecordingMeta, &LinkPlan)],
) -> Result<(), crate::store::IndexError> {
    use crate::store::index::{insert_rows, replace_rows};
    if recs.is_empty() {
        return Ok(());
    }
    let arg = |v: &dyn ToArg| v.to_value();
    let changed: Vec<&(&RecordingMeta, &LinkPlan)> =
        recs.iter().filter(|r| r.1.changed()).collect();
    let rows: Vec<Value> = changed
        .iter()
        .flat_map(|(m, p)| p.ids.iter().flat_map(|e| [arg(&m.recording_id), arg(e)]))
        .collect();
    replace_rows(
        conn,
        ("call_event_links", "recording_id, event_id", ""),
        &["text", "bigint"],
        changed.iter().map(|r| r.0.recording_id.as_str()),
        &rows,
    )?;
    let rows: Vec<Value> = recs
        .iter()
        .flat_map(|(m, _)| {
            m.attached_data
                .iter()
                .flat_map(|(k, v)| [arg(&m.recording_id), arg(k), arg(v)])
        })
        .collect();
    replace_rows(
        conn,
        ("recording_attached", "recording_id, key, value", ""),
        &["text"; 3],
        recs.iter().map(|r| r.0.recording_id.as_str()),
        &rows,
    )?;
    let rows: Vec<Value> = changed
        .iter()
        .filter(|r| !r.0.path.is_empty())
        .map(|r| arg(&r.0.recording_id))
        .collect();
    insert_rows(
        conn,
        "INSERT INTO call_events_sync (recording_id)",
        "ON CONFLICT DO NOTHING",
        &["text"],
        &rows,
    )?;
    Ok(())
}

/// Recomputes which events belong to the recording `recording_id` and
/// writes what follows from it: the links, the searched attached data and
/// DNs, the recording's JSON (`call_events`, `attached_data`) and, when the
/// set changed for a published recording, a `call_events_sync` to-do.
/// `meta`: the recording as indexed, else read from the index (publication
/// and reindex go through [`crate::store::index`]'s batch path, which
/// does the same for many recordings at once). `rewrite`: the JSON must
/// be written even if the links did not change. The caller holds the
/// transaction.
pub fn relink(
    conn: &Db,
    recording_id: &str,
    meta: Option<&RecordingMeta>,
    rewrite: bool,
) -> Result<Relinked, crate::store::IndexError> {
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
    recording_id.clone_into(&mut meta.recording_id);
    let plan = plan_links(conn, &[&meta])?.remove(0);
    let mut out = Relinked {
        indexed: true,
        changed: plan.changed(),
        added: plan.added(),
        meta: None,
    };
    if plan.nothing_to_write(rewrite) {
        return Ok(out);
    }
    let events = events_by_id(conn, &plan.ids.iter().copied().collect())?;
    let dns = attach(&mut meta, &plan.ids, &events);
    write_links(conn, &[(&meta, &plan)])?;
    crate::store::index::write_dns(conn, &[(&meta, Some(&dns))])?;
    let json = serde_json::to_string(&meta).unwrap_or_default();
    conn.prepare_cached("UPDATE recordings SET meta_json = ?2 WHERE recording_id = ?1")?
        .execute(params![recording_id, json])?;
    out.meta = Some(meta);
    Ok(out)
}

/// Removes what ties a recording to its events (its row is being removed
/// from the index: reindex of a recording gone from the drop, deletion).
/// The events stay: another recording of the call may take them.
pub fn forget(conn: &Db, recording_id: &str) -> crate::store::db::DbResult<()> {
    for table in ["call_event_links", "recording_attached", "call_events_sync"] {
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

    fn meta_at(id: &str, conn: &str, started_at: &str) -> RecordingMeta {
        let mut m = meta(id, None, Some(conn));
        m.started_at = started_at.into();
        m.ended_at = started_at.into();
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
                // Removing the recording from the index unties its events
                // (its DNs from them go with it) and leaves them for another.
                crate::store::index::delete_in(ix.conn(), "r1").unwrap();
                assert!(q(&|q| q.dn = Some("7002".into())).is_empty());
                let left: i64 = ix
                    .conn()
                    .query_row("SELECT COUNT(*) FROM call_events", [], |r| r.get(0))
                    .unwrap();
                assert_eq!(left, 4);
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
                // The DN drives: its entries newest first, from the index.
                "INDEX recording_dns_dn_started (dn=?)",
                // ... and each recording is then found by its key, never scanned.
                "USING INDEX sqlite_autoindex_recordings_1 (recording_id=?)",
            ] {
                assert!(plan.contains(want), "{want} not in the plan:\n{plan}");
            }
            assert!(!plan.contains("SCAN"), "{plan}");
            // Association's lookups too (a hop of a whole batch).
            let plan: Vec<String> = {
                let mut stmt = ix
                    .conn()
                    .prepare(&format!(
                        "EXPLAIN QUERY PLAN {}",
                        hop_sql(Dialect::Sqlite, &["a", "b", "c", "d"]).0
                    ))
                    .unwrap();
                stmt.query_map(params![r#"["a","b","c","d"]"#, "0", "9"], |r| {
                    r.get::<String>(3)
                })
                .unwrap()
                .map(Result::unwrap)
                .collect()
            };
            let plan = plan.join("\n");
            assert!(plan.contains("INDEX call_events_conn_key"), "{plan}");
            assert!(plan.contains("INDEX call_events_prev_key"), "{plan}");
        });
    }

    #[test]
    fn a_batch_ties_each_recording_to_its_own_events_as_one_at_a_time_does() {
        crate::testkit::pg::each_backend(
            "a_batch_ties_each_recording_to_its_own_events_as_one_at_a_time_does",
            |at| {
                let ix = Index::open_at(at).unwrap();
                post(
                    &ix,
                    r#"[{"event":"EventEstablished","time":"2026-11-23T10:00:01Z","call_uuid":"U-A","conn_id":"00a1","this_dn":"7001","user_data":{"case":"A"}},
                {"event":"EventPartyChanged","time":"2026-11-23T10:02:00Z","conn_id":"00a2","previous_conn_id":"00A1","this_dn":"7002"},
                {"event":"EventEstablished","time":"2026-11-23T10:00:02Z","call_uuid":"u-b","conn_id":"00b1","user_data":{"case":"B"}},
                {"event":"EventReleased","time":"2026-11-23T10:04:00Z","conn_id":"00C1","user_data":{"case":"C"}},
                {"event":"EventReleased","time":"2026-11-25T10:00:00Z","conn_id":"00c1","user_data":{"case":"late"}}]"#,
                );
                let mut first_a = meta("a", Some("U-A"), Some("00a1"));
                first_a.status = "partial".into();
                let batch = vec![
                    first_a,
                    meta("b", Some("U-B"), None),
                    meta("c", None, Some("00c1")),
                    meta("d", Some("U-D"), Some("00d1")),
                    meta("e", Some("u-a"), None),
                    meta("a", Some("U-A"), Some("00a1")),
                    // Two days later: the batch's window reaches c's late
                    // event, c's own window does not.
                    meta_at("f", "00f1", "2026-11-25T09:59:00.000Z"),
                ];
                ix.upsert_batch(&batch).unwrap();
                let cases = |id: &str| {
                    let m = ix.get(id).unwrap().unwrap();
                    let events: Vec<String> = m
                        .call_events
                        .iter()
                        .map(|e| e.event.event.clone())
                        .collect();
                    (m.status, events, m.attached_data.get("case").cloned())
                };
                let est = || "EventEstablished".to_string();
                let a = (
                    "complete".to_string(),
                    vec![est(), "EventPartyChanged".into()],
                    Some("A".to_string()),
                );
                assert_eq!(cases("a"), a, "the last of a twice-named recording");
                assert_eq!(cases("e"), a, "another recording of the same call");
                assert_eq!(
                    cases("b"),
                    ("complete".into(), vec![est()], Some("B".into()))
                );
                assert_eq!(
                    cases("c"),
                    (
                        "complete".into(),
                        vec!["EventReleased".into()],
                        Some("C".into())
                    ),
                    "by ConnID inside the window only"
                );
                assert_eq!(cases("d"), ("complete".into(), vec![], None));
                assert_eq!(cases("f"), ("complete".into(), vec![], None));
                let q = Query {
                    dn: Some("7002".into()),
                    ..Default::default()
                };
                assert_eq!(ids(&ix, q), ["e", "a"]);
                let pending: BTreeSet<String> = pending_sync(ix.conn(), 10)
                    .unwrap()
                    .into_iter()
                    .map(|p| p.0)
                    .collect();
                assert_eq!(pending, ["a", "b", "c", "e"].map(String::from).into());
                // One at a time finds the same for each, to the byte.
                let json = |id: &str| serde_json::to_string(&ix.get(id).unwrap().unwrap()).unwrap();
                for m in &batch[1..] {
                    let before = json(&m.recording_id);
                    ix.upsert(m).unwrap();
                    assert_eq!(json(&m.recording_id), before, "{}", m.recording_id);
                }
            },
        );
    }
}
