//! The SQLite index of published recordings.
//!
//! The index is a cache of the `metadata.json` files of the drop: each row
//! keeps the full object in `meta_json`, plus a few columns to search and
//! sort on. It can always be rebuilt from [`super::FileDrop::scan`].
//!
//! The schema is versioned by `PRAGMA user_version`: [`MIGRATIONS`] is an
//! ordered list of SQL steps, step `i` bringing the schema from version `i`
//! to `i + 1`. Append steps; never edit a released one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

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
];

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

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
}

/// A connection to the index.
#[derive(Debug)]
pub struct Index {
    conn: Connection,
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
    let found = user_version(conn)?;
    let known = known_version();
    if found > known {
        return Err(IndexError::SchemaTooNew { found, known });
    }
    let mut ran = 0;
    for (i, step) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(step)?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "index schema migrated");
        ran += 1;
    }
    Ok(ran)
}

/// `started_at` as stored for sorting: RFC 3339 UTC with milliseconds, so
/// that text order is time order whatever the offset or precision in the
/// metadata. Unparsable values are kept as they are.
fn sort_key(t: &str) -> String {
    match DateTime::parse_from_rfc3339(t) {
        Ok(t) => t
            .with_timezone(&Utc)
            .to_rfc3339_opts(SecondsFormat::Millis, true),
        Err(_) => t.to_string(),
    }
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
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %path.display(), mode, "index could not switch to WAL mode");
        }
        conn.pragma_update(None, "foreign_keys", true)?;
        migrate(&mut conn)?;
        Ok(Self { conn })
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
        conn.busy_timeout(BUSY_TIMEOUT)?;
        if user_version(&conn)? == 0 {
            return Err(IndexError::NotInitialised(path.to_path_buf()));
        }
        Ok(Some(Self { conn }))
    }

    /// Inserts or replaces one recording and its participants, in one transaction.
    pub fn upsert(&self, meta: &RecordingMeta) -> Result<(), IndexError> {
        let json = serde_json::to_string(meta)?;
        let duration = i64::try_from(meta.duration_ms).unwrap_or(i64::MAX);
        let tx = self.conn.unchecked_transaction()?;
        tx.execute(
            "INSERT INTO recordings
                 (recording_id, call_id, status, started_at, ended_at, duration_ms, source, path, meta_json)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT(recording_id) DO UPDATE SET
                 call_id = excluded.call_id, status = excluded.status,
                 started_at = excluded.started_at, ended_at = excluded.ended_at,
                 duration_ms = excluded.duration_ms, source = excluded.source,
                 path = excluded.path, meta_json = excluded.meta_json",
            params![
                meta.recording_id,
                meta.call_id,
                meta.status,
                sort_key(&meta.started_at),
                sort_key(&meta.ended_at),
                duration,
                meta.source,
                meta.path,
                json,
            ],
        )?;
        tx.execute(
            "DELETE FROM participants WHERE recording_id = ?1",
            params![meta.recording_id],
        )?;
        {
            let mut ins = tx.prepare(
                "INSERT INTO participants (recording_id, participant_id, aor, name, labels)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for p in &meta.participants {
                ins.execute(params![
                    meta.recording_id,
                    p.id,
                    p.aor,
                    p.name,
                    serde_json::to_string(&p.labels)?,
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Recordings, newest first (`started_at` then `recording_id`, descending),
    /// at most `limit` of them if given.
    pub fn list(&self, limit: Option<usize>) -> Result<Vec<RecordingMeta>, IndexError> {
        let limit = limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
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
        let row: Option<(String, String)> = self
            .conn
            .query_row(
                "SELECT recording_id, meta_json FROM recordings WHERE recording_id = ?1",
                params![id_or_call_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let row = match row {
            Some(row) => Some(row),
            None => self
                .conn
                .query_row(
                    "SELECT recording_id, meta_json FROM recordings WHERE call_id = ?1
                     ORDER BY started_at DESC, recording_id DESC LIMIT 1",
                    params![id_or_call_id],
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::ParticipantMeta;

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
        assert_eq!(user_version(&ix.conn).unwrap(), known_version());
        assert!(known_version() >= 1);
        let mode: String = ix
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        assert_eq!(ix.count().unwrap(), 0);
        assert!(ix.list(None).unwrap().is_empty());
        assert!(ix.get("x").unwrap().is_none());
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
        assert_eq!(user_version(&ix.conn).unwrap(), known_version());
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
        let tmp = tempfile::tempdir().unwrap();
        let ix = Index::open(&tmp.path().join("index.sqlite")).unwrap();
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
    }

    #[test]
    fn upsert_twice_replaces() {
        let tmp = tempfile::tempdir().unwrap();
        let ix = Index::open(&tmp.path().join("index.sqlite")).unwrap();
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
        let tmp = tempfile::tempdir().unwrap();
        let ix = Index::open(&tmp.path().join("index.sqlite")).unwrap();
        ix.conn
            .execute(
                "INSERT INTO recordings (recording_id, call_id, meta_json) VALUES ('x', 'c', '{')",
                [],
            )
            .unwrap();
        assert!(matches!(ix.list(None), Err(IndexError::BadRow { .. })));
        assert!(matches!(ix.get("x"), Err(IndexError::BadRow { .. })));
    }
}
