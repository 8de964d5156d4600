//! The retention job of `srs serve`: a thread of its own (`srs-retention`,
//! nice 10), never the SIP task, that applies the `[[retention]]` rules
//! once at start and then every `lifecycle.retention_interval` seconds.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use super::{Lifecycle, RetentionRule, Who};

/// The running job; dropping it stops the thread after its current run.
pub struct RetentionJob {
    _stop: std::sync::mpsc::Sender<()>,
}

/// Starts the job. With no rule, nothing is started (`None`).
pub fn start(
    life: Lifecycle,
    rules: Vec<RetentionRule>,
    every: Duration,
) -> std::io::Result<Option<RetentionJob>> {
    if rules.is_empty() || every.is_zero() {
        return Ok(None);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("srs-retention".into())
        .spawn(move || {
            // SAFETY: plain syscalls on the calling thread; a failure only
            // leaves the thread at normal priority.
            unsafe {
                let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
                libc::setpriority(libc::PRIO_PROCESS, tid, 10);
            }
            run(&life, &rules, every, &rx)
        })?;
    Ok(Some(RetentionJob { _stop: tx }))
}

fn run(life: &Lifecycle, rules: &[RetentionRule], every: Duration, stop: &Receiver<()>) {
    loop {
        let t = std::time::Instant::now();
        match life.retention_run(rules, chrono::Utc::now(), &Who::retention(), false) {
            Ok(r) => tracing::info!(
                deleted = r.deleted.len(),
                held = r.held.len(),
                found_missing = r.found_missing.len(),
                ms = t.elapsed().as_millis() as u64,
                "retention run"
            ),
            Err(super::LifecycleError::NoIndex(_)) => {}
            Err(e) => tracing::error!(error = %e, "retention run failed; retried at the next run"),
        }
        match stop.recv_timeout(every) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
    }
}
