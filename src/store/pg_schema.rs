//! The index schema in PostgreSQL's dialect: the steps of
//! [`super::index::MIGRATIONS`] one for one (same tables, columns, keys and
//! indexes), and how they are applied.
//!
//! Differences with the SQLite schema, and why:
//! - every text column is in the "C" collation: compared and sorted
//!   byte-wise, as SQLite does (times are RFC 3339 text; a linguistic
//!   collation would order them differently and could not use the
//!   indexes for ranges);
//! - the columns SQLite compares with `NOCASE` (`call_uuid`,
//!   `geo_location`) are indexed on `lower(column)`, and the queries
//!   compare `lower()`s on PostgreSQL ([`crate::store::query`]);
//! - integers are `BIGINT`; `INTEGER PRIMARY KEY` is an identity column;
//! - the append-only triggers of the audit trail raise an exception from a
//!   PL/pgSQL function (also on `TRUNCATE`);
//! - three SQL functions SQLite gets from Rust are defined in SQL: `instr`
//!   (substring search), `srs_glob` and `srs_iglob` (the scopes' globs,
//!   `*` and `?`, as `LIKE` patterns). `srs_site` depends on the DN
//!   directory of the running recorder, so each connection defines it for
//!   itself ([`crate::auth::scope::register_sql_functions`]).
//!
//! The version is the one row of `srs_schema`. Each step runs in its own
//! transaction (PostgreSQL's DDL is transactional) under an advisory lock,
//! and re-reads the version inside it: recorders starting at once against
//! a new database never run a step twice.

use super::db::{Db, DbError, OptionalExt};
use super::index::{IndexError, MIGRATIONS};

/// The advisory lock key of migrations ("srs-mig").
const MIGRATE_LOCK: i64 = 0x0073_7273_2d6d_6967;

