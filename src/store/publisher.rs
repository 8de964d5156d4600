//! The publisher thread: finished recordings go into the drop and then the
//! index, in batches (group commit).
//!
//! It takes every recording waiting (at most [`PUBLISH_BATCH`]), publishes
//! them into the drop as one group commit ([`FileDrop::publish_batch`]: two
//! `syncfs(2)` per batch instead of a dozen fsyncs per recording), then
//! indexes the published ones in one transaction. While a batch is being
//! made durable the next one gathers, so the cost per recording falls as
//! the rate rises. The drop comes first: an index failure never loses audio,
//! and the [`IndexWriter`] keeps what the index could not take until it can
//! (retried every [`INDEX_RETRY`]), and follows the index file at its path
//! if it is deleted or replaced. It has its own connection, and the API's
//! readers never run on this thread.

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

use crate::recording::RecordingMeta;
use crate::store::{FileDrop, IndexWriter};

/// Most recordings published together.
pub const PUBLISH_BATCH: usize = 256;

/// While recordings wait for an unusable index, how often it is retried
/// when nothing new is published.
pub const INDEX_RETRY: Duration = Duration::from_secs(5);

/// A finished recording for the publisher thread.
struct PublishJob {
    meta: RecordingMeta,
    /// Told once the recording is published (true) or failed to be.
    done: tokio::sync::oneshot::Sender<bool>,
}

/// Why a recording was not handed over.
#[derive(Debug, thiserror::Error)]
#[error("the publisher thread is gone")]
pub struct PublisherGone;

/// The handle to the publisher thread.
#[derive(Clone)]
pub struct Publisher {
    tx: Sender<PublishJob>,
}

impl Publisher {
    /// Starts the thread; it owns the index writer. `on_published` is
    /// called once per recording: with `true` once it is in the drop and
    /// handed to the index (after the index write, so that readers of the
    /// index find it), with `false` when it could not be published.
    pub fn start(
        drop: FileDrop,
        index: IndexWriter,
        on_published: impl Fn(&RecordingMeta, bool) + Send + 'static,
    ) -> std::io::Result<Publisher> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("srs-publisher".into())
            .spawn(move || run(drop, index, on_published, rx))?;
        Ok(Publisher { tx })
    }

    /// Publishes `meta` (its files are in `.incoming`) and returns once it
    /// is in the drop and handed to the index: `Ok(true)`, or `Ok(false)`
    /// if it could not be published (it stays in `.incoming`).
    pub async fn publish(&self, meta: RecordingMeta) -> Result<bool, PublisherGone> {
        let (done, published) = tokio::sync::oneshot::channel();
        self.tx
            .send(PublishJob { meta, done })
            .map_err(|_| PublisherGone)?;
        published.await.map_err(|_| PublisherGone)
    }
}

/// `first` and whatever else waits now, up to `max` in all: the batch.
fn gather<T>(rx: &Receiver<T>, first: T, max: usize) -> Vec<T> {
    let mut batch = vec![first];
    while batch.len() < max {
        match rx.try_recv() {
            Ok(j) => batch.push(j),
            Err(_) => break,
        }
    }
    batch
}

fn run(
    drop: FileDrop,
    mut index: IndexWriter,
    on_published: impl Fn(&RecordingMeta, bool),
    rx: Receiver<PublishJob>,
) {
    loop {
        let first = if index.pending() > 0 {
            match rx.recv_timeout(INDEX_RETRY) {
                Ok(j) => j,
                Err(RecvTimeoutError::Timeout) => {
                    index.index(Vec::new());
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match rx.recv() {
                Ok(j) => j,
                Err(_) => break,
            }
        };
        let mut jobs = gather(&rx, first, PUBLISH_BATCH);
        let mut metas: Vec<RecordingMeta> = jobs
            .iter_mut()
            .map(|j| std::mem::take(&mut j.meta))
            .collect();
        let results = drop.publish_batch(&mut metas);
        let mut published = Vec::with_capacity(metas.len());
        let mut ok = Vec::with_capacity(metas.len());
        for (r, mut meta) in results.into_iter().zip(metas) {
            let id = &meta.recording_id;
            match r {
                Ok(path) => {
                    tracing::info!(recording_id = %id, path = %path.display(), "recording published");
                    published.push(meta);
                    ok.push(true);
                }
                Err(e) => {
                    tracing::error!(recording_id = %id, error = %e, "publishing failed; the recording stays in .incoming");
                    meta.error = Some(format!("publishing failed: {e}"));
                    on_published(&meta, false);
                    ok.push(false);
                }
            }
        }
        index.index(published.clone());
        for meta in &published {
            on_published(meta, true);
        }
        for (j, ok) in jobs.into_iter().zip(ok) {
            let _ = j.done.send(ok);
        }
    }
    if index.pending() > 0 {
        tracing::error!(
            recordings = index.pending(),
            "exiting with recordings published but not indexed: run `srs reindex`"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn a_batch_is_what_waits_now_up_to_the_bound() {
        let (tx, rx) = std::sync::mpsc::channel();
        for i in 1..=5 {
            tx.send(i).unwrap();
        }
        assert_eq!(gather(&rx, 0, 3), [0, 1, 2]);
        assert_eq!(gather(&rx, 9, 10), [9, 3, 4, 5]);
        assert_eq!(gather(&rx, 7, 10), [7], "nothing waits: a batch of one");
    }

    fn incoming(drop: &FileDrop, id: &str) -> RecordingMeta {
        drop.create_incoming(id).unwrap();
        RecordingMeta {
            recording_id: id.into(),
            call_id: format!("call-{id}"),
            status: "complete".into(),
            started_at: "2026-11-23T10:00:00.000Z".into(),
            ..RecordingMeta::default()
        }
    }

    #[tokio::test]
    async fn recordings_go_into_the_drop_then_the_index_and_each_caller_is_told() {
        let dir = tempfile::tempdir().unwrap();
        let drop = FileDrop::new(dir.path().join("rec"));
        let index_path = dir.path().join("index.sqlite");
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        let publisher = Publisher::start(
            drop.clone(),
            IndexWriter::open(index_path.clone()),
            move |_, ok| {
                if ok {
                    c.fetch_add(1, Ordering::Relaxed);
                }
            },
        )
        .unwrap();
        let metas: Vec<RecordingMeta> =
            (0..20).map(|i| incoming(&drop, &format!("r{i}"))).collect();
        let waits = metas.into_iter().map(|m| {
            let p = publisher.clone();
            tokio::spawn(async move { p.publish(m).await })
        });
        for w in waits {
            assert!(w.await.unwrap().unwrap());
        }
        assert_eq!(count.load(Ordering::Relaxed), 20);
        let published = drop.scan().unwrap();
        assert_eq!(published.len(), 20);
        assert!(published.iter().all(|m| m.path.starts_with("2026/11/23/")));
        let index = crate::store::Index::open(&index_path).unwrap();
        assert_eq!(index.count().unwrap(), 20);
        // Not in .incoming: a recording that cannot be published is told
        // too, and the others are not held back.
        let missing = RecordingMeta {
            recording_id: "gone".into(),
            ..incoming(&drop, "gone")
        };
        std::fs::remove_dir_all(dir.path().join("rec/.incoming/gone")).unwrap();
        assert!(!publisher.publish(missing).await.unwrap());
        assert_eq!(count.load(Ordering::Relaxed), 20);
    }
}
