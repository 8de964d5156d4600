//! Recordings copied to an object store (issue 16): anything that speaks
//! S3 (AWS S3, MinIO, Ceph RGW, ...), configured by `[storage.object]`.
//!
//! Key layout: each file of a recording is stored under
//! `<prefix>/<path>/<file>`, where `<path>` is the recording's path in the
//! drop (`YYYY/MM/DD/<recording-id>`) and `<file>` the name it has there
//! (the audio files as stored, encrypted at rest included, `metadata.json`,
//! `metadata.xml`, `call-events.json`, `hold.json`, ...): the bucket mirrors
//! the drop, and a recording's objects share one prefix.
//!
//! After publication a recording is queued for upload in the drop itself
//! (`.uploads/<recording-id>`, a file holding its path: the queue survives
//! restarts and object-store outages). The upload thread ([`Uploader`])
//! takes the oldest due entry, uploads every file (multipart for the large
//! ones, in parts of [`PART_SIZE`]), reads each object back to check its
//! size and SHA-256 against the local file (and against the hash
//! `metadata.json` published for it, issue 15), records where each file is
//! in the index (`recording_objects`), and only then removes the entry. A
//! failure (store unreachable, index down, a mismatch) leaves the entry;
//! it is retried with a backoff doubling from 1 s to [`MAX_BACKOFF`].
//!
//! `keep_local`: `true` keeps the drop's copy; `false` removes it once the
//! upload is verified and recorded; a number of days removes it that long
//! after publication (checked by the upload thread every minute). Without a
//! local copy, the API serves a recording's files from the object store
//! (streamed, HTTP Range included; decrypted when encrypted at rest).

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use hyper_rustls::ConfigBuilderExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::config::{KeepLocal, ObjectConfig};
use crate::recording::RecordingMeta;
use crate::store::IndexAt;

/// The queue's directory inside the drop.
pub const QUEUE_DIR: &str = ".uploads";
/// Recordings uploaded whose local copy goes later (`keep_local = <days>`).
pub const DONE_DIR: &str = ".uploads/done";
/// Multipart upload part size (S3's minimum is 5 MiB).
pub const PART_SIZE: usize = 8 << 20;
/// Files smaller than this are sent in one request.
const SINGLE_PUT_MAX: u64 = PART_SIZE as u64;
/// Longest wait between two tries of one upload.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How long one request to the store may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors of the object store.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("storage.object.url {0:?}: expected s3://BUCKET[/PREFIX]")]
    Url(String),
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{key}: {what}")]
    Mismatch { key: String, what: String },
    #[error("index: {0}")]
    Index(String),
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ObjectError + 'a {
    move |source| ObjectError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The HTTP client of the object store: hyper-util's, already built for
/// the webhooks, with rustls on the `ring` provider (object_store's own
/// client would bring reqwest and aws-lc-rs).
#[derive(Debug)]
struct Connector;

#[derive(Debug)]
struct Service {
    client: hyper_util::client::legacy::Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        object_store::client::HttpRequestBody,
    >,
}

#[async_trait::async_trait]
impl object_store::client::HttpService for Service {
    async fn call(
        &self,
        req: object_store::client::HttpRequest,
    ) -> Result<object_store::client::HttpResponse, object_store::client::HttpError> {
        use http_body_util::BodyExt;
        use object_store::client::{HttpError, HttpErrorKind, HttpResponseBody};
        let resp = match tokio::time::timeout(REQUEST_TIMEOUT, self.client.request(req)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                let kind = if e.is_connect() {
                    HttpErrorKind::Connect
                } else {
                    HttpErrorKind::Request
                };
                return Err(HttpError::new(kind, e));
            }
            Err(e) => return Err(HttpError::new(HttpErrorKind::Timeout, e)),
        };
        let (parts, body) = resp.into_parts();
        let body = body.map_err(|e| HttpError::new(HttpErrorKind::Interrupted, e));
        Ok(http::Response::from_parts(
            parts,
            HttpResponseBody::new(body),
        ))
    }
}

impl object_store::client::HttpConnector for Connector {
    fn connect(
        &self,
        _options: &object_store::ClientOptions,
    ) -> object_store::Result<object_store::client::HttpClient> {
        let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.set_nodelay(true);
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| object_store::Error::Generic {
            store: "S3",
            source: Box::new(e),
        })?
        .with_native_roots()
        .map_err(|e| object_store::Error::Generic {
            store: "S3",
            source: Box::new(e),
        })?
        .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(https);
        Ok(object_store::client::HttpClient::new(Service { client }))
    }
}

