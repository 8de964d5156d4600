//! The events thread (`srs-events`, nice 10, its own read-write index
//! connection): everything issue 14 writes, in one place and off every
//! other path.
//!
//! - Posts of call events: stored and tied to the indexed recordings they
//!   belong to in one transaction (posts that arrive together share it),
//!   then answered (the API's request waits; SIP, media and publishing
//!   never do).
//! - Notifications (a recording started, published, failed, deleted): a
//!   non-blocking send from the SIP task or the publisher thread; the
//!   outbox rows of every webhook subscribed are written here.
//! - `call-events.json` in the drop, written again (temporary file,
//!   rename, directory fsync) for every recording whose events changed
//!   after its publication, from the durable to-do of
//!   [`super::store::pending_sync`].
//! - Webhook deliveries: due rows handed to the delivery thread
//!   ([`crate::webhooks::delivery`]) within each receiver's
//!   `max_in_flight`, their outcomes written back (delivered, retried with
//!   backoff, dead).

use std::collections::{BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::oneshot;

use super::{store, utc_millis, CallEvent};
use crate::metrics::Metrics;
use crate::recording::RecordingMeta;
use crate::store::Index;
use crate::webhooks::delivery::{Attempt, Deliverer, Outcome};
use crate::webhooks::{backoff, outbox, WebhookConfig};

/// Name of the call events file beside `metadata.json`.
pub const CALL_EVENTS_FILE: &str = "call-events.json";
/// Its temporary name while being replaced.
const CALL_EVENTS_TMP: &str = ".call-events.json.tmp";

/// Posts waiting for the thread; more are refused (503) at once.
const MAX_POSTS_WAITING: usize = 64;
/// Notifications waiting; more are dropped (counted, logged).
const MAX_NOTES_WAITING: usize = 20_000;
/// Most jobs handled in one transaction.
const MAX_BATCH: usize = 512;
/// The thread looks for due deliveries and files to write at least this
/// often.
const TICK: Duration = Duration::from_millis(100);
/// Recordings whose `call-events.json` is written per round.
const SYNC_BATCH: usize = 64;

/// A recording notification for the webhooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    Started,
    Published,
    Failed,
    Deleted,
}

impl Notice {
    /// The webhook event name.
    pub fn event(self) -> &'static str {
        match self {
            Notice::Started => "recording.started",
            Notice::Published => "recording.published",
            Notice::Failed => "recording.failed",
            Notice::Deleted => "recording.deleted",
        }
    }
}

/// What a post did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PostOutcome {
    /// Events of the post (stored, or stored already).
    pub accepted: usize,
    /// Of those, already stored by an earlier post (the same JSON).
    pub duplicates: usize,
    /// Recordings they were tied to now.
    pub recordings: Vec<String>,
}

/// Why a post was not stored (503).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PostError {
    #[error("busy: too many call-event posts waiting, retry later")]
    Busy,
    #[error("the events thread stopped")]
    Stopped,
    #[error("the index cannot take the events now ({0}): nothing was stored, retry later")]
    Index(String),
}

enum Job {
    Post {
        events: Vec<CallEvent>,
        received_at: String,
        done: oneshot::Sender<Result<PostOutcome, PostError>>,
    },
    Note {
        notice: Notice,
        meta: Box<RecordingMeta>,
    },
    Outcome {
        id: String,
        outcome: Outcome,
    },
    Retry {
        id: String,
        done: oneshot::Sender<Result<bool, String>>,
    },
}

/// The handle to the events thread (cheap to clone).
#[derive(Clone)]
pub struct Events {
    tx: Sender<Job>,
    posts: Arc<AtomicUsize>,
    notes: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").finish_non_exhaustive()
    }
}

