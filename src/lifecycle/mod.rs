//! The life of a published recording (docs/operations.md, Retention,
//! legal hold and erasure): legal holds, deletion by hand and by data
//! subject, the retention rules, and keeping the index in step with the
//! drop.
//!
//! Every change here is made by one [`Lifecycle`] under an exclusive lock
//! of the drop (`flock(2)` on `<drop>/.lifecycle.lock`), so that `srs
//! serve` (its API and its retention thread) and the command-line tools,
//! other processes, never race: a hold cannot slip between the check and
//! the deletion.
//!
//! A deletion, for each recording ([`Lifecycle::delete`]):
//! 1. refused if the recording is held (in the index, or by `hold.json` in
//!    the drop);
//! 2. its directory is renamed into `<drop>/.trash/<id>` (one atomic
//!    rename: consumers of the dated tree no longer see it);
//! 3. HOOK(issue 16): its object-storage copies are deleted ([`Replicas`]);
//! 4. its index rows are deleted and its audit entry appended in one
//!    transaction;
//! 5. the directory is removed from `.trash`.
//!
//! A failure at 3 or 4 renames the directory back: nothing is deleted
//! unaudited. A crash between 2 and 5 is settled by the next operation
//! ([`Lifecycle::settle_trash`]): a directory whose index row is gone was
//! deleted (removed), one whose row is still there was not (put back).
//!
//! A hold is written to the drop first (`hold.json` beside
//! `metadata.json`, so `srs reindex` keeps it), then to the index with its
//! audit entry; a release the other way round. A crash between the two
//! leaves the recording held, never the reverse.

pub mod retention;
pub mod schedule;

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::params;
use crate::store::db::OptionalExt;

use crate::auth::Scope;
use crate::filing::DnEntry;
use crate::recording::{Hold, RecordingMeta};
use crate::store::audit::{self, AuditError, Entry};
use crate::store::{FileDrop, Index, IndexError};
pub use retention::{Attached, NoAttached, RetentionRule};

/// The hold of a recording, in its directory.
pub const HOLD_FILE: &str = "hold.json";
/// Where deleted directories wait for their index rows to go.
pub const TRASH_DIR: &str = ".trash";
/// The lock file of lifecycle changes, in the drop root.
pub const LOCK_FILE: &str = ".lifecycle.lock";

/// Recordings deleted per transaction.
const BATCH: usize = 500;

/// Errors of lifecycle changes.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("no such recording {0:?}")]
    NotFound(String),
    #[error("recording {id} is under legal hold ({}): release it first", describe(.hold))]
    Held { id: String, hold: Hold },
    #[error("no index at {0}: nothing to change")]
    NoIndex(String),
    #[error("the recording's directory {0} is missing from the drop")]
    Missing(String),
    #[error("{0}")]
    Index(#[from] IndexError),
    #[error("{0}")]
    Audit(#[from] AuditError),
    #[error("index: {0}")]
    Db(#[from] crate::store::db::DbError),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("object storage: {0}")]
    Replicas(String),
}

/// A hold in words: `since <at> by <by>, reason: <reason>`.
pub fn describe(h: &Hold) -> String {
    let mut s = format!("held since {} by {}", h.at, h.by);
    if let Some(r) = &h.reason {
        s.push_str(&format!(", reason: {r}"));
    }
    s
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> LifecycleError {
    let path = path.to_path_buf();
    move |source| LifecycleError::Io { op, path, source }
}

/// Who makes a change, as the audit trail names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Who {
    pub actor: String,
    pub role: String,
    pub client: String,
}

impl Who {
    /// The command line: `cli:<user>`, role `cli`, from `local`.
    pub fn cli() -> Who {
        Who {
            actor: crate::auth::cli_actor(),
            role: "cli".into(),
            client: "local".into(),
        }
    }

    /// The retention rules themselves (actor `retention`, role `system`).
    pub fn retention() -> Who {
        Who {
            actor: "retention".into(),
            role: "system".into(),
            client: "local".into(),
        }
    }

    pub fn entry(
        &self,
        action: &str,
        recording_ids: Vec<String>,
        filters: serde_json::Value,
        outcome: &str,
    ) -> Entry {
        Entry {
            actor: self.actor.clone(),
            role: self.role.clone(),
            client: self.client.clone(),
            action: action.into(),
            recording_ids,
            filters,
            outcome: outcome.into(),
        }
    }
}

/// HOOK(issue 16): the object-storage copies of recordings, deleted with
/// them (step 3 of a deletion: a failure keeps the recording whole).
pub trait Replicas: Send + Sync {
    fn delete(&self, meta: &RecordingMeta) -> Result<(), String>;
}

/// One recording deleted (or, in a dry run, that would be).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Deleted {
    pub recording_id: String,
    pub path: String,
    pub started_at: String,
    /// The retention rule that deleted it, if it was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}

/// A recording kept because it is held.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Kept {
    pub recording_id: String,
    pub hold: Hold,
}

/// What a deletion or a retention run did (or would do: `dry_run`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    pub dry_run: bool,
    pub deleted: Vec<Deleted>,
    /// Due or asked for, but held: kept.
    pub held: Vec<Kept>,
    /// Asked for but not found (or out of the caller's scope).
    pub not_found: Vec<String>,
    /// Index rows whose recording was no longer in the drop: removed
    /// from the index and audited as `found-missing`.
    pub found_missing: Vec<String>,
}