/// A configured object store and where recordings go in it.
#[derive(Clone)]
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    /// `s3://bucket/prefix` as configured (for logs).
    url: String,
    pub keep_local: KeepLocal,
}

impl std::fmt::Debug for Objects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Objects").field("url", &self.url).finish()
    }
}

/// `s3://bucket/prefix` -> (bucket, prefix without slashes at the ends).
pub fn parse_url(url: &str) -> Result<(String, String), ObjectError> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| ObjectError::Url(url.to_string()))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(ObjectError::Url(url.to_string()));
    }
    Ok((bucket.to_string(), prefix.trim_matches('/').to_string()))
}

impl Objects {
    /// The store of `[storage.object]`: credentials from the config, else
    /// the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_SESSION_TOKEN`, `AWS_REGION`, as the AWS tools read them).
    pub fn from_config(cfg: &ObjectConfig) -> Result<Objects, ObjectError> {
        let (bucket, prefix) = parse_url(&cfg.url)?;
        let mut b = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(&bucket)
            .with_http_connector(Connector)
            .with_retry(object_store::RetryConfig {
                backoff: object_store::BackoffConfig {
                    init_backoff: Duration::from_millis(200),
                    max_backoff: Duration::from_secs(2),
                    base: 2.0,
                },
                // The upload queue retries with its own backoff: a request
                // gives up soon rather than holding the thread.
                max_retries: 2,
                retry_timeout: Duration::from_secs(10),
            });
        if let Some(r) = &cfg.region {
            b = b.with_region(r);
        }
        if let Some(e) = &cfg.endpoint {
            b = b
                .with_endpoint(e)
                .with_allow_http(e.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        if let Some(k) = &cfg.access_key_id {
            b = b.with_access_key_id(k);
        }
        if let Some(k) = &cfg.secret_access_key {
            b = b.with_secret_access_key(k);
        }
        Ok(Objects {
            store: Arc::new(b.build()?),
            prefix,
            url: cfg.url.clone(),
            keep_local: cfg.keep_local,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The key of file `name` of the recording at `path` in the drop.
    pub fn key(&self, path: &str, name: &str) -> String {
        if self.prefix.is_empty() {
            format!("{path}/{name}")
        } else {
            format!("{}/{path}/{name}", self.prefix)
        }
    }

    /// Uploads the local file at `local` to `key` (multipart past
    /// [`SINGLE_PUT_MAX`]); returns its size and SHA-256, computed on the
    /// bytes sent.
    pub async fn upload(&self, key: &str, local: &Path) -> Result<(u64, String), ObjectError> {
        use tokio::io::AsyncReadExt;
        let loc = ObjectPath::from(key);
        let mut file = tokio::fs::File::open(local)
            .await
            .map_err(io("opening", local))?;
        let len = file.metadata().await.map_err(io("reading", local))?.len();
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        if len <= SINGLE_PUT_MAX {
            let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
            file.read_to_end(&mut buf)
                .await
                .map_err(io("reading", local))?;
            ctx.update(&buf);
            let size = buf.len() as u64;
            self.store.put(&loc, Bytes::from(buf).into()).await?;
            return Ok((size, hex(ctx.finish().as_ref())));
        }
        let upload = self.store.put_multipart(&loc).await?;
        let mut w = object_store::WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut size = 0u64;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match file.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    w.abort().await.ok();
                    return Err(io("reading", local)(e));
                }
            };
            ctx.update(&buf[..n]);
            size += n as u64;
            w.wait_for_capacity(2).await?;
            w.write(&buf[..n]);
        }
        w.finish().await?;
        Ok((size, hex(ctx.finish().as_ref())))
    }

    /// Reads the object back whole and checks its size and SHA-256.
    pub async fn verify(&self, key: &str, size: u64, sha256: &str) -> Result<(), ObjectError> {
        let got = self.store.get(&ObjectPath::from(key)).await?;
        let mut stream = got.into_stream();
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut n = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            n += chunk.len() as u64;
            ctx.update(&chunk);
        }
        let h = hex(ctx.finish().as_ref());
        if n != size || h != sha256 {
            return Err(ObjectError::Mismatch {
                key: key.to_string(),
                what: format!(
                    "read back {n} bytes, sha256 {h}; sent {size} bytes, sha256 {sha256}"
                ),
            });
        }
        Ok(())
    }

    /// The size of the object at `key`.
    pub async fn size(&self, key: &str) -> Result<u64, ObjectError> {
        Ok(self.store.head(&ObjectPath::from(key)).await?.size)
    }

    /// The bytes of `key` in `range` (all of it for `None`), streamed.
    pub async fn stream(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<
        futures_util::stream::BoxStream<'static, Result<Bytes, object_store::Error>>,
        ObjectError,
    > {
        let opts = object_store::GetOptions {
            range: range.map(object_store::GetRange::Bounded),
            ..Default::default()
        };
        Ok(self
            .store
            .get_opts(&ObjectPath::from(key), opts)
            .await?
            .into_stream())
    }

    /// Copies the object at `key` into the file `to` (an encrypted file
    /// is decrypted from a local copy).
    pub async fn download(&self, key: &str, to: &Path) -> Result<u64, ObjectError> {
        use tokio::io::AsyncWriteExt;
        let mut out = tokio::fs::File::create(to)
            .await
            .map_err(io("creating", to))?;
        let mut s = self.stream(key, None).await?;
        let mut n = 0u64;
        while let Some(chunk) = s.next().await {
            let chunk = chunk?;
            n += chunk.len() as u64;
            out.write_all(&chunk).await.map_err(io("writing", to))?;
        }
        out.flush().await.map_err(io("writing", to))?;
        Ok(n)
    }

    /// Deletes every object of the recording at `path` (its prefix).
    pub async fn delete_recording(&self, path: &str) -> Result<usize, ObjectError> {
        if path.is_empty() {
            return Ok(0);
        }
        let prefix = ObjectPath::from(self.key(path, "").trim_end_matches('/'));
        let metas: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&prefix))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        for m in &metas {
            match self.store.delete(&m.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(metas.len())
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Queues the recording at `path` for upload (`.uploads/<id>` in the
/// drop, written whole then renamed: an entry is never half there).
pub fn enqueue(root: &Path, meta: &RecordingMeta) -> std::io::Result<()> {
    let dir = root.join(QUEUE_DIR);
    std::fs::create_dir_all(&dir)?;
    let tmp = dir.join(format!(".{}.tmp", meta.recording_id));
    std::fs::write(&tmp, &meta.path)?;
    std::fs::rename(&tmp, dir.join(&meta.recording_id))
}

/// One waiting upload.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Pending {
    pub recording_id: String,
    pub path: String,
    /// Seconds since it was queued.
    pub age_s: u64,
}

/// The waiting uploads, oldest first (`srs uploads`).
pub fn backlog(root: &Path) -> std::io::Result<Vec<Pending>> {
    let dir = root.join(QUEUE_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let now = std::time::SystemTime::now();
    let mut out: Vec<(std::time::SystemTime, Pending)> = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !e.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let Ok(path) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        let queued = e.metadata().and_then(|m| m.modified()).unwrap_or(now);
        out.push((
            queued,
            Pending {
                recording_id: name,
                path: path.trim().to_string(),
                age_s: now.duration_since(queued).unwrap_or_default().as_secs(),
            },
        ));
    }
    out.sort_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| a.1.recording_id.cmp(&b.1.recording_id))
    });
    Ok(out.into_iter().map(|(_, p)| p).collect())
}

/// A path inside the drop made only of plain components.
fn plain(path: &str) -> bool {
    !path.is_empty()
        && Path::new(path)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
}

/// Where each file of a recording is, as the index records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    pub name: String,
    pub key: String,
    pub size: u64,
    pub sha256: String,
}