/// Schema steps, in order: step `i` is [`MIGRATIONS`]`[i]` in PostgreSQL's
/// dialect.
pub const PG_MIGRATIONS: &[&str] = &[
    // 1: recordings and their participants.
    r#"CREATE TABLE recordings (
        recording_id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
        call_id      TEXT COLLATE "C" NOT NULL,
        status       TEXT COLLATE "C",
        started_at   TEXT COLLATE "C",
        ended_at     TEXT COLLATE "C",
        duration_ms  BIGINT,
        source       TEXT COLLATE "C",
        path         TEXT COLLATE "C",
        meta_json    TEXT NOT NULL
    );
    CREATE INDEX recordings_call_id ON recordings(call_id);
    CREATE INDEX recordings_started_at ON recordings(started_at);
    CREATE TABLE participants (
        recording_id   TEXT COLLATE "C" NOT NULL REFERENCES recordings(recording_id) ON DELETE CASCADE,
        participant_id TEXT COLLATE "C" NOT NULL,
        aor            TEXT COLLATE "C",
        name           TEXT COLLATE "C",
        labels         TEXT NOT NULL
    );
    CREATE INDEX participants_recording_id ON participants(recording_id);
    CREATE INDEX participants_aor ON participants(aor);
    CREATE OR REPLACE FUNCTION instr(haystack TEXT, needle TEXT) RETURNS BIGINT
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS 'SELECT strpos(haystack, needle)::BIGINT';"#,
    // 2: searched columns, every DN of a recording, correlation ids,
    // events and DTMF.
    r#"ALTER TABLE recordings ADD COLUMN record_dn TEXT COLLATE "C";
    ALTER TABLE recordings ADD COLUMN record_dn_kind TEXT COLLATE "C";
    ALTER TABLE recordings ADD COLUMN geo_location TEXT COLLATE "C";
    ALTER TABLE recordings ADD COLUMN direction TEXT COLLATE "C";
    ALTER TABLE recordings ADD COLUMN call_uuid TEXT COLLATE "C";
    ALTER TABLE recordings ADD COLUMN ani TEXT COLLATE "C";
    ALTER TABLE recordings ADD COLUMN dnis TEXT COLLATE "C";
    CREATE INDEX recordings_record_dn ON recordings(record_dn);
    CREATE INDEX recordings_call_uuid ON recordings(lower(call_uuid));
    CREATE INDEX recordings_ani ON recordings(ani);
    CREATE INDEX recordings_dnis ON recordings(dnis);
    CREATE INDEX recordings_geo_location ON recordings(lower(geo_location));
    CREATE INDEX recordings_status ON recordings(status);
    CREATE TABLE recording_dns (
        recording_id TEXT COLLATE "C" NOT NULL REFERENCES recordings(recording_id) ON DELETE CASCADE,
        dn           TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (recording_id, dn)
    );
    CREATE INDEX recording_dns_dn ON recording_dns(dn);
    CREATE TABLE correlation (
        recording_id TEXT COLLATE "C" NOT NULL REFERENCES recordings(recording_id) ON DELETE CASCADE,
        key          TEXT COLLATE "C" NOT NULL,
        value        TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (recording_id, key)
    );
    CREATE INDEX correlation_key_value ON correlation(key, value);
    CREATE TABLE events (
        recording_id   TEXT COLLATE "C" NOT NULL REFERENCES recordings(recording_id) ON DELETE CASCADE,
        seq            BIGINT NOT NULL,
        at             TEXT COLLATE "C",
        kind           TEXT COLLATE "C" NOT NULL,
        label          TEXT COLLATE "C",
        participant_id TEXT COLLATE "C",
        aor            TEXT COLLATE "C",
        detail         TEXT COLLATE "C",
        PRIMARY KEY (recording_id, seq)
    );
    CREATE INDEX events_recording_id ON events(recording_id);
    CREATE INDEX events_kind ON events(kind);"#,
    // 3: API tokens and the audit trail (append-only, hash-chained).
    r#"CREATE TABLE tokens (
        id         BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        name       TEXT COLLATE "C" NOT NULL,
        hash       TEXT COLLATE "C" NOT NULL UNIQUE,
        role       TEXT COLLATE "C" NOT NULL,
        scopes     TEXT NOT NULL,
        created_at TEXT COLLATE "C" NOT NULL,
        created_by TEXT COLLATE "C" NOT NULL,
        revoked_at TEXT COLLATE "C"
    );
    CREATE UNIQUE INDEX tokens_active_name ON tokens(name) WHERE revoked_at IS NULL;
    CREATE TABLE audit (
        seq             BIGINT PRIMARY KEY,
        at              TEXT COLLATE "C" NOT NULL,
        actor           TEXT COLLATE "C" NOT NULL,
        role            TEXT COLLATE "C" NOT NULL,
        client          TEXT COLLATE "C" NOT NULL,
        action          TEXT COLLATE "C" NOT NULL,
        recording_ids   TEXT NOT NULL,
        recording_count BIGINT NOT NULL,
        filters         TEXT NOT NULL,
        outcome         TEXT COLLATE "C" NOT NULL,
        prev_hash       TEXT COLLATE "C" NOT NULL,
        hash            TEXT COLLATE "C" NOT NULL
    );
    CREATE INDEX audit_at ON audit(at);
    CREATE TABLE audit_recordings (
        recording_id TEXT COLLATE "C" NOT NULL,
        seq          BIGINT NOT NULL,
        PRIMARY KEY (recording_id, seq)
    );
    CREATE INDEX audit_recordings_seq ON audit_recordings(seq);
    CREATE FUNCTION srs_append_only() RETURNS trigger LANGUAGE plpgsql AS
        $f$ BEGIN RAISE EXCEPTION 'the audit trail is append-only'; END $f$;
    CREATE TRIGGER audit_no_update BEFORE UPDATE OR DELETE ON audit
        FOR EACH ROW EXECUTE FUNCTION srs_append_only();
    CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
        FOR EACH STATEMENT EXECUTE FUNCTION srs_append_only();
    CREATE TRIGGER audit_recordings_no_update BEFORE UPDATE OR DELETE ON audit_recordings
        FOR EACH ROW EXECUTE FUNCTION srs_append_only();
    CREATE TRIGGER audit_recordings_no_truncate BEFORE TRUNCATE ON audit_recordings
        FOR EACH STATEMENT EXECUTE FUNCTION srs_append_only();
    CREATE OR REPLACE FUNCTION srs_glob(pattern TEXT, t TEXT) RETURNS BOOLEAN
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
        $f$ SELECT coalesce(t LIKE replace(replace(replace(replace(replace(pattern,
            '\', '\\'), '%', '\%'), '_', '\_'), '*', '%'), '?', '_'), false) $f$;
    CREATE OR REPLACE FUNCTION srs_iglob(pattern TEXT, t TEXT) RETURNS BOOLEAN
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
        $f$ SELECT srs_glob(lower(pattern), lower(t)) $f$;"#,
    // 4 (issue 15): legal holds.
    r#"CREATE TABLE holds (
        recording_id TEXT COLLATE "C" PRIMARY KEY NOT NULL REFERENCES recordings(recording_id) ON DELETE CASCADE,
        reason       TEXT,
        at           TEXT COLLATE "C" NOT NULL,
        by           TEXT COLLATE "C" NOT NULL
    );"#,
    // 5 (issue 14): call events, their links, attached data, event DNs,
    // the call-events.json to-do and the webhook outbox.
    r#"CREATE TABLE call_events (
        id          BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        received_at TEXT COLLATE "C" NOT NULL,
        at          TEXT COLLATE "C" NOT NULL,
        event       TEXT COLLATE "C" NOT NULL,
        call_uuid   TEXT COLLATE "C",
        conn_key    TEXT COLLATE "C",
        prev_key    TEXT COLLATE "C",
        digest      TEXT COLLATE "C" NOT NULL UNIQUE,
        json        TEXT NOT NULL
    );
    CREATE INDEX call_events_call_uuid ON call_events(lower(call_uuid));
    CREATE INDEX call_events_conn_key ON call_events(conn_key, at);
    CREATE INDEX call_events_prev_key ON call_events(prev_key, at);
    CREATE TABLE call_event_links (
        recording_id TEXT COLLATE "C" NOT NULL,
        event_id     BIGINT NOT NULL,
        PRIMARY KEY (recording_id, event_id)
    );
    CREATE INDEX call_event_links_event ON call_event_links(event_id);
    CREATE TABLE recording_attached (
        recording_id TEXT COLLATE "C" NOT NULL,
        key          TEXT COLLATE "C" NOT NULL,
        value        TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (recording_id, key)
    );
    CREATE INDEX recording_attached_key_value ON recording_attached(key, value);
    CREATE TABLE recording_event_dns (
        recording_id TEXT COLLATE "C" NOT NULL,
        dn           TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (recording_id, dn)
    );
    CREATE INDEX recording_event_dns_dn ON recording_event_dns(dn);
    CREATE TABLE call_events_sync (
        recording_id TEXT COLLATE "C" PRIMARY KEY NOT NULL
    );
    CREATE TABLE webhook_deliveries (
        id           TEXT COLLATE "C" PRIMARY KEY NOT NULL,
        url          TEXT COLLATE "C" NOT NULL,
        event        TEXT COLLATE "C" NOT NULL,
        recording_id TEXT COLLATE "C",
        body         TEXT NOT NULL,
        created_at   TEXT COLLATE "C" NOT NULL,
        created_ms   BIGINT NOT NULL,
        status       TEXT COLLATE "C" NOT NULL,
        attempts     BIGINT NOT NULL DEFAULT 0,
        next_ms      BIGINT NOT NULL,
        last_at      TEXT COLLATE "C",
        last_error   TEXT,
        done_at      TEXT COLLATE "C"
    );
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries(status, next_ms);
    CREATE INDEX webhook_deliveries_created ON webhook_deliveries(created_ms);"#,
    // 6 (issue 16): the recorder of each recording, and where each file of
    // a recording is in the object store.
    r#"ALTER TABLE recordings ADD COLUMN node TEXT COLLATE "C";
    CREATE INDEX recordings_node ON recordings(node);
    CREATE INDEX recordings_id_started ON recordings(recording_id, started_at);
    CREATE TABLE recording_objects (
        recording_id TEXT COLLATE "C" NOT NULL,
        name         TEXT COLLATE "C" NOT NULL,
        key          TEXT COLLATE "C" NOT NULL,
        size         BIGINT NOT NULL,
        sha256       TEXT COLLATE "C",
        uploaded_at  TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (recording_id, name)
    );"#,
    // 7 (issue 16): every DN of a recording in one table with its start
    // time, for searches by DN in index order.
    r#"ALTER TABLE recording_dns ADD COLUMN started_at TEXT COLLATE "C";
    UPDATE recording_dns d SET started_at = r.started_at
        FROM recordings r WHERE r.recording_id = d.recording_id;
    INSERT INTO recording_dns (recording_id, dn, started_at)
        SELECT x.recording_id, x.dn, r.started_at
        FROM recording_event_dns x JOIN recordings r ON r.recording_id = x.recording_id
        ON CONFLICT DO NOTHING;
    DROP INDEX recording_dns_dn;
    CREATE INDEX recording_dns_dn_started ON recording_dns(dn, started_at, recording_id);
    DROP TABLE recording_event_dns;"#,
];

fn known() -> u32 {
    u32::try_from(PG_MIGRATIONS.len()).unwrap_or(u32::MAX)
}

/// The schema version, `None` when the database has no srs schema.
pub fn version(db: &Db) -> Result<Option<u32>, IndexError> {
    let exists: Option<String> = db
        .query_row("SELECT CAST(to_regclass('srs_schema') AS TEXT)", [], |r| {
            r.get(0)
        })
        .optional()?
        .flatten();
    if exists.is_none() {
        return Ok(None);
    }
    let v: Option<i64> = db
        .query_row("SELECT version FROM srs_schema", [], |r| r.get(0))
        .optional()?;
    Ok(v.map(|v| u32::try_from(v).unwrap_or(0)).filter(|v| *v > 0))
}

/// Applies the missing steps (module doc). Returns how many ran.
pub fn migrate(db: &Db) -> Result<usize, IndexError> {
    debug_assert_eq!(PG_MIGRATIONS.len(), MIGRATIONS.len());
    let known = known();
    if version(db)? == Some(known) {
        return Ok(0);
    }
    let mut ran = 0;
    loop {
        let tx = db.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock(?1)", [MIGRATE_LOCK])?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS srs_schema (version BIGINT NOT NULL);
             INSERT INTO srs_schema (version) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM srs_schema);",
        )?;
        let found: i64 = tx.query_row("SELECT version FROM srs_schema", [], |r| r.get(0))?;
        let found = u32::try_from(found).unwrap_or(0);
        if found > known {
            return Err(IndexError::SchemaTooNew { found, known });
        }
        let Some(step) = PG_MIGRATIONS.get(found as usize) else {
            tx.commit()?;
            return Ok(ran);
        };
        tx.execute_batch(step)?;
        tx.execute("UPDATE srs_schema SET version = ?1", [i64::from(found) + 1])?;
        tx.commit()?;
        tracing::info!(version = found + 1, "index schema migrated (PostgreSQL)");
        ran += 1;
    }
}

/// Drops every table of the schema (tests and the bench tool start from
/// an empty database).
pub fn drop_all(db: &Db) -> Result<(), DbError> {
    db.execute_batch(
        "DROP TABLE IF EXISTS recording_objects, webhook_deliveries, call_events_sync, recording_event_dns,
             recording_attached, call_event_links, call_events, holds, audit_recordings, audit,
             tokens, events, correlation, recording_dns, participants, recordings, srs_schema CASCADE;
         DROP FUNCTION IF EXISTS srs_append_only, srs_glob, srs_iglob, instr CASCADE;",
    )
}
