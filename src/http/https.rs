//! HTTPS for the API: `[http] cert` and `key` (PEM, like `[tls]` for SIP;
//! the same rustls set-up, TLS 1.2 and 1.3, `http/1.1` by ALPN).
//!
//! The handshake runs inside the connection's first reads and writes
//! ([`ApiIo`]), not in the accept loop: a client that connects and says
//! nothing holds only its own connection slot (until `idle_timeout_ms`),
//! never the accepting of others. A client that speaks plain HTTP to the
//! HTTPS port is told so in one plain `400` and closed: no request of
//! it is read or served.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use super::Conn;
use crate::config::{HttpConfig, TlsConfig};
use crate::tls::TlsError;

/// The acceptor for `[http] cert`/`key`, `None` when unset.
pub fn acceptor(http: &HttpConfig) -> Result<Option<TlsAcceptor>, TlsError> {
    let (Some(cert), Some(key)) = (&http.cert, &http.key) else {
        return Ok(None);
    };
    let base = crate::tls::server_config(&TlsConfig {
        listen: http.listen,
        cert: Some(cert.clone()),
        key: Some(key.clone()),
        client_ca: None,
    })?;
    let mut config: ServerConfig = (*base).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}

/// The body of the plain answer to plain HTTP on the HTTPS port.
const PLAIN_REFUSAL: &str =
    r#"{"error":"this port speaks HTTPS: use https:// (plain HTTP is refused)"}"#;

/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// A connection of the API: plain, or TLS once its handshake is done.
pub enum ApiIo {
    Plain(Conn),
    Tls(TlsState),
}

pub enum TlsState {
    /// Waiting for the first byte, to tell TLS from plain HTTP.
    Sniffing(Option<Conn>, TlsAcceptor),
    Handshaking(Box<tokio_rustls::Accept<Conn>>),
    Ready(Box<tokio_rustls::server::TlsStream<Conn>>),
    Closed,
}

impl ApiIo {
    pub fn new(conn: Conn, tls: Option<&TlsAcceptor>) -> ApiIo {
        match tls {
            None => ApiIo::Plain(conn),
            Some(a) => ApiIo::Tls(TlsState::Sniffing(Some(conn), a.clone())),
        }
    }

    /// Drives the handshake; `Ready(Ok)` once the TLS stream is usable.
    fn handshake(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let ApiIo::Tls(state) = self else {
            return Poll::Ready(Ok(()));
        };
        loop {
            match state {
                TlsState::Ready(_) => return Poll::Ready(Ok(())),
                TlsState::Closed => {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        "HTTPS connection closed",
                    )))
                }
                TlsState::Sniffing(conn, acceptor) => {
                    let Some(c) = conn.as_mut() else {
                        *state = TlsState::Closed;
                        continue;
                    };
                    let mut first = [0u8; 1];
                    let mut buf = ReadBuf::new(&mut first);
                    match c.stream.poll_peek(cx, &mut buf) {
                        Poll::Pending => match c.stalled::<()>(cx) {
                            Poll::Ready(Err(e)) => {
                                *state = TlsState::Closed;
                                return Poll::Ready(Err(e));
                            }
                            _ => return Poll::Pending,
                        },
                        Poll::Ready(Err(e)) => {
                            *state = TlsState::Closed;
                            return Poll::Ready(Err(e));
                        }
                        Poll::Ready(Ok(0)) => {
                            *state = TlsState::Closed;
                        }
                        Poll::Ready(Ok(_)) if first[0] == TLS_HANDSHAKE => {
                            let (Some(c), a) = (conn.take(), acceptor.clone()) else {
                                *state = TlsState::Closed;
                                continue;
                            };
                            *state = TlsState::Handshaking(Box::new(a.accept(c)));
                        }
                        Poll::Ready(Ok(_)) => {
                            refuse_plain(c);
                            *state = TlsState::Closed;
                            return Poll::Ready(Err(std::io::Error::new(
                                std::io::ErrorKind::InvalidData,
                                "plain HTTP on the HTTPS port",
                            )));
                        }
                    }
                }
                TlsState::Handshaking(accept) => match Pin::new(accept.as_mut()).poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(s)) => *state = TlsState::Ready(Box::new(s)),
                    Poll::Ready(Err(e)) => {
                        tracing::debug!(error = %e, "HTTPS handshake failed");
                        *state = TlsState::Closed;
                        return Poll::Ready(Err(e));
                    }
                },
            }
        }
    }
}

/// Answers a plain HTTP request on the HTTPS port without waiting: what
/// the client sent (already arrived, since its first byte has) is read
/// first, so that closing does not reset the connection and destroy the
/// answer in flight.
fn refuse_plain(c: &mut Conn) {
    let mut sink = [0u8; 4096];
    for _ in 0..16 {
        match c.stream.try_read(&mut sink) {
            Ok(n) if n > 0 => continue,
            _ => break,
        }
    }
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{PLAIN_REFUSAL}",
        PLAIN_REFUSAL.len()
    );
    let _ = c.stream.try_write(answer.as_bytes());
    tracing::debug!("plain HTTP refused on the HTTPS port");
}

impl AsyncRead for ApiIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.handshake(cx))?;
        match this {
            ApiIo::Plain(c) => Pin::new(c).poll_read(cx, buf),
            ApiIo::Tls(TlsState::Ready(s)) => Pin::new(s.as_mut()).poll_read(cx, buf),
            ApiIo::Tls(_) => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncWrite for ApiIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        std::task::ready!(this.handshake(cx))?;
        match this {
            ApiIo::Plain(c) => Pin::new(c).poll_write(cx, buf),
            ApiIo::Tls(TlsState::Ready(s)) => Pin::new(s.as_mut()).poll_write(cx, buf),
            ApiIo::Tls(_) => Poll::Ready(Ok(0)),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        std::task::ready!(this.handshake(cx))?;
        match this {
            ApiIo::Plain(c) => Pin::new(c).poll_write_vectored(cx, bufs),
            ApiIo::Tls(TlsState::Ready(s)) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            ApiIo::Tls(_) => Poll::Ready(Ok(0)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ApiIo::Plain(c) => c.is_write_vectored(),
            ApiIo::Tls(TlsState::Ready(s)) => s.is_write_vectored(),
            ApiIo::Tls(_) => false,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ApiIo::Plain(c) => Pin::new(c).poll_flush(cx),
            ApiIo::Tls(TlsState::Ready(s)) => Pin::new(s.as_mut()).poll_flush(cx),
            ApiIo::Tls(_) => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ApiIo::Plain(c) => Pin::new(c).poll_shutdown(cx),
            ApiIo::Tls(TlsState::Ready(s)) => Pin::new(s.as_mut()).poll_shutdown(cx),
            ApiIo::Tls(_) => Poll::Ready(Ok(())),
        }
    }
}