/// The exclusive lock of lifecycle changes, held while it lives.
struct Locked {
    _file: Option<std::fs::File>,
}

/// Lifecycle changes on one drop and its index.
#[derive(Clone)]
pub struct Lifecycle {
    drop: FileDrop,
    index_path: crate::store::IndexAt,
    /// For scopes with `site` (the SQL functions of `auth::scope`).
    directory: Arc<[DnEntry]>,
    replicas: Option<Arc<dyn Replicas>>,
    /// Webhook receivers told of each deletion (`recording.deleted`): their
    /// deliveries are queued in the index's outbox in the deletion's own
    /// transaction, and sent by the server's webhooks thread.
    webhooks: Arc<[crate::webhooks::WebhookConfig]>,
    /// This recorder (`with_node`).
    node: Option<String>,
}

impl std::fmt::Debug for Lifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lifecycle")
            .field("drop", &self.drop.root())
            .field("index", &self.index_path)
            .finish()
    }
}

impl Lifecycle {
    pub fn new(
        root: impl Into<PathBuf>,
        index_path: impl Into<crate::store::IndexAt>,
        directory: Arc<[DnEntry]>,
    ) -> Self {
        Lifecycle {
            drop: FileDrop::new(root),
            index_path: index_path.into(),
            directory,
            replicas: None,
            webhooks: Arc::from(Vec::new()),
            node: None,
        }
    }

    /// Issue 16: this recorder's id (`[node] id`). With several recorders
    /// sharing one index, the drop is kept in step only with the rows of
    /// this recorder (and rows of none): another's recordings are never
    /// in this drop.
    pub fn with_node(mut self, node: String) -> Self {
        self.node = Some(node);
        self
    }

    /// The webhook receivers told of deletions (`[[webhooks]]`).
    pub fn with_webhooks(mut self, hooks: &[crate::webhooks::WebhookConfig]) -> Self {
        self.webhooks = Arc::from(hooks.to_vec());
        self
    }

    /// HOOK(issue 16): the object storage whose copies go with a deletion.
    pub fn with_replicas(mut self, replicas: Arc<dyn Replicas>) -> Self {
        self.replicas = Some(replicas);
        self
    }

    /// The object store of `[storage.object]`, if any, as the replicas.
    pub fn with_objects(self, objects: Option<crate::store::objects::Objects>) -> Self {
        match objects {
            Some(o) => self.with_replicas(Arc::new(o)),
            None => self,
        }
    }

    pub fn root(&self) -> &Path {
        self.drop.root()
    }

