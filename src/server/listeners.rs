//! The SIP listeners: TCP and TLS accept loops, and per connection a
//! reader task (framing by Content-Length) and a writer task. Which
//! connections may stay open is decided by the connection table
//! ([`ConnTable`]: head and idle timeouts, per-source and global caps,
//! dialogs exempt); this module carries its verdicts out.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify};
use tokio_rustls::TlsAcceptor;

use super::os::out_of_descriptors;
use crate::sip::conns::{Admission, ConnTable, LogEvery};
use crate::sip::core::{ConnId, Transport};
use crate::sip::message::{FramingError, StreamFramer};

/// What connection tasks (TCP and TLS) tell the core task.
pub enum ConnInput {
    Opened(ConnId, mpsc::UnboundedSender<Bytes>),
    Message(ConnId, Transport, SocketAddr, Bytes),
    /// The head of a message over the size cap: answered 513, then the
    /// connection closes.
    Oversized(ConnId, Transport, SocketAddr, Bytes),
    Closed(ConnId),
}

/// The open TCP/TLS connections, shared by the accept tasks (caps), the
/// connection tasks (their clocks) and the core task (timeouts, dialogs).
/// Each entry's handle closes its connection.
pub type Conns = Arc<Mutex<ConnTable<Arc<Notify>>>>;

pub fn lock_conns(conns: &Conns) -> std::sync::MutexGuard<'_, ConnTable<Arc<Notify>>> {
    conns.lock().unwrap_or_else(|e| e.into_inner())
}

/// Forgets a connection in the table however its task ends.
pub struct ConnGuard {
    conns: Conns,
    id: ConnId,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        lock_conns(&self.conns).closed(self.id);
    }
}

/// Pending connections the kernel may queue for the SIP/TCP and TLS
/// listeners (capped by net.core.somaxconn). tokio's default, 128, made
/// connections from a burst (an SBC failing over, a flood) wait a full
/// SYN retransmission (1 s) each time the queue overflowed.
const STREAM_BACKLOG: u32 = 4096;

/// A TCP listener with a deep accept queue.
pub async fn listen_stream(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(STREAM_BACKLOG)
}

/// How long a TLS client may take over its handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts SIP/TCP connections, or SIP/TLS ones when given an acceptor;
/// each gets a reader and a writer task. Each connection is admitted by the
/// table first (per-source and global caps); the connections it gives up
/// for a newcomer are closed, a refused one is closed at once. Failures
/// (EMFILE when descriptors run out) are logged once per 10 s with how
/// many were held back, never once per attempt.
pub async fn accept_streams(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    ids: Arc<AtomicU64>,
    tx: mpsc::UnboundedSender<ConnInput>,
    conns: Conns,
) {
    let kind = if tls.is_some() { "SIP/TLS" } else { "SIP/TCP" };
    let mut accept_log = LogEvery::new(Duration::from_secs(10));
    let mut cap_log = LogEvery::new(Duration::from_secs(10));
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                let id = ids.fetch_add(1, Ordering::Relaxed);
                let close = Arc::new(Notify::new());
                let now = Instant::now();
                let admission = lock_conns(&conns).admit(now, id, addr.ip(), close.clone());
                match admission {
                    Admission::Refused => {
                        if let Some(held) = cap_log.hit(now) {
                            tracing::warn!(%addr, held_back = held, transport = kind,
                                "connection refused: every connection carries a dialog at sip.max_connections");
                        }
                        continue; // `stream` is dropped: closed
                    }
                    Admission::Open(given_up) => {
                        for (_, h, why) in &given_up {
                            h.notify_one();
                            if let Some(held) = cap_log.hit(now) {
                                tracing::warn!(%addr, held_back = held, transport = kind, cap = why.as_str(),
                                    "connection cap reached: closing the least recently active connection without a dialog");
                            }
                        }
                    }
                }
                let guard = ConnGuard {
                    conns: conns.clone(),
                    id,
                };
                let _ = stream.set_nodelay(true);
                let tx = tx.clone();
                match &tls {
                    None => {
                        tokio::spawn(serve_stream(stream, Transport::Tcp, addr, tx, guard, close));
                    }
                    Some(acceptor) => {
                        let handshake = acceptor.accept(stream);
                        tokio::spawn(async move {
                            let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, handshake);
                            tokio::select! {
                                r = handshake => match r {
                                    Ok(Ok(s)) => {
                                        serve_stream(s, Transport::Tls, addr, tx, guard, close).await
                                    }
                                    Ok(Err(e)) => {
                                        tracing::warn!(%addr, error = %e, "SIP/TLS handshake failed")
                                    }
                                    Err(_) => tracing::warn!(%addr, "SIP/TLS handshake timed out"),
                                },
                                _ = close.notified() => {}
                            }
                        });
                    }
                }
            }
            Err(e) => {
                if let Some(held) = accept_log.hit(Instant::now()) {
                    let hint = if out_of_descriptors(e.raw_os_error()) {
                        "out of file descriptors: raise the limit or lower sip.max_connections"
                    } else {
                        "accept failed"
                    };
                    tracing::warn!(error = %e, held_back = held, transport = kind, "{hint}");
                }
                // The connection waits in the backlog; try again shortly.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Reads SIP messages framed by Content-Length from one connection and
/// writes what the core sends to it; reports its clocks to the table, and
/// ends when the table closes it (`close`).
async fn serve_stream<S>(
    stream: S,
    transport: Transport,
    addr: SocketAddr,
    tx: mpsc::UnboundedSender<ConnInput>,
    guard: ConnGuard,
    close: Arc<Notify>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let id = guard.id;
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Bytes>();
    if tx.send(ConnInput::Opened(id, out_tx)).is_err() {
        return;
    }
    let writer = tokio::spawn(async move {
        while let Some(b) = out_rx.recv().await {
            if wr.write_all(&b).await.is_err() || wr.flush().await.is_err() {
                break;
            }
        }
    });
    let mut framer = StreamFramer::new();
    let mut buf = vec![0u8; 16 * 1024];
    let mut answer_pending = false;
    'read: loop {
        let n = tokio::select! {
            r = rd.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
            _ = close.notified() => break,
        };
        framer.push(&buf[..n]);
        let mut messages = 0;
        loop {
            match framer.next_message() {
                Ok(Some(m)) => {
                    messages += 1;
                    if tx.send(ConnInput::Message(id, transport, addr, m)).is_err() {
                        break 'read;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(%addr, transport = transport.as_str(), error = %e,
                        "closing SIP connection");
                    if let FramingError::Oversized(head) = e {
                        // Answered 513 by the core through the writer,
                        // which then ends with the connection (below).
                        let _ = tx.send(ConnInput::Oversized(id, transport, addr, head));
                        answer_pending = true;
                    }
                    break 'read;
                }
            }
        }
        lock_conns(&guard.conns).received(Instant::now(), id, messages, framer.pending());
    }
    let _ = tx.send(ConnInput::Closed(id));
    if answer_pending {
        // The core drops its sender at Closed, after queueing the answer:
        // the writer ends once it has written it (or gives up quickly).
        let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    } else {
        writer.abort();
    }
    drop(guard);
}