impl Events {
    /// Starts the events thread and the webhook delivery thread.
    pub fn start(
        index_path: crate::store::IndexAt,
        drop_root: PathBuf,
        hooks: Vec<WebhookConfig>,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Events> {
        let (tx, rx) = std::sync::mpsc::channel();
        let back = tx.clone();
        let deliverer = Deliverer::start(move |id, _url, outcome| {
            let _ = back.send(Job::Outcome { id, outcome });
        })?;
        let notes = Arc::new(AtomicUsize::new(0));
        // Opened now, before the API listens: its descriptor is part of
        // the server's resting count (a failure is retried by the thread).
        // Never created here: the publisher's writer creates the index, and
        // a file made by this thread would hide a deleted index from it.
        let index = Index::open_existing_rw_at(&index_path).ok().flatten();
        let worker = Worker {
            path: index_path,
            index,
            failing_since: None,
            drop_root,
            hooks: hooks.into_iter().map(Arc::new).collect(),
            deliverer,
            in_flight: HashMap::new(),
            metrics: metrics.clone(),
            notes: notes.clone(),
            waiting: Vec::new(),
            sync_retry_at: None,
            next_housekeeping: Instant::now(),
            next_prune: Instant::now(),
        };
        std::thread::Builder::new()
            .name("srs-events".into())
            .spawn(move || worker.run(rx))?;
        Ok(Events {
            tx,
            posts: Arc::new(AtomicUsize::new(0)),
            notes,
            metrics,
        })
    }

    /// Stores `events` and ties them to their recordings; returns once
    /// committed (nothing of a failed post is stored).
    pub async fn post(&self, events: Vec<CallEvent>) -> Result<PostOutcome, PostError> {
        if self.posts.fetch_add(1, Ordering::AcqRel) >= MAX_POSTS_WAITING {
            self.posts.fetch_sub(1, Ordering::AcqRel);
            return Err(PostError::Busy);
        }
        let (done, wait) = oneshot::channel();
        let sent = self.tx.send(Job::Post {
            events,
            received_at: utc_millis(Utc::now()),
            done,
        });
        let r = match sent {
            Ok(()) => wait.await.unwrap_or(Err(PostError::Stopped)),
            Err(_) => Err(PostError::Stopped),
        };
        self.posts.fetch_sub(1, Ordering::AcqRel);
        r
    }

    /// A recording started, was published, failed or was deleted: its
    /// webhooks are queued. Never blocks (the SIP task and the publisher
    /// call it); beyond [`MAX_NOTES_WAITING`] waiting it is dropped and
    /// counted (`srs_notifications_dropped_total`).
    pub fn notify(&self, notice: Notice, meta: RecordingMeta) {
        if self.notes.fetch_add(1, Ordering::AcqRel) >= MAX_NOTES_WAITING {
            self.notes.fetch_sub(1, Ordering::AcqRel);
            self.metrics.notifications_dropped.inc();
            tracing::warn!(recording_id = %meta.recording_id, event = notice.event(),
                "the events thread is too far behind: webhook notification dropped");
            return;
        }
        let job = Job::Note {
            notice,
            meta: Box::new(meta),
        };
        if self.tx.send(job).is_err() {
            self.notes.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Sends a delivery again (the admin API); `Ok(false)`: no such
    /// delivery, or delivered already.
    pub async fn retry(&self, id: String) -> Result<bool, String> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Job::Retry { id, done })
            .map_err(|_| "the events thread stopped".to_string())?;
        wait.await
            .unwrap_or_else(|_| Err("the events thread stopped".into()))
    }
}

/// One delivery in flight: what its outcome needs.
struct InFlight {
    url: String,
    event: String,
    attempts: u32,
    created_ms: i64,
}

struct Worker {
    path: crate::store::IndexAt,
    index: Option<Index>,
    failing_since: Option<Instant>,
    drop_root: PathBuf,
    hooks: Vec<Arc<WebhookConfig>>,
    deliverer: Deliverer,
    in_flight: HashMap<String, InFlight>,
    metrics: Arc<Metrics>,
    notes: Arc<AtomicUsize>,
    /// Notifications and outcomes a failed transaction left, tried again.
    waiting: Vec<Job>,
    /// After a failed `call-events.json` write, when to try again.
    sync_retry_at: Option<Instant>,
    next_housekeeping: Instant,
    next_prune: Instant,
}

impl Worker {
    fn run(mut self, rx: Receiver<Job>) {
        crate::http::lower_priority();
        loop {
            let mut batch = std::mem::take(&mut self.waiting);
            match rx.recv_timeout(TICK) {
                Ok(j) => batch.push(j),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(j) => batch.push(j),
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                self.handle(batch);
            }
            self.sync_files();
            self.dispatch();
            self.housekeeping();
        }
    }

    fn index(&mut self) -> Result<&Index, String> {
        crate::store::index::open_current(&mut self.index, &self.path)
    }

