//! The session writer: one thread that makes the writes of running
//! sessions (metadata updates kept beside the audio, `incoming.json`), in
//! the order they were asked for, so that the SIP task never waits on the
//! disk and an older `incoming.json` never overwrites a newer one.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender};

use crate::recording::RecordingMeta;

enum Job {
    /// A file written whole (a metadata update's raw XML).
    File { path: PathBuf, bytes: Vec<u8> },
    /// `incoming.json` of the recording in `dir` (crash recovery).
    Incoming {
        dir: PathBuf,
        meta: Box<RecordingMeta>,
    },
    /// Told once every job asked for before it is done.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// The handle to the writer thread.
#[derive(Clone)]
pub struct SessionWriter {
    tx: Sender<Job>,
}

impl SessionWriter {
    pub fn start() -> std::io::Result<SessionWriter> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("srs-writer".into())
            .spawn(move || run(rx))?;
        Ok(SessionWriter { tx })
    }

    /// Writes `bytes` to `path` (failures are logged: the update is merged
    /// all the same, only its raw copy is missing).
    pub fn file(&self, path: PathBuf, bytes: Vec<u8>) {
        let _ = self.tx.send(Job::File { path, bytes });
    }

    /// Rewrites `incoming.json` in `dir`.
    pub fn incoming(&self, dir: PathBuf, meta: RecordingMeta) {
        let _ = self.tx.send(Job::Incoming {
            dir,
            meta: Box::new(meta),
        });
    }

    /// Returns once every write asked for before is done (before a
    /// session's directory is published or removed).
    pub async fn flush(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.tx.send(Job::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

fn run(rx: Receiver<Job>) {
    while let Ok(job) = rx.recv() {
        match job {
            Job::File { path, bytes } => {
                if let Err(e) = std::fs::write(&path, bytes) {
                    tracing::warn!(path = %path.display(), error = %e, "cannot keep metadata update");
                }
            }
            Job::Incoming { dir, meta } => {
                if let Err(e) = crate::store::recover::write_incoming(&dir, &meta) {
                    tracing::debug!(dir = %dir.display(), error = %e, "cannot rewrite incoming.json");
                }
            }
            Job::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_land_in_the_order_asked_and_a_flush_waits_for_them() {
        let dir = tempfile::tempdir().unwrap();
        let w = SessionWriter::start().unwrap();
        for n in 0..50 {
            w.file(dir.path().join(format!("u-{n}.xml")), vec![b'x'; n]);
            w.incoming(
                dir.path().to_path_buf(),
                RecordingMeta {
                    call_id: format!("update {n}"),
                    ..RecordingMeta::default()
                },
            );
        }
        w.flush().await;
        assert_eq!(
            std::fs::read(dir.path().join("u-49.xml")).unwrap().len(),
            49
        );
        let last: RecordingMeta =
            serde_json::from_slice(&std::fs::read(dir.path().join("incoming.json")).unwrap())
                .unwrap();
        assert_eq!(last.call_id, "update 49", "the newest one stays");
        // A directory gone (published meanwhile): logged, the thread goes on.
        w.incoming(dir.path().join("gone"), RecordingMeta::default());
        w.flush().await;
    }
}