/// Records `files` of `recording_id` in the index (replacing earlier rows).
pub fn record(
    db: &crate::store::db::Db,
    recording_id: &str,
    files: &[StoredFile],
) -> Result<(), crate::store::db::DbError> {
    let tx = db.immediate_transaction()?;
    let now = crate::store::query::utc_millis(chrono::Utc::now());
    for f in files {
        tx.execute(
            "INSERT INTO recording_objects (recording_id, name, key, size, sha256, uploaded_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (recording_id, name) DO UPDATE SET key = excluded.key,
                 size = excluded.size, sha256 = excluded.sha256, uploaded_at = excluded.uploaded_at",
            crate::params![recording_id, f.name, f.key, f.size, f.sha256, now],
        )?;
    }
    tx.commit()
}

/// Whether the index records copies of `recording_id` in an object store.
pub fn has_copies(
    db: &crate::store::db::Db,
    recording_id: &str,
) -> Result<bool, crate::store::db::DbError> {
    let n: i64 = db.query_row(
        "SELECT COUNT(*) FROM recording_objects WHERE recording_id = ?1",
        crate::params![recording_id],
        |r| r.get(0),
    )?;
    Ok(n > 0)
}

/// The key of file `name` of `recording_id` in the object store, if the
/// index records one.
pub fn stored_key(
    db: &crate::store::db::Db,
    recording_id: &str,
    name: &str,
) -> Result<Option<(String, u64)>, crate::store::db::DbError> {
    use crate::store::db::OptionalExt;
    db.query_row(
        "SELECT key, size FROM recording_objects WHERE recording_id = ?1 AND name = ?2",
        crate::params![recording_id, name],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
}

/// Recordings the upload thread transfers at once.
pub const UPLOADS_AT_ONCE: usize = 4;

/// The upload thread's handle: wakes it, reads its backlog.
#[derive(Clone, Debug)]
pub struct Uploader {
    wake: std::sync::mpsc::SyncSender<()>,
    backlog: Arc<AtomicU64>,
}

impl Uploader {
    /// Starts the upload thread for the drop at `root`.
    pub fn start(
        objects: Objects,
        root: PathBuf,
        index: IndexAt,
        backlog_gauge: Option<prometheus_client::metrics::gauge::Gauge>,
    ) -> std::io::Result<Uploader> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let backlog = Arc::new(AtomicU64::new(0));
        let shared = backlog.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("srs-uploads".into())
            .spawn(move || {
                let mut w = Worker {
                    objects,
                    root,
                    index,
                    db: None,
                    retry: HashMap::new(),
                    failing_since: None,
                    logged: None,
                    backlog: shared,
                    gauge: backlog_gauge,
                    next_sweep: Instant::now(),
                };
                w.run(&rt, &rx);
            })?;
        Ok(Uploader { wake: tx, backlog })
    }

    /// Queues `meta` (after its publication) and wakes the thread.
    pub fn enqueue(&self, root: &Path, meta: &RecordingMeta) {
        if let Err(e) = enqueue(root, meta) {
            tracing::error!(recording_id = %meta.recording_id, error = %e,
                "cannot queue the recording for upload to the object store: run `srs uploads --enqueue` for it");
            return;
        }
        self.backlog.fetch_add(1, Ordering::Relaxed);
        let _ = self.wake.try_send(());
    }

    /// Recordings waiting for upload (as last counted).
    pub fn backlog(&self) -> u64 {
        self.backlog.load(Ordering::Relaxed)
    }
}

