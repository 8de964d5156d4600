//! The encoder pool: the threads that make stereo and Opus files after
//! calls, off the packet path.

use std::sync::{Arc, Mutex};

/// Work for the encoder threads.
type EncodeJob = Box<dyn FnOnce() + Send>;

/// The threads that make stereo and Opus files after calls: `n` of them,
/// each at nice 10, so that on a saturated machine the media threads
/// (nice 0) always run first and encoding finishes later instead.
pub struct EncoderPool {
    tx: std::sync::mpsc::Sender<EncodeJob>,
    /// Jobs queued or running (the `srs_encoder_backlog` metric).
    queued: Arc<std::sync::atomic::AtomicUsize>,
}

impl EncoderPool {
    /// Starts `n` threads (at least one).
    pub fn start(n: usize) -> std::io::Result<EncoderPool> {
        let (tx, rx) = std::sync::mpsc::channel::<EncodeJob>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..n.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("srs-encoder-{i}"))
                .spawn(move || {
                    // SAFETY: plain syscalls on the calling thread; a
                    // failure only leaves the thread at normal priority.
                    unsafe {
                        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
                        libc::setpriority(libc::PRIO_PROCESS, tid, 10);
                    }
                    loop {
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        match job {
                            // A panic loses that recording's extra files
                            // (its caller is told), never the thread.
                            Ok(job) => {
                                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                            }
                            Err(_) => return, // the server is gone
                        }
                    }
                })?;
        }
        Ok(EncoderPool {
            tx,
            queued: Arc::default(),
        })
    }

    /// Jobs queued or running now.
    pub fn backlog(&self) -> usize {
        self.queued.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Runs `job` on an encoder thread and returns what it returns; None
    /// when it panicked or no encoder thread is left.
    pub async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        // Counted down however the job ends: run, panicked (unwinds
        // through), or dropped unrun (no encoder thread left).
        struct Done(Arc<std::sync::atomic::AtomicUsize>);
        impl Drop for Done {
            fn drop(&mut self) {
                self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        self.queued
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let counted = Done(self.queued.clone());
        let job: EncodeJob = Box::new(move || {
            let _counted = counted;
            let _ = tx.send(job());
        });
        if self.tx.send(job).is_err() {
            tracing::error!("no encoder thread left");
            return None;
        }
        rx.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::EncoderPool;

    #[tokio::test]
    async fn a_job_runs_on_a_low_priority_thread_and_a_panic_loses_only_that_job() {
        let pool = EncoderPool::start(1).unwrap();
        let (name, nice) = pool
            .run(|| {
                // SAFETY: plain syscalls on the calling thread.
                let nice = unsafe {
                    let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
                    libc::getpriority(libc::PRIO_PROCESS, tid)
                };
                (std::thread::current().name().map(str::to_string), nice)
            })
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("srs-encoder-0"));
        assert_eq!(nice, 10);
        let r: Option<()> = pool.run(|| panic!("a broken file")).await;
        assert_eq!(r, None, "the caller is told");
        assert_eq!(pool.run(|| 7).await, Some(7), "the one thread survived");
    }
}
