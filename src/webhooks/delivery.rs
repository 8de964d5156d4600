//! The delivery thread (`srs-webhooks`): its own single-threaded runtime
//! and HTTP client (hyper-util's client over hyper 1; HTTPS through
//! hyper-rustls on rustls's `ring` provider with the system's roots). It
//! gets attempts from the events thread, which bounds how many are in
//! flight per receiver, and hands every outcome back to it. A receiver
//! that hangs holds one of its own slots for `timeout_ms`, nothing else.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::mpsc;

use super::outbox::Delivery;
use super::{sign, WebhookConfig};

/// Bytes of a receiver's answer read at most (then the connection is
/// dropped): its body is not used.
const MAX_ANSWER: usize = 64 << 10;

/// One attempt to make.
#[derive(Debug)]
pub struct Attempt {
    pub delivery: Delivery,
    pub hook: Arc<WebhookConfig>,
}

/// How an attempt went: the status of a 2xx, or why it failed.
pub type Outcome = Result<u16, String>;

/// The handle to the delivery thread.
#[derive(Clone)]
pub struct Deliverer {
    tx: mpsc::UnboundedSender<Attempt>,
}

type HttpClient = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

fn client() -> HttpClient {
    use tokio_rustls::rustls;
    let builder = match hyper_rustls::HttpsConnectorBuilder::new().with_native_roots() {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "no system CA certificates: https:// webhooks will fail their handshake");
            // rustls is built with the `ring` provider only, its default.
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(
                rustls::ClientConfig::builder()
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
            )
        }
    };
    let https = builder.https_or_http().enable_http1().build();
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(8)
        .build(https)
}

impl Deliverer {
    /// Starts the thread; `done` gets each attempt's delivery id, url and
    /// outcome.
    pub fn start(
        done: impl Fn(String, String, Outcome) + Send + Sync + 'static,
    ) -> std::io::Result<Deliverer> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Attempt>();
        let done = Arc::new(done);
        // Built here, before the server listens: its descriptors (epoll,
        // waker) are part of the resting count.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("srs-webhooks".into())
            .spawn(move || {
                crate::http::lower_priority();
                rt.block_on(async move {
                    let client = client();
                    while let Some(a) = rx.recv().await {
                        let (client, done) = (client.clone(), done.clone());
                        tokio::spawn(async move {
                            let (id, url) = (a.delivery.id.clone(), a.delivery.url.clone());
                            let outcome = attempt(&client, &a).await;
                            done(id, url, outcome);
                        });
                    }
                });
            })?;
        Ok(Deliverer { tx })
    }

    /// Hands an attempt to the thread; false if it is gone.
    pub fn send(&self, a: Attempt) -> bool {
        self.tx.send(a).is_ok()
    }
}

/// POSTs one delivery within the hook's timeout.
async fn attempt(client: &HttpClient, a: &Attempt) -> Outcome {
    let d = &a.delivery;
    let body = Bytes::from(d.body.clone());
    let req = hyper::Request::post(d.url.as_str())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(
            hyper::header::USER_AGENT,
            concat!("srs/", env!("CARGO_PKG_VERSION")),
        )
        .header("X-Srs-Event", d.event.as_str())
        .header("X-Srs-Delivery", d.id.as_str())
        .header("X-Srs-Signature", sign(&a.hook.secret, &body))
        .body(Full::new(body))
        .map_err(|e| format!("bad request: {e}"))?;
    let timeout = Duration::from_millis(a.hook.timeout_ms.max(1));
    let run = async {
        let resp = client
            .request(req)
            .await
            .map_err(|e| format!("{e}: {}", source_chain(&e)))?;
        let status = resp.status();
        // Read (a bounded part of) the answer so the connection can be reused.
        let mut body = resp.into_body();
        let mut read = 0usize;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => {
                    read += f.data_ref().map_or(0, |d| d.len());
                    if read > MAX_ANSWER {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        if status.is_success() {
            Ok(status.as_u16())
        } else {
            Err(format!("HTTP {}", status.as_u16()))
        }
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = Vec::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push(s.to_string());
        cur = s.source();
    }
    out.join(": ")
}