/// Uploads every file of one queued recording and reads each back to
/// verify it (module doc); `None` when there is nothing to send (a bad
/// queue entry, or the recording deleted meanwhile). Recording the result
/// in the index is the caller's ([`Worker::finish_upload`]).
async fn transfer(
    objects: &Objects,
    root: &Path,
    p: &Pending,
) -> Result<Option<Vec<StoredFile>>, ObjectError> {
    if !plain(&p.path) {
        tracing::error!(recording_id = %p.recording_id, path = %p.path,
                "upload queue entry with a bad path: dropped");
        return Ok(None);
    }
    let dir = root.join(&p.path);
    let meta_path = dir.join(crate::store::drop::METADATA_FILE);
    let meta: RecordingMeta = match std::fs::read(&meta_path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| ObjectError::Mismatch {
            key: meta_path.display().to_string(),
            what: e.to_string(),
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Deleted meanwhile (retention, erasure): nothing to send.
            return Ok(None);
        }
        Err(e) => return Err(io("reading", &meta_path)(e)),
    };
    // The published hashes (issue 15), by stored name.
    let published: HashMap<&str, &str> = meta
        .files
        .iter()
        .filter_map(|f| Some((f.stored_name(), f.sha256.as_deref()?)))
        .collect();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map_err(io("listing", &dir))?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    let mut stored = Vec::with_capacity(names.len());
    for name in names {
        let key = objects.key(&p.path, &name);
        let local = dir.join(&name);
        let (size, sha256) = objects.upload(&key, &local).await?;
        if let Some(want) = published.get(name.as_str()) {
            if *want != sha256 {
                return Err(ObjectError::Mismatch {
                        key,
                        what: format!(
                            "the local file's sha256 {sha256} is not the published {want} (altered in the drop?)"
                        ),
                    });
            }
        }
        objects.verify(&key, size, &sha256).await?;
        stored.push(StoredFile {
            name,
            key,
            size,
            sha256,
        });
    }
    Ok(Some(stored))
}