    fn fault(&mut self, e: &str) {
        self.index = None;
        if self.failing_since.is_none() {
            self.failing_since = Some(Instant::now());
            tracing::error!(index = %self.path, error = e,
                "the events thread cannot write the index: call-event posts get 503, notifications and deliveries wait");
        }
    }

    fn healthy(&mut self) {
        if let Some(since) = self.failing_since.take() {
            tracing::warn!(
                fault_s = since.elapsed().as_secs(),
                "the events thread writes the index again"
            );
        }
    }

    /// The jobs of one batch in one transaction.
    fn handle(&mut self, batch: Vec<Job>) {
        let hooks: Vec<WebhookConfig> = self.hooks.iter().map(|h| (**h).clone()).collect();
        let metrics = self.metrics.clone();
        let mut posts = Vec::new();
        let mut retries = Vec::new();
        let mut outcomes = Vec::new();
        let mut notes = Vec::new();
        for job in batch {
            match job {
                Job::Post {
                    events,
                    received_at,
                    done,
                } => posts.push((events, received_at, done)),
                Job::Retry { id, done } => retries.push((id, done)),
                Job::Outcome { id, outcome } => outcomes.push((id, outcome)),
                Job::Note { notice, meta } => notes.push((notice, meta)),
            }
        }
        let n_notes = notes.len();
        if posts.is_empty() && retries.is_empty() && outcomes.is_empty() && hooks.is_empty() {
            // Notifications with no receiver configured: nothing to write
            // (publication tied its events already).
            self.notes.fetch_sub(n_notes, Ordering::AcqRel);
            return;
        }
        let now = Utc::now();
        let mut outcome_log = Vec::new();
        let opened = self.index().map(|_| ());
        let ix = self.index.take();
        let result = (|| -> Result<_, String> {
            opened?;
            let ix = ix.as_ref().ok_or("no index")?;
            let c = ix.conn();
            let tx = c.immediate_transaction().map_err(|e| e.to_string())?;
            let mut answers = Vec::new();
            let mut touched = BTreeSet::new();
            let mut stored = 0u64;
            for (events, received_at, _) in &posts {
                let mut out = PostOutcome {
                    accepted: events.len(),
                    ..Default::default()
                };
                let mut mine = BTreeSet::new();
                for e in events {
                    match store::insert(c, e, received_at).map_err(|e| e.to_string())? {
                        Some(_) => {
                            stored += 1;
                            mine.extend(store::recordings_for(c, e).map_err(|e| e.to_string())?);
                        }
                        None => out.duplicates += 1,
                    }
                }
                out.recordings = mine.iter().cloned().collect();
                touched.extend(mine);
                answers.push(out);
            }
            let mut associated = 0u64;
            for id in &touched {
                let r = store::relink(c, id, None, false).map_err(|e| e.to_string())?;
                associated += r.added as u64;
                if r.changed && r.added > 0 {
                    if let Some(meta) = &r.meta {
                        let json = serde_json::to_value(meta).unwrap_or_default();
                        outbox::enqueue(c, &hooks, "call-events.associated", Some(id), &json, now)
                            .map_err(|e| e.to_string())?;
                    }
                }
            }
            for (notice, meta) in &notes {
                // Published: the indexed JSON, with its call events.
                let indexed = match notice {
                    Notice::Published => {
                        store::relink(c, &meta.recording_id, None, false)
                            .map_err(|e| e.to_string())?;
                        ix.get(&meta.recording_id)
                            .ok()
                            .flatten()
                            .filter(|m| m.recording_id == meta.recording_id)
                    }
                    _ => None,
                };
                let json =
                    serde_json::to_value(indexed.as_ref().unwrap_or(meta)).unwrap_or_default();
                outbox::enqueue(
                    c,
                    &hooks,
                    notice.event(),
                    Some(&meta.recording_id),
                    &json,
                    now,
                )
                .map_err(|e| e.to_string())?;
            }
            for (id, outcome) in &outcomes {
                let Some(f) = self.in_flight.get(id) else {
                    continue;
                };
                match outcome {
                    Ok(_) => {
                        outbox::delivered(c, id, now).map_err(|e| e.to_string())?;
                        outcome_log.push((f.event.clone(), "delivered"));
                    }
                    Err(err) => {
                        let failures = f.attempts + 1;
                        let hook = self.hooks.iter().find(|h| h.url == f.url);
                        let (retry_for, initial) = hook.map_or((0, 1000), |h| {
                            (h.retry_for as i64 * 1000, h.retry_initial_ms)
                        });
                        let now_ms = now.timestamp_millis();
                        let next =
                            now_ms + backoff(initial, failures, rand::random::<f64>()) as i64;
                        if next - f.created_ms > retry_for {
                            outbox::failed(c, id, err, now, None).map_err(|e| e.to_string())?;
                            outcome_log.push((f.event.clone(), "dead"));
                            tracing::warn!(delivery = %id, url = %f.url, event = %f.event, attempts = failures,
                                error = %err, "webhook delivery dead: retry_for ran out (srs webhooks --failed; --retry ID)");
                        } else {
                            outbox::failed(c, id, err, now, Some(next))
                                .map_err(|e| e.to_string())?;
                            outcome_log.push((f.event.clone(), "failed"));
                            tracing::debug!(delivery = %id, url = %f.url, attempts = failures,
                                error = %err, retry_in_ms = next - now_ms, "webhook delivery failed; retried");
                        }
                    }
                }
            }
            let mut retried = Vec::new();
            for (id, _) in &retries {
                retried.push(outbox::retry(c, id, now).map_err(|e| e.to_string())?);
            }
            tx.commit().map_err(|e| e.to_string())?;
            Ok((answers, retried, stored, associated))
        })();
        self.index = ix;
        match result {
            Ok((answers, retried, stored, associated)) => {
                self.healthy();
                self.notes.fetch_sub(n_notes, Ordering::AcqRel);
                metrics.call_events_received.inc_by(stored);
                metrics.call_events_associated.inc_by(associated);
                for (event, outcome) in outcome_log {
                    metrics.delivery(&event, outcome);
                }
                for (id, _) in &outcomes {
                    self.in_flight.remove(id);
                }
                for ((_, _, done), out) in posts.into_iter().zip(answers) {
                    let _ = done.send(Ok(out));
                }
                for ((_, done), r) in retries.into_iter().zip(retried) {
                    let _ = done.send(Ok(r));
                }
            }
            Err(e) => {
                self.fault(&e);
                for (_, _, done) in posts {
                    let _ = done.send(Err(PostError::Index(e.clone())));
                }
                for (_, done) in retries {
                    let _ = done.send(Err(e.clone()));
                }
                // Kept for the next round (bounded: notifications by their
                // counter, outcomes by the deliveries in flight).
                for (notice, meta) in notes {
                    self.waiting.push(Job::Note { notice, meta });
                }
                for (id, outcome) in outcomes {
                    self.waiting.push(Job::Outcome { id, outcome });
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }

    /// Writes the `call-events.json` that wait.
    fn sync_files(&mut self) {
        if self.sync_retry_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        let root = self.drop_root.clone();
        let Ok(ix) = self.index() else { return };
        let Ok(pending) = store::pending_sync(ix.conn(), SYNC_BATCH) else {
            return;
        };
        if pending.is_empty() {
            return;
        }
        let mut done = Vec::new();
        let mut failed = false;
        for (id, path, json) in pending {
            let meta = serde_json::from_str::<RecordingMeta>(&json).ok();
            match (meta, recording_dir(&root, &path)) {
                (Some(meta), Some(dir)) if dir.is_dir() => match write_call_events(&dir, &meta) {
                    Ok(()) => done.push(id),
                    Err(e) => {
                        failed = true;
                        tracing::error!(recording_id = %id, dir = %dir.display(), error = %e,
                            "cannot write call-events.json; retried in 5 s");
                    }
                },
                // Gone from the index or the drop (deleted): nothing to write.
                _ => done.push(id),
            }
        }
        self.sync_retry_at = failed.then(|| Instant::now() + Duration::from_secs(5));
        if let Ok(ix) = self.index() {
            let c = ix.conn();
            let r = c.immediate_transaction().and_then(|tx| {
                for id in &done {
                    store::synced(c, id)?;
                }
                tx.commit()
            });
            if let Err(e) = r {
                tracing::warn!(error = %e, "call-events.json written, its to-do not cleared: written again later");
            }
        }
    }

    /// Hands due deliveries to the delivery thread, within each
    /// receiver's `max_in_flight`.
    fn dispatch(&mut self) {
        if self.hooks.is_empty() {
            return;
        }
        let room: usize = self.hooks.iter().map(|h| h.max_in_flight).sum();
        let busy = self.in_flight.len();
        if busy >= room {
            return;
        }
        let now = Utc::now();
        let Ok(ix) = self.index() else { return };
        let Ok(due) = outbox::due(ix.conn(), now.timestamp_millis(), room + busy) else {
            return;
        };
        let mut orphans = Vec::new();
        for d in due {
            if self.in_flight.contains_key(&d.id) {
                continue;
            }
            let Some(hook) = self.hooks.iter().find(|h| h.url == d.url).cloned() else {
                orphans.push(d.id);
                continue;
            };
            let flying = self.in_flight.values().filter(|f| f.url == d.url).count();
            if flying >= hook.max_in_flight {
                continue;
            }
            self.in_flight.insert(
                d.id.clone(),
                InFlight {
                    url: d.url.clone(),
                    event: d.event.clone(),
                    attempts: d.attempts,
                    created_ms: d.created_ms,
                },
            );
            if !self.deliverer.send(Attempt { delivery: d, hook }) {
                tracing::error!("the webhook delivery thread is gone");
                return;
            }
        }
        if !orphans.is_empty() {
            if let Ok(ix) = self.index() {
                for id in orphans {
                    let _ = outbox::orphaned(ix.conn(), &id, now);
                }
            }
        }
    }

    /// Once a second: the outbox backlog gauge; once an hour: old
    /// delivered rows pruned.
    fn housekeeping(&mut self) {
        let now = Instant::now();
        if now < self.next_housekeeping {
            return;
        }
        self.next_housekeeping = now + Duration::from_secs(1);
        let prune = now >= self.next_prune;
        if prune {
            self.next_prune = now + Duration::from_secs(3600);
        }
        let metrics = self.metrics.clone();
        let Ok(ix) = self.index() else { return };
        if let Ok(n) = outbox::backlog(ix.conn()) {
            metrics.webhook_backlog.set(n);
        }
        if prune {
            let _ = outbox::prune(ix.conn(), Utc::now().timestamp_millis());
        }
    }
}

/// `<root>/<path>` if `path` is a plain relative path (no `..`, no root).
fn recording_dir(root: &Path, path: &str) -> Option<PathBuf> {
    let p = Path::new(path);
    (!path.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_))))
        .then(|| root.join(p))
}

/// The content of `call-events.json`.
pub fn call_events_json(meta: &RecordingMeta) -> serde_json::Value {
    serde_json::json!({
        "recording_id": meta.recording_id,
        "updated_at": utc_millis(Utc::now()),
        "call_events": meta.call_events,
        "attached_data": meta.attached_data,
    })
}

/// Replaces `<dir>/call-events.json` atomically: a temporary file made
/// durable, renamed over it, the directory made durable. A reader sees
/// the old file or the new one, never a part.
pub fn write_call_events(dir: &Path, meta: &RecordingMeta) -> std::io::Result<()> {
    use std::io::Write;
    let mut json = serde_json::to_vec_pretty(&call_events_json(meta))?;
    json.push(b'\n');
    let tmp = dir.join(CALL_EVENTS_TMP);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&json)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(CALL_EVENTS_FILE))?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_events_json_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut meta = RecordingMeta {
            recording_id: "r1".into(),
            ..Default::default()
        };
        meta.attached_data.insert("case".into(), "C-1".into());
        write_call_events(dir.path(), &meta).unwrap();
        meta.attached_data.insert("case".into(), "C-2".into());
        write_call_events(dir.path(), &meta).unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join(CALL_EVENTS_FILE)).unwrap())
                .unwrap();
        assert_eq!(v["attached_data"]["case"], "C-2");
        assert!(!dir.path().join(CALL_EVENTS_TMP).exists());
        assert_eq!(recording_dir(Path::new("/d"), "../x"), None);
        assert_eq!(recording_dir(Path::new("/d"), "/x"), None);
        assert_eq!(
            recording_dir(Path::new("/d"), "2026/11/23/r1"),
            Some(PathBuf::from("/d/2026/11/23/r1"))
        );
    }
}