    fn lock(&self) -> Result<Locked, LifecycleError> {
        // No drop here (the CLI on another host than the recorders, with a
        // shared index): no local files to keep consistent, no lock.
        if !self.root().is_dir() {
            return Ok(Locked { _file: None });
        }
        let path = self.root().join(LOCK_FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io("opening", &path))?;
        loop {
            // SAFETY: flock only reads the descriptor, which `file` keeps open.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(Locked { _file: Some(file) });
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(LifecycleError::Io {
                    op: "locking",
                    path,
                    source: e,
                });
            }
        }
    }

    /// The index, read-write, with the scope functions; settles the trash.
    fn begin(&self) -> Result<(Locked, Index), LifecycleError> {
        let lock = self.lock()?;
        let ix = Index::open_existing_rw_at(&self.index_path)?
            .ok_or_else(|| LifecycleError::NoIndex(self.index_path.to_string()))?;
        crate::auth::scope::register_sql_functions(ix.conn(), self.directory.clone())
            .map_err(IndexError::from)?;
        self.settle_trash(&ix)?;
        Ok((lock, ix))
    }

    /// Settles what a crash left in `.trash` (module doc): a directory
    /// whose index row is gone is removed, one whose row is still there
    /// goes back to its place.
    fn settle_trash(&self, ix: &Index) -> Result<(), LifecycleError> {
        let trash = self.root().join(TRASH_DIR);
        let Ok(rd) = std::fs::read_dir(&trash) else {
            return Ok(());
        };
        for e in rd.filter_map(|e| e.ok()) {
            let Some(id) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let row: Option<String> = ix
                .conn()
                .query_row(
                    "SELECT path FROM recordings WHERE recording_id = ?1",
                    params![id],
                    |r| r.get(0),
                )
                .optional()?;
            match row {
                Some(path) if !path.is_empty() && !self.root().join(&path).exists() => {
                    tracing::warn!(recording_id = %id, "an interrupted deletion: the recording goes back to its place");
                    std::fs::rename(e.path(), self.root().join(&path))
                        .map_err(io("restoring", &e.path()))?;
                }
                _ => {
                    tracing::warn!(recording_id = %id, "an interrupted deletion: removing what was left");
                    std::fs::remove_dir_all(e.path()).map_err(io("removing", &e.path()))?;
                }
            }
        }
        Ok(())
    }

    /// Puts a legal hold on the recording `id` (recording id or Call-ID,
    /// within `scope`); a recording held already gets the new reason if
    /// one is given. Returns the recording as it now is.
    pub fn hold(
        &self,
        id: &str,
        scope: &Scope,
        reason: Option<String>,
        who: &Who,
    ) -> Result<RecordingMeta, LifecycleError> {
        let (_lock, ix) = self.begin()?;
        let mut meta = ix
            .get_scoped(id, scope)?
            .ok_or_else(|| LifecycleError::NotFound(id.to_string()))?;
        let reason = reason
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty());
        let hold = match meta.hold.take() {
            Some(mut h) => {
                if reason.is_some() {
                    h.reason = reason;
                }
                h
            }
            None => Hold {
                reason,
                at: now(),
                by: who.actor.clone(),
            },
        };
        let dir = self.root().join(&meta.path);
        if meta.path.is_empty() || !dir.is_dir() {
            return Err(LifecycleError::Missing(meta.path));
        }
        let file = dir.join(HOLD_FILE);
        let previous = std::fs::read(&file).ok();
        write_atomic(&file, &serde_json::to_vec_pretty(&hold).unwrap_or_default())?;
        meta.hold = Some(hold.clone());
        let entry = who.entry(
            "hold",
            vec![meta.recording_id.clone()],
            serde_json::json!({ "id": id, "reason": hold.reason }),
            "ok",
        );
        let written = audit::with_write(ix.conn(), |c| {
            crate::store::index::upsert_in(c, &meta)?;
            audit::append_in(c, &[entry]).map_err(LifecycleError::from)?;
            Ok::<_, LifecycleError>(())
        });
        if let Err(e) = written {
            match previous {
                Some(p) => {
                    let _ = write_atomic(&file, &p);
                }
                None => {
                    let _ = std::fs::remove_file(&file);
                }
            }
            return Err(e);
        }
        Ok(meta)
    }

    /// Releases the hold of the recording `id` (nothing changes if it had
    /// none: `Ok((meta, false))`).
    pub fn release(
        &self,
        id: &str,
        scope: &Scope,
        who: &Who,
    ) -> Result<(RecordingMeta, bool), LifecycleError> {
        let (_lock, ix) = self.begin()?;
        let mut meta = ix
            .get_scoped(id, scope)?
            .ok_or_else(|| LifecycleError::NotFound(id.to_string()))?;
        let file = self.root().join(&meta.path).join(HOLD_FILE);
        let Some(old) = meta.hold.take() else {
            // The drop may hold what the index lost (a crash mid-hold):
            // the index is what the API and the retention read, so it is
            // the one released; the file goes too.
            let _ = std::fs::remove_file(&file);
            let entry = who.entry(
                "release",
                vec![meta.recording_id.clone()],
                serde_json::json!({ "id": id }),
                "not-held",
            );
            audit::append(ix.conn(), &[entry])?;
            return Ok((meta, false));
        };
        let entry = who.entry(
            "release",
            vec![meta.recording_id.clone()],
            serde_json::json!({ "id": id, "hold": old }),
            "ok",
        );
        audit::with_write(ix.conn(), |c| {
            crate::store::index::upsert_in(c, &meta)?;
            audit::append_in(c, &[entry]).map_err(LifecycleError::from)?;
            Ok::<_, LifecycleError>(())
        })?;
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            // Released in the index; `srs reindex` would bring the hold
            // back from the file: said, not hidden.
            Err(e) => tracing::error!(file = %file.display(), error = %e,
                "released in the index but hold.json could not be removed (srs reindex would restore the hold)"),
        }
        Ok((meta, true))
    }

    /// Deletes recordings by id (or Call-ID) within `scope`. Held ones are
    /// kept and listed (each refusal audited, outcome `held`), unknown ones
    /// listed; `dry_run` changes nothing but writes one audit entry of
    /// what it showed.
    pub fn delete(
        &self,
        ids: &[String],
        scope: &Scope,
        who: &Who,
        dry_run: bool,
    ) -> Result<Report, LifecycleError> {
        let (_lock, ix) = self.begin()?;
        let mut report = Report {
            dry_run,
            ..Default::default()
        };
        let mut victims: Vec<RecordingMeta> = Vec::new();
        for id in ids {
            match ix.get_scoped(id, scope)? {
                Some(m) if !victims.iter().any(|v| v.recording_id == m.recording_id) => {
                    victims.push(m)
                }
                Some(_) => {}
                None => report.not_found.push(id.clone()),
            }
        }
        let filters = serde_json::json!({ "ids": ids });
        self.erase(&ix, victims, who, &filters, &mut report, true, |_| None)?;
        Ok(report)
    }

    /// Erasure for a data subject: every recording where `dn` took part
    /// (the index's DN set, as `srs list --dn`), held ones kept.
    pub fn delete_by_dn(
        &self,
        dn: &str,
        who: &Who,
        dry_run: bool,
    ) -> Result<Report, LifecycleError> {
        let (_lock, ix) = self.begin()?;
        let ids: Vec<String> = {
            let mut stmt = ix.conn().prepare(
                "SELECT DISTINCT recording_id FROM recording_dns WHERE dn = ?1 ORDER BY recording_id",
            )?;
            let rows = stmt.query_map(params![dn.trim()], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut victims = Vec::new();
        for id in &ids {
            victims.extend(ix.get(id)?);
        }
        let mut report = Report {
            dry_run,
            ..Default::default()
        };
        let filters = serde_json::json!({ "dn": dn });
        self.erase(&ix, victims, who, &filters, &mut report, true, |_| None)?;
        Ok(report)
    }

    /// Applies the retention rules at `now` (module doc of
    /// [`retention`]): every recording due is deleted unless held, each
    /// audited as `delete` by `retention` with its rule. First the index
    /// is brought in step with the drop ([`Lifecycle::reconcile`]).
    /// `trigger` (the command line, or `retention` for the schedule) is
    /// named in each entry.
    pub fn retention_run(
        &self,
        rules: &[RetentionRule],
        now: chrono::DateTime<chrono::Utc>,
        trigger: &Who,
        dry_run: bool,
    ) -> Result<Report, LifecycleError> {
        let (_lock, ix) = self.begin()?;
        let attached = retention::IndexAttached(ix.conn());
        let mut report = Report {
            dry_run,
            ..Default::default()
        };
        if !dry_run {
            report.found_missing = self.reconcile_in(&ix, trigger)?;
        }
        if rules.is_empty() {
            return Ok(report);
        }
        // Only recordings older than the shortest retention can be due.
        let min_days = rules.iter().map(|r| r.days).min().unwrap_or(0);
        let cutoff =
            crate::store::query::utc_millis(now - chrono::Duration::days(i64::from(min_days)));
        let mut due: Vec<(RecordingMeta, String, u32)> = Vec::new();
        {
            // In pages (keyset on started_at, recording_id): a large index
            // is never read into memory whole.
            let mut stmt = ix.conn().prepare(
                "SELECT recording_id, meta_json, started_at FROM recordings
                 WHERE started_at <= ?1 AND (started_at > ?2 OR (started_at = ?2 AND recording_id > ?3))
                 ORDER BY started_at, recording_id LIMIT 1000",
            )?;
            let (mut last_at, mut last_id) = (String::new(), String::new());
            let mut rows = stmt.query(params![cutoff, last_at, last_id])?;
            loop {
                let row = match rows.next() {
                    Some(row) => row,
                    None => {
                        rows = stmt.query(params![cutoff, last_at, last_id])?;
                        match rows.next() {
                            Some(row) => row,
                            None => break,
                        }
                    }
                };
                let (id, json): (String, String) = (row.get(0)?, row.get(1)?);
                last_at = row.get::<Option<String>>(2)?.unwrap_or_default();
                last_id = id.clone();
                let meta: RecordingMeta = match serde_json::from_str(&json) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(recording_id = %id, error = %e, "retention: unreadable index row kept");
                        continue;
                    }
                };
                let Some(rule) = retention::rule_for(rules, &meta, &attached) else {
                    continue;
                };
                if retention::due_at(&meta.started_at, rule.days).is_some_and(|t| t <= now) {
                    due.push((meta, rule.name.clone(), rule.days));
                }
            }
        }
        let rules_of: std::collections::HashMap<String, (String, u32)> = due
            .iter()
            .map(|(m, r, d)| (m.recording_id.clone(), (r.clone(), *d)))
            .collect();
        let victims = due.into_iter().map(|(m, _, _)| m).collect();
        let filters = serde_json::json!({ "retention": true, "run_by": trigger.actor });
        let who = Who::retention();
        // A held recording due under a rule is kept without an audit entry
        // (the report and the log say so): it would add one at every run
        // for as long as the hold lasts, and nobody asked for its deletion.
        self.erase(&ix, victims, &who, &filters, &mut report, false, |id| {
            rules_of.get(id).cloned()
        })?;
        Ok(report)
    }

    /// Brings the index in step with the drop: rows whose recording's
    /// directory is gone from the drop (removed by hand) are removed, each
    /// audited as `found-missing`. Returns their ids.
    pub fn reconcile(&self, who: &Who) -> Result<Vec<String>, LifecycleError> {
        let (_lock, ix) = self.begin()?;
        self.reconcile_in(&ix, who)
    }

    fn reconcile_in(&self, ix: &Index, who: &Who) -> Result<Vec<String>, LifecycleError> {
        let rows: Vec<(String, String)> = {
            // Rows of this recorder (or of none), not kept in the object
            // store: a recording only in the object store is not missing.
            let mut stmt = ix.conn().prepare(
                "SELECT r.recording_id, r.path FROM recordings r
                 WHERE (?1 IS NULL OR r.node IS NULL OR r.node = ?1)
                   AND NOT EXISTS (SELECT 1 FROM recording_objects o WHERE o.recording_id = r.recording_id)
                 ORDER BY r.recording_id",
            )?;
            let rows = stmt.query_map([self.node.as_deref()], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        let total = rows.len();
        let gone: Vec<(String, String)> = rows
            .into_iter()
            .filter(|(_, path)| {
                !path.is_empty()
                    && !self
                        .root()
                        .join(path)
                        .join(crate::store::drop::METADATA_FILE)
                        .exists()
            })
            .collect();
        // Every recording gone at once is far likelier an unmounted or
        // swapped drop than a clean-up by hand: the index is left alone
        // (`srs reindex` removes them, counted, if that was meant).
        if total > 1 && gone.len() == total {
            tracing::error!(recordings = total, root = %self.root().display(),
                "none of the indexed recordings is in the drop (unmounted?): the index is left as it is");
            return Ok(Vec::new());
        }
        for batch in gone.chunks(BATCH) {
            audit::with_write(ix.conn(), |c| {
                let mut entries = Vec::new();
                for (id, path) in batch {
                    crate::store::index::delete_in(c, id)?;
                    entries.push(who.entry(
                        "found-missing",
                        vec![id.clone()],
                        serde_json::json!({ "path": path }),
                        "ok",
                    ));
                    tracing::warn!(recording_id = %id, path = %path,
                        "a recording is no longer in the drop (removed by hand?): dropped from the index");
                }
                audit::append_in(c, &entries)?;
                Ok::<_, LifecycleError>(())
            })?;
        }
        Ok(gone.into_iter().map(|(id, _)| id).collect())
    }

    /// Deletes `victims` (module doc), keeping the held ones (each
    /// refusal audited when `audit_refusals`). `rule_of` names the
    /// retention rule and days of a recording, if any.
    #[allow(clippy::too_many_arguments)]
    fn erase(
        &self,
        ix: &Index,
        victims: Vec<RecordingMeta>,
        who: &Who,
        filters: &serde_json::Value,
        report: &mut Report,
        audit_refusals: bool,
        rule_of: impl Fn(&str) -> Option<(String, u32)>,
    ) -> Result<(), LifecycleError> {
        let mut free = Vec::new();
        let mut refusals = Vec::new();
        for m in victims {
            let on_disk = read_hold(&self.root().join(&m.path));
            match m.hold.clone().or(on_disk) {
                Some(hold) => {
                    let mut f = filters.clone();
                    f["hold"] = serde_json::to_value(&hold).unwrap_or_default();
                    refusals.push(who.entry("delete", vec![m.recording_id.clone()], f, "held"));
                    report.held.push(Kept {
                        recording_id: m.recording_id,
                        hold,
                    });
                }
                None => free.push(m),
            }
        }
        if report.dry_run {
            for m in &free {
                report.deleted.push(deleted(m, rule_of(&m.recording_id)));
            }
            let ids: Vec<String> = free.iter().map(|m| m.recording_id.clone()).collect();
            let mut f = filters.clone();
            f["held"] = report.held.len().into();
            audit::append(ix.conn(), &[who.entry("delete-dry-run", ids, f, "ok")])?;
            return Ok(());
        }
        if audit_refusals && !refusals.is_empty() {
            audit::append(ix.conn(), &refusals)?;
        }
        for k in &report.held {
            tracing::info!(recording_id = %k.recording_id, hold = %describe(&k.hold), actor = %who.actor,
                "not deleted: under legal hold");
        }
        let trash = self.root().join(TRASH_DIR);
        for batch in free.chunks(BATCH) {
            if self.root().is_dir() {
                std::fs::create_dir_all(&trash).map_err(io("creating", &trash))?;
            }
            // 2. Out of the dated tree (a missing directory: the files are
            //    gone already; the rows still go).
            let mut moved: Vec<(&RecordingMeta, Option<PathBuf>)> = Vec::new();
            for m in batch {
                let dir = self.root().join(&m.path);
                let parked = trash.join(&m.recording_id);
                let _ = std::fs::remove_dir_all(&parked);
                match std::fs::rename(&dir, &parked) {
                    Ok(()) => moved.push((m, Some(parked))),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound || m.path.is_empty() => {
                        moved.push((m, None))
                    }
                    Err(e) => {
                        restore(self.root(), &moved);
                        return Err(LifecycleError::Io {
                            op: "moving to the trash",
                            path: dir,
                            source: e,
                        });
                    }
                }
            }
            // 3. HOOK(issue 16): the object-storage copies. Without the
            //    store's settings (a CLI run without --config), a recording
            //    the index says has copies there is not deleted: an erasure
            //    must not leave them behind.
            for (m, _) in &moved {
                let r = match &self.replicas {
                    Some(replicas) => replicas.delete(m),
                    None => match crate::store::objects::has_copies(ix.conn(), &m.recording_id) {
                        Ok(false) => Ok(()),
                        Ok(true) => Err(format!(
                            "recording {} has copies in the object store and no [storage.object] is configured here (give --config with it): nothing deleted",
                            m.recording_id
                        )),
                        Err(e) => Err(e.to_string()),
                    },
                };
                if let Err(e) = r {
                    restore(self.root(), &moved);
                    return Err(LifecycleError::Replicas(e));
                }
            }
            // 4. Rows and audit entries together.
            let written = audit::with_write(ix.conn(), |c| {
                let mut entries = Vec::new();
                for (m, parked) in &moved {
                    crate::events::store::delete_events_of(c, &m.recording_id)
                        .map_err(IndexError::from)?;
                    crate::store::index::delete_in(c, &m.recording_id)?;
                    let mut f = filters.clone();
                    if let Some((rule, days)) = rule_of(&m.recording_id) {
                        f["rule"] = rule.into();
                        f["days"] = days.into();
                    }
                    f["path"] = m.path.clone().into();
                    if parked.is_none() {
                        f["files"] = "already missing".into();
                    }
                    entries.push(who.entry("delete", vec![m.recording_id.clone()], f, "ok"));
                    if !self.webhooks.is_empty() {
                        let json = serde_json::to_value(m).unwrap_or_default();
                        crate::webhooks::outbox::enqueue(
                            c,
                            &self.webhooks,
                            crate::events::worker::Notice::Deleted.event(),
                            Some(&m.recording_id),
                            &json,
                            chrono::Utc::now(),
                        )
                        .map_err(IndexError::from)?;
                    }
                }
                audit::append_in(c, &entries)?;
                Ok::<_, LifecycleError>(())
            });
            if let Err(e) = written {
                restore(self.root(), &moved);
                return Err(e);
            }
            // 5. The files.
            for (m, parked) in &moved {
                if let Some(p) = parked {
                    if let Err(e) = std::fs::remove_dir_all(p) {
                        tracing::error!(recording_id = %m.recording_id, error = %e,
                            "deleted from the index; its files stay in .trash until the next change removes them");
                    }
                }
                tracing::info!(recording_id = %m.recording_id, actor = %who.actor, "recording deleted");
                report.deleted.push(deleted(m, rule_of(&m.recording_id)));
            }
        }
        Ok(())
    }
}

fn deleted(m: &RecordingMeta, rule: Option<(String, u32)>) -> Deleted {
    Deleted {
        recording_id: m.recording_id.clone(),
        path: m.path.clone(),
        started_at: m.started_at.clone(),
        rule: rule.map(|(r, _)| r),
    }
}

/// Puts moved directories back (a deletion that failed).
fn restore(root: &Path, moved: &[(&RecordingMeta, Option<PathBuf>)]) {
    for (m, parked) in moved {
        if let Some(p) = parked {
            if let Err(e) = std::fs::rename(p, root.join(&m.path)) {
                tracing::error!(recording_id = %m.recording_id, error = %e,
                    "a failed deletion could not put the recording back: it is in .trash and goes back at the next change");
            }
        }
    }
}

fn now() -> String {
    crate::store::query::utc_millis(chrono::Utc::now())
}

/// Writes a small file atomically (temporary file, fsync, rename, fsync
/// of the directory).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), LifecycleError> {
    use std::io::Write;
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io("writing", &tmp))?;
    f.write_all(bytes).map_err(io("writing", &tmp))?;
    f.sync_all().map_err(io("writing", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io("renaming", &tmp))?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// The hold kept in a recording's directory, if any (a file that cannot
/// be read as a hold counts as a hold: better kept than lost).
pub fn read_hold(dir: &Path) -> Option<Hold> {
    let bytes = match std::fs::read(dir.join(HOLD_FILE)) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(_) => return Some(unreadable_hold()),
    };
    Some(serde_json::from_slice(&bytes).unwrap_or_else(|_| unreadable_hold()))
}

fn unreadable_hold() -> Hold {
    Hold {
        reason: Some("hold.json unreadable: treated as held".into()),
        at: String::new(),
        by: "unknown".into(),
    }
}

#[cfg(test)]
mod tests;