struct Worker {
    objects: Objects,
    root: PathBuf,
    index: IndexAt,
    db: Option<crate::store::Index>,
    /// recording id -> (tries, next try).
    retry: HashMap<String, (u32, Instant)>,
    failing_since: Option<Instant>,
    logged: Option<Instant>,
    backlog: Arc<AtomicU64>,
    gauge: Option<prometheus_client::metrics::gauge::Gauge>,
    next_sweep: Instant,
}

impl Worker {
    fn run(&mut self, rt: &tokio::runtime::Runtime, wake: &std::sync::mpsc::Receiver<()>) {
        crate::http::lower_priority();
        loop {
            let pending = backlog(&self.root).unwrap_or_default();
            self.set_backlog(pending.len() as u64);
            let now = Instant::now();
            let mut next_due: Option<Instant> = None;
            let mut due = Vec::new();
            for p in &pending {
                match self.retry.get(&p.recording_id) {
                    Some((_, at)) if *at > now => {
                        next_due = Some(next_due.map_or(*at, |n: Instant| n.min(*at)));
                    }
                    _ => due.push(p),
                }
            }
            // UPLOADS_AT_ONCE recordings are transferred at once (a single
            // stream of PUTs and read-backs is bound by round trips: about
            // 5 recordings/s, below what 2,000 calls publish); each is
            // then recorded in the index in turn.
            'chunks: for chunk in due.chunks(UPLOADS_AT_ONCE) {
                let (objects, root) = (&self.objects, &self.root);
                let sent = rt.block_on(futures_util::future::join_all(
                    chunk.iter().map(|p| transfer(objects, root, p)),
                ));
                let mut store_down = false;
                for (p, sent) in chunk.iter().zip(sent) {
                    let done = match sent {
                        Ok(stored) => self.finish_upload(p, stored),
                        Err(e) => Err(e),
                    };
                    match done {
                        Ok(()) => {
                            self.retry.remove(&p.recording_id);
                            let _ = std::fs::remove_file(
                                self.root.join(QUEUE_DIR).join(&p.recording_id),
                            );
                            self.backlog.fetch_sub(1, Ordering::Relaxed);
                            self.healthy();
                        }
                        Err(e) => {
                            let (tries, at) =
                                self.retry.entry(p.recording_id.clone()).or_insert((0, now));
                            *tries += 1;
                            let wait =
                                Duration::from_secs(1u64 << (*tries - 1).min(9)).min(MAX_BACKOFF);
                            *at = Instant::now() + wait;
                            next_due = Some(next_due.map_or(*at, |n: Instant| n.min(*at)));
                            self.fault(&p.recording_id, &e, pending.len());
                            store_down |= matches!(e, ObjectError::Store(_));
                        }
                    }
                }
                if store_down {
                    // The store is down: the rest would fail too.
                    break 'chunks;
                }
            }
            self.retry
                .retain(|id, _| pending.iter().any(|p| &p.recording_id == id));
            if Instant::now() >= self.next_sweep {
                self.sweep();
                self.next_sweep = Instant::now() + Duration::from_secs(60);
            }
            let wait = next_due
                .map(|t| t.saturating_duration_since(Instant::now()))
                .unwrap_or(Duration::from_secs(60))
                .clamp(Duration::from_millis(100), Duration::from_secs(60));
            match wake.recv_timeout(wait) {
                Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    // The server stops; what is queued waits for the next start.
                    return;
                }
            }
        }
    }

    fn set_backlog(&self, n: u64) {
        self.backlog.store(n, Ordering::Relaxed);
        if let Some(g) = &self.gauge {
            g.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    fn healthy(&mut self) {
        if let Some(since) = self.failing_since.take() {
            tracing::warn!(store = %self.objects.url, fault_s = since.elapsed().as_secs(),
                "uploads to the object store work again: the queue drains");
        }
    }

    fn fault(&mut self, id: &str, e: &ObjectError, waiting: usize) {
        let now = Instant::now();
        if self.failing_since.is_none() {
            self.failing_since = Some(now);
            self.logged = Some(now);
            tracing::error!(store = %self.objects.url, recording_id = %id, error = %e, waiting,
                "upload to the object store failed: the recording stays in the drop and in the queue, retried with backoff");
        } else if self
            .logged
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(60))
        {
            self.logged = Some(now);
            tracing::error!(store = %self.objects.url, recording_id = %id, error = %e, waiting,
                "uploads to the object store still failing");
        }
    }

    fn index(&mut self) -> Result<&crate::store::Index, ObjectError> {
        if self
            .db
            .as_ref()
            .is_some_and(|ix| !ix.is_current(&self.index))
        {
            self.db = None;
        }
        if self.db.is_none() {
            let ix = crate::store::Index::open_at(&self.index)
                .map_err(|e| ObjectError::Index(e.to_string()))?;
            self.db = Some(ix);
        }
        self.db
            .as_ref()
            .ok_or_else(|| ObjectError::Index("no index".into()))
    }

    /// Records a transferred recording in the index and applies
    /// `keep_local` (`stored`: None when there was nothing to send).
    fn finish_upload(
        &mut self,
        p: &Pending,
        stored: Option<Vec<StoredFile>>,
    ) -> Result<(), ObjectError> {
        let Some(stored) = stored else {
            return Ok(());
        };
        let ix = self.index()?;
        if let Err(e) = record(ix.conn(), &p.recording_id, &stored) {
            self.db = None;
            return Err(ObjectError::Index(e.to_string()));
        }
        tracing::debug!(recording_id = %p.recording_id, files = stored.len(), "uploaded to the object store");
        match self.objects.keep_local {
            KeepLocal::Always => {}
            KeepLocal::Never => remove_local(&self.root, &p.recording_id, &p.path),
            KeepLocal::Days(_) => {
                let done = self.root.join(DONE_DIR);
                std::fs::create_dir_all(&done).map_err(io("creating", &done))?;
                std::fs::write(done.join(&p.recording_id), &p.path)
                    .map_err(io("writing", &done))?;
            }
        }
        Ok(())
    }

    /// `keep_local = <days>`: removes the local copies older than that.
    fn sweep(&mut self) {
        let KeepLocal::Days(days) = self.objects.keep_local else {
            return;
        };
        let done = self.root.join(DONE_DIR);
        let Ok(entries) = std::fs::read_dir(&done) else {
            return;
        };
        let max_age = Duration::from_secs(u64::from(days) * 86_400);
        for e in entries.flatten() {
            let age = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .unwrap_or_default();
            if age < max_age {
                continue;
            }
            let id = e.file_name().to_string_lossy().into_owned();
            if let Ok(path) = std::fs::read_to_string(e.path()) {
                remove_local(&self.root, &id, path.trim());
            }
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Removes the drop's copy of a recording kept in the object store.
fn remove_local(root: &Path, id: &str, path: &str) {
    if !plain(path) {
        return;
    }
    let dir = root.join(path);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {
            tracing::debug!(recording_id = %id, "local copy removed (kept in the object store)")
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(recording_id = %id, path = %dir.display(), error = %e,
            "cannot remove the local copy of an uploaded recording"),
    }
}

/// [`crate::lifecycle::Replicas`]: a deletion removes the recording's
/// objects too (run on a thread of its own: the lifecycle is synchronous).
impl crate::lifecycle::Replicas for Objects {
    fn delete(&self, meta: &RecordingMeta) -> Result<(), String> {
        let objects = self.clone();
        let path = meta.path.clone();
        std::thread::scope(|s| {
            s.spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                rt.block_on(objects.delete_recording(&path))
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
            .join()
            .map_err(|_| "the object deletion panicked".to_string())?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_keys() {
        assert_eq!(
            parse_url("s3://rec/srs/prod/").unwrap(),
            ("rec".into(), "srs/prod".into())
        );
        assert_eq!(
            parse_url("s3://rec").unwrap(),
            ("rec".into(), String::new())
        );
        assert!(parse_url("https://rec").is_err());
        assert!(parse_url("s3:///x").is_err());
    }

    #[test]
    fn the_queue_is_files_in_the_drop() {
        let tmp = tempfile::tempdir().unwrap();
        let m = |id: &str| RecordingMeta {
            recording_id: id.into(),
            path: format!("2026/11/23/{id}"),
            ..Default::default()
        };
        enqueue(tmp.path(), &m("a")).unwrap();
        enqueue(tmp.path(), &m("b")).unwrap();
        let b = backlog(tmp.path()).unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].path, "2026/11/23/a");
        assert!(!plain("../x") && !plain("/etc") && plain("2026/11/23/a"));
    }
}
