//! Configuration: embedded defaults, an optional TOML file (`--config`),
//! and command-line overrides, in that order. Unknown keys are errors that
//! name the key (a typo must never silently fall back to a default).
//! `examples/srs.toml` documents every key and is parsed by a test.

use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid {key}: {message}")]
    Invalid { key: &'static str, message: String },
}

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub sip: SipConfig,
    pub media: MediaConfig,
    pub storage: StorageConfig,
    pub output: OutputConfig,
    pub http: HttpConfig,
    /// SIP over TLS (`[tls]`), off unless a certificate and key are set.
    pub tls: TlsConfig,
    /// The DN directory (`[[directory]]` entries).
    pub directory: Vec<crate::filing::DnEntry>,
    /// Recording rules (`[[rules]]`), first match wins.
    pub rules: Vec<crate::filing::Rule>,
    /// Issue 14: webhook receivers (`[[webhooks]]`; docs/api.md, Webhooks).
    pub webhooks: Vec<crate::webhooks::WebhookConfig>,

    // The life of a recording (issue 15; docs/operations.md, Retention,
    // legal hold and erasure; docs/security.md, Encryption at rest).
    /// Retention rules (`[[retention]]`), first match wins; no match:
    /// kept forever.
    pub retention: Vec<crate::lifecycle::RetentionRule>,
    /// When `srs serve` applies the retention rules (`[lifecycle]`).
    pub lifecycle: LifecycleConfig,
    /// Encryption at rest (`[encryption]`), off unless recipients are set.
    pub encryption: EncryptionConfig,
    /// Issue 16: this recorder among several (`[node]`).
    pub node: NodeConfig,
}

/// `[node]`: which recorder this is, when several share one index and one
/// object store (`docs/scale-out.md`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Recorded as `node` in each recording's `metadata.json`; default:
    /// the host name.
    pub id: Option<String>,
}

impl NodeConfig {
    /// `id`, else the host name, else `srs`.
    pub fn id(&self) -> String {
        if let Some(id) = self.id.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            return id.to_string();
        }
        static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        HOST.get_or_init(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "srs".to_string())
        })
        .clone()
    }
}

/// `[lifecycle]`: the retention job of `srs serve`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LifecycleConfig {
    /// Seconds between two runs of the retention rules (also run once at
    /// start); 0: never on a schedule (only `srs retention run`).
    pub retention_interval: u64,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            retention_interval: 3600,
        }
    }
}

/// `[encryption]`: published audio encrypted to public keys (age, X25519).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EncryptionConfig {
    /// age X25519 public keys (`age1...`) every published audio file is
    /// encrypted to; empty: no encryption. Several: each can decrypt
    /// (key rotation).
    pub recipients: Vec<String>,
    /// age identity files (private keys) the reading side decrypts with:
    /// the API of this server, `srs export`. Old ones stay listed after a
    /// rotation to read older recordings.
    pub identities: Vec<PathBuf>,
}

/// An output format of a recording (the same names as `files[].format`).
pub use crate::recording::Format;

/// Who goes on the stereo file's left channel (`output.stereo_left`),
/// read once when the config is loaded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(from = "String")]
pub enum StereoLeft {
    /// The first party: the first participant of the metadata (the
    /// recorded party).
    #[default]
    First,
    /// The second party.
    Second,
    /// The party sending on the stream with this label (`label:<label>`).
    Label(String),
    /// The party whose aor contains this text (`aor:<text>`).
    Aor(String),
    /// Text that is none of these: [`Config::validate`] refuses it (the
    /// error names the key, which a serde error could not do as clearly).
    Invalid(String),
}

impl From<String> for StereoLeft {
    fn from(s: String) -> StereoLeft {
        if s == "first" {
            StereoLeft::First
        } else if s == "second" {
            StereoLeft::Second
        } else if let Some(l) = s.strip_prefix("label:") {
            StereoLeft::Label(l.to_string())
        } else if let Some(a) = s.strip_prefix("aor:") {
            StereoLeft::Aor(a.to_string())
        } else {
            StereoLeft::Invalid(s)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// Formats to publish. The mono WAVs are always written while
    /// recording; without `wav` here they are removed once the others exist.
    pub formats: Vec<Format>,
    /// Who goes on the stereo file's left channel: `first` (the first
    /// participant of the metadata: the recorded party), `second`,
    /// `label:<label>` or `aor:<text the aor contains>`.
    pub stereo_left: StereoLeft,
    /// Opus bitrate for encoded (not passed-through) files, bit/s.
    pub opus_bitrate: i32,
    /// Opus encodes running at once (a bounded pool, off the packet path).
    pub encoders: usize,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            formats: vec![Format::Wav],
            stereo_left: StereoLeft::First,
            opus_bitrate: 24_000,
            encoders: 2,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    /// Address for SIP over UDP and TCP.
    pub listen: SocketAddr,
    /// Most concurrent recording sessions; beyond it INVITEs get 503.
    pub max_sessions: usize,
    /// Milliseconds between accepting a session and sending its 200 OK.
    pub answer_delay_ms: u64,
    /// Send 180 Ringing at once when the answer is delayed.
    pub ringing: bool,
    /// Session interval (s) offered to clients that support timers but propose none.
    pub session_expires: u64,
    /// Shortest session interval (s) accepted; shorter gets 422.
    pub min_se: u64,
    /// Recording clients allowed (IPs or CIDRs); empty: everyone. Others get 403.
    pub allow: Vec<String>,
    /// New sessions per second accepted from one source address (then 503).
    pub rate_limit: u32,
    /// Most m-lines in one offer (then 488).
    pub max_streams: usize,
    /// Seconds a shutdown waits for active recordings to be published.
    pub shutdown_timeout: u64,
    /// re-INVITEs and UPDATEs per second accepted in one dialog (bursts of
    /// twice as many); beyond it 503 + Retry-After.
    pub reoffers_per_second: u32,
    /// Metadata updates kept beside one recording (`metadata-update-N.xml`).
    pub max_metadata_updates: usize,
    /// Bytes of metadata XML kept beside one recording (the initial
    /// document and its updates together).
    pub max_metadata_bytes: u64,
    /// Events (`events` in metadata.json) kept for one recording.
    pub max_events: usize,
    /// Seconds a TCP/TLS connection has to complete a SIP message (its
    /// first one from the opening, later ones from their first byte).
    pub connection_head_timeout: u64,
    /// Seconds after which a TCP/TLS connection that carries no dialog and
    /// saw no message either way is closed.
    pub connection_idle_timeout: u64,
    /// TCP/TLS connections without a dialog from one address; one more
    /// closes that address's least recently active one.
    pub max_connections_per_source: usize,
    /// TCP/TLS connections in all; 0: from the descriptor limit, keeping a
    /// reserve for the RTP sockets, the files, the index and HTTP.
    pub max_connections: usize,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// RTP port range, `LO-HI` inclusive; each stream takes an even port and the next odd one (RTCP).
    pub rtp_ports: PortRange,
    /// Address the RTP sockets bind to.
    pub bind: IpAddr,
    /// Address put in our SDP and Contact. Default: the local address that routes to the client.
    pub advertised_address: Option<IpAddr>,
    /// Media threads (reactor shards); 0 = one per CPU core.
    pub threads: usize,
    /// `true` (the default): a stream latches onto the first source of its
    /// media (authenticated under SRTP, an offered payload type) whose IP
    /// is the SDP's `c=` or the recording client's signalling address
    /// (any port), then accepts only that ip:port. `false`: only the IP in
    /// the client's SDP, any port. Either way nobody else can inject audio
    /// into a stream, before or after its media starts.
    pub latch: bool,
    /// With `latch`, let the first source come from any IP (clients behind
    /// NAT whose media comes from neither their SDP's nor their signalling
    /// address). Weaker: until the real media arrives, anyone who can
    /// reach the port with an offered payload type (and, under SRTP, the
    /// key) takes the stream.
    pub latch_any_source: bool,
}

impl MediaConfig {
    /// Media threads to start.
    pub fn threads(&self) -> usize {
        if self.threads > 0 {
            self.threads
        } else {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// The file drop.
    pub recordings: PathBuf,
    /// The index: a SQLite file (default: `index.sqlite` inside the drop)
    /// or a PostgreSQL database shared by several recorders,
    /// `postgres://user@host:port/db?sslmode=...` (`docs/scale-out.md`).
    pub index: Option<PathBuf>,
    /// The PostgreSQL password in a file (first line), when neither
    /// `SRS_INDEX_PASSWORD` nor `PGPASSWORD` is set. Never in the URL.
    pub index_password_file: Option<PathBuf>,
    /// Free space (MiB) under which new sessions get 503 and running
    /// recordings are ended and published while there is still room.
    pub min_free_mb: u64,
    /// Issue 16: recordings copied to an object store (`[storage.object]`).
    pub object: Option<ObjectConfig>,
}

/// `[storage.object]`: the object store recordings are copied to
/// (`crate::store::objects`, `docs/scale-out.md`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectConfig {
    /// `s3://BUCKET[/PREFIX]`.
    pub url: String,
    /// The S3 endpoint (MinIO, Ceph RGW...); AWS's when absent.
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    /// Credentials; else `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`
    /// from the environment.
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub secret_access_key: Option<String>,
    /// Keep the drop's copy: `true` (default), `false` (removed once
    /// uploaded and verified), or a number of days.
    #[serde(default)]
    pub keep_local: KeepLocal,
}

/// `keep_local = true | false | <days>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeepLocal {
    #[default]
    Always,
    Never,
    Days(u32),
}

impl<'de> Deserialize<'de> for KeepLocal {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Given {
            Bool(bool),
            Days(u32),
        }
        Ok(
            match Given::deserialize(d).map_err(|_| {
                serde::de::Error::custom("keep_local: expected true, false or a number of days")
            })? {
                Given::Bool(true) => KeepLocal::Always,
                Given::Bool(false) => KeepLocal::Never,
                Given::Days(n) => KeepLocal::Days(n),
            },
        )
    }
}

/// The HTTP API and its limits (`docs/api.md`, Limits): whatever the load
/// on it, its memory, descriptors and threads stay bounded, and it never
/// delays SIP or publishing.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Connections open at once; more get a `503` at once and are closed.
    pub max_connections: usize,
    /// Requests being answered at once (a listing's body counts until it
    /// is sent); more wait up to `queue_timeout_ms`, then get `503`.
    pub max_requests: usize,
    /// How long a request waits for one of the `max_requests` slots.
    pub queue_timeout_ms: u64,
    /// Whole time of a request, its queueing and (for JSON) sending its
    /// body included; then `503`, or the connection is closed.
    pub request_timeout_ms: u64,
    /// A connection with nothing read or written for this long is closed.
    pub idle_timeout_ms: u64,
    /// Connections to the index reading at once (one thread each).
    pub index_connections: usize,
    /// Largest page of `GET /api/v1/recordings`, in bytes of JSON; a page
    /// that would be larger is cut short (`truncated`, `next_offset`).
    pub max_page_bytes: usize,

    // Access control (docs/api.md, Access control; docs/security.md).
    /// PEM certificate chain (leaf first) for HTTPS; with `key`, the API
    /// speaks only HTTPS on `listen`.
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
    /// Serve a non-loopback `listen` even when no API token exists (anyone
    /// who reaches it can then read every recording). Without it, `srs
    /// serve` refuses to start that way.
    pub allow_unauthenticated: bool,

    // The web page (docs/web.md).
    /// Serve the web page (`/`, `/recordings/{id}`, `/live`) and its
    /// sign-in (`/api/v1/login`, `/api/v1/logout`).
    pub web: bool,
    /// A signed-in page's session ends after this long without a request.
    pub session_idle_timeout_s: u64,
    /// A signed-in page's session ends this long after sign-in, however used.
    pub session_max_age_s: u64,
}

impl HttpConfig {
    /// Whether the API speaks HTTPS.
    pub fn https(&self) -> bool {
        self.cert.is_some() && self.key.is_some()
    }
}

/// SIP over TLS.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Address for SIP over TLS; listened on when `cert` and `key` are set.
    pub listen: SocketAddr,
    /// PEM certificate chain, leaf first.
    pub cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the leaf certificate.
    pub key: Option<PathBuf>,
    /// PEM CA certificates: when set, clients must present a certificate
    /// signed by one of them (mutual TLS); others fail the handshake.
    pub client_ca: Option<PathBuf>,
}

impl TlsConfig {
    /// Whether SIP over TLS is configured.
    pub fn enabled(&self) -> bool {
        self.cert.is_some() && self.key.is_some()
    }
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 5061)),
            cert: None,
            key: None,
            client_ca: None,
        }
    }
}

/// An inclusive port range written `LO-HI`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl std::str::FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| format!("{s:?} is not LO-HI"))?;
        let lo: u16 = a.trim().parse().map_err(|_| format!("bad port {a:?}"))?;
        let hi: u16 = b.trim().parse().map_err(|_| format!("bad port {b:?}"))?;
        if lo == 0 || hi < lo.saturating_add(1) {
            return Err(format!("{s:?}: need 0 < LO < HI"));
        }
        Ok(PortRange { lo, hi })
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl PortRange {
    /// How many of these ports the kernel may hand to outgoing sockets:
    /// those inside the ephemeral range (`ip_local_port_range`, "LO HI")
    /// and not listed in `ip_local_reserved_ports` ("A,B-C", may be empty).
    /// Such a port can be held by any process when a stream wants it.
    pub fn ephemeral_overlap(&self, local_range: &str, reserved: &str) -> u32 {
        let mut it = local_range.split_whitespace().map(str::parse::<u16>);
        let (Some(Ok(lo)), Some(Ok(hi))) = (it.next(), it.next()) else {
            return 0;
        };
        let reserved: Vec<(u16, u16)> = reserved
            .trim()
            .split(',')
            .filter_map(|r| {
                let r = r.trim();
                match r.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => r.parse().ok().map(|p| (p, p)),
                }
            })
            .collect();
        (self.lo.max(lo)..=self.hi.min(hi))
            .filter(|p| !reserved.iter().any(|(a, b)| (*a..=*b).contains(p)))
            .count() as u32
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.lo, self.hi)
    }
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 5060)),
            max_sessions: 10_000,
            answer_delay_ms: 20,
            ringing: false,
            session_expires: 1800,
            min_se: 90,
            allow: Vec::new(),
            rate_limit: 500,
            max_streams: 16,
            shutdown_timeout: 30,
            reoffers_per_second: 10,
            max_metadata_updates: 200,
            max_metadata_bytes: 8 << 20,
            max_events: 2000,
            connection_head_timeout: 10,
            connection_idle_timeout: 120,
            max_connections_per_source: 256,
            max_connections: 0,
        }
    }
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            // Below Linux's ephemeral range (32768-60999), so the kernel
            // never gives one of these ports to an outgoing socket.
            rtp_ports: PortRange {
                lo: 10000,
                hi: 29999,
            },
            bind: IpAddr::from([0, 0, 0, 0]),
            advertised_address: None,
            threads: 0,
            latch: true,
            latch_any_source: false,
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            recordings: PathBuf::from("./recordings"),
            index: None,
            index_password_file: None,
            min_free_mb: 256,
            object: None,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_connections: 256,
            max_requests: 16,
            queue_timeout_ms: 1_000,
            request_timeout_ms: 10_000,
            idle_timeout_ms: 30_000,
            index_connections: 4,
            max_page_bytes: 4 << 20,
            cert: None,
            key: None,
            allow_unauthenticated: false,
            web: true,
            session_idle_timeout_s: 3_600,
            session_max_age_s: 43_200,
        }
    }
}

impl Config {
    /// Parses TOML text; `origin` names the source in errors.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_path_buf(),
            message: e.to_string().trim().to_string(),
        })
    }

    /// Reads a TOML config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// The index path: configured, or `index.sqlite` inside the drop.
    pub fn index_path(&self) -> PathBuf {
        crate::store::index_path(&self.storage.recordings, self.storage.index.as_deref())
    }

    /// Where the index is: the SQLite file of [`Config::index_path`], or
    /// the PostgreSQL database of `storage.index` (its password read from
    /// the environment or `storage.index_password_file`).
    pub fn index_at(&self) -> Result<crate::store::IndexAt, ConfigError> {
        crate::store::IndexAt::resolve(
            &self.storage.recordings,
            self.storage.index.as_deref(),
            self.storage.index_password_file.as_deref(),
        )
        .map_err(|e| ConfigError::Invalid {
            key: "storage.index",
            message: e.to_string(),
        })
    }

    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.index_at()?;
        if self.sip.max_sessions == 0 {
            return Err(ConfigError::Invalid {
                key: "sip.max_sessions",
                message: "must be at least 1".into(),
            });
        }
        if self.sip.min_se < 90 || self.sip.session_expires < self.sip.min_se {
            return Err(ConfigError::Invalid {
                key: "sip.session_expires",
                message: "need 90 <= min_se <= session_expires (RFC 4028)".into(),
            });
        }
        if self.sip.connection_head_timeout == 0 || self.sip.connection_idle_timeout == 0 {
            return Err(ConfigError::Invalid {
                key: "sip.connection_head_timeout",
                message: "connection_head_timeout and connection_idle_timeout must be at least 1 s"
                    .into(),
            });
        }
        if self.sip.max_connections_per_source == 0 {
            return Err(ConfigError::Invalid {
                key: "sip.max_connections_per_source",
                message: "must be at least 1".into(),
            });
        }
        for c in &self.sip.allow {
            crate::net::Cidr::parse_entry(c).map_err(|e| ConfigError::Invalid {
                key: "sip.allow",
                message: e.to_string(),
            })?;
        }
        if let StereoLeft::Invalid(left) = &self.output.stereo_left {
            return Err(ConfigError::Invalid {
                key: "output.stereo_left",
                message: format!("{left:?}: use first, second, label:<label> or aor:<text>"),
            });
        }
        if self.output.formats.is_empty() || self.output.encoders == 0 {
            return Err(ConfigError::Invalid {
                key: "output.formats",
                message: "at least one format and one encoder".into(),
            });
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err(ConfigError::Invalid {
                key: "tls.cert",
                message: "tls.cert and tls.key go together".into(),
            });
        }
        if self.tls.client_ca.is_some() && !self.tls.enabled() {
            return Err(ConfigError::Invalid {
                key: "tls.client_ca",
                message: "needs tls.cert and tls.key".into(),
            });
        }
        if self.http.cert.is_some() != self.http.key.is_some() {
            return Err(ConfigError::Invalid {
                key: "http.cert",
                message: "http.cert and http.key go together".into(),
            });
        }
        let h = &self.http;
        for (key, v) in [
            ("http.max_connections", h.max_connections as u64),
            ("http.max_requests", h.max_requests as u64),
            ("http.request_timeout_ms", h.request_timeout_ms),
            ("http.idle_timeout_ms", h.idle_timeout_ms),
            ("http.index_connections", h.index_connections as u64),
            ("http.max_page_bytes", h.max_page_bytes as u64),
            ("http.session_idle_timeout_s", h.session_idle_timeout_s),
            ("http.session_max_age_s", h.session_max_age_s),
        ] {
            if v == 0 {
                return Err(ConfigError::Invalid {
                    key,
                    message: "must be at least 1".into(),
                });
            }
        }
        crate::lifecycle::retention::validate(&self.retention).map_err(|e| {
            ConfigError::Invalid {
                key: "retention",
                message: e.to_string(),
            }
        })?;
        crate::store::crypt::Encryptor::from_recipients(&self.encryption.recipients).map_err(
            |e| ConfigError::Invalid {
                key: "encryption.recipients",
                message: e.to_string(),
            },
        )?;
        for w in &self.webhooks {
            w.check()
                .map_err(|(key, message)| ConfigError::Invalid { key, message })?;
        }
        if self.media.rtp_ports.hi - self.media.rtp_ports.lo < 1 {
            return Err(ConfigError::Invalid {
                key: "media.rtp_ports",
                message: "needs at least one even/odd pair".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_file_parses_and_documents_every_default() {
        let text = include_str!("../examples/srs.toml");
        let c = Config::from_toml(text, Path::new("examples/srs.toml")).unwrap();
        c.validate().unwrap();
        // The example shows the embedded defaults, uncommented.
        assert_eq!(c, Config::default());
        for key in [
            "listen",
            "max_sessions",
            "rtp_ports",
            "bind",
            "advertised_address",
            "recordings",
            "index",
            "index_password_file",
            "[node]",
            "# id = ",
            "# [storage.object]",
            "# keep_local = true",
            "# endpoint =",
            "postgres://",
            "[tls]",
            "cert",
            "key",
            "client_ca",
            "connection_head_timeout",
            "connection_idle_timeout",
            "max_connections_per_source",
            "max_connections",
            "max_connections",
            "max_requests",
            "queue_timeout_ms",
            "request_timeout_ms",
            "idle_timeout_ms",
            "index_connections",
            "max_page_bytes",
            "allow_unauthenticated",
            "web = true",
            "session_idle_timeout_s = 3600",
            "session_max_age_s = 43200",
            "[[retention]]",
            "retention_interval",
            "[encryption]",
            "recipients",
            "identities",
            "srs key generate",
            "# cert = \"/etc/srs/tls/api.crt\"",
            "# key = \"/etc/srs/tls/api.key\"",
            "# [[webhooks]]",
            "# url =",
            "# secret =",
            "# events =",
            "# retry_for = 86400",
            "# timeout_ms = 10000",
            "# retry_initial_ms = 1000",
            "# max_in_flight = 4",
        ] {
            assert!(text.contains(key), "examples/srs.toml must document {key}");
        }
    }

    #[test]
    fn empty_file_is_the_defaults() {
        let c = Config::from_toml("", Path::new("x")).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.index_path(), PathBuf::from("./recordings/index.sqlite"));
    }

    #[test]
    fn http_limits_of_zero_are_refused_by_name() {
        for key in [
            "max_connections",
            "max_requests",
            "request_timeout_ms",
            "idle_timeout_ms",
            "index_connections",
            "max_page_bytes",
            "session_idle_timeout_s",
            "session_max_age_s",
        ] {
            let c = Config::from_toml(&format!("[http]\n{key} = 0\n"), Path::new("x")).unwrap();
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(&format!("http.{key}")), "{e}");
        }
        // A queue of 0 is fine: refuse at once when every slot is busy.
        let c = Config::from_toml("[http]\nqueue_timeout_ms = 0\n", Path::new("x")).unwrap();
        c.validate().unwrap();
    }

    #[test]
    fn https_needs_both_cert_and_key() {
        let c = Config::from_toml("[http]\ncert = \"/x.crt\"\n", Path::new("x")).unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("http.cert") && e.contains("http.key"), "{e}");
        let c = Config::from_toml(
            "[http]\ncert = \"/x.crt\"\nkey = \"/x.key\"\nallow_unauthenticated = true\n",
            Path::new("x"),
        )
        .unwrap();
        c.validate().unwrap();
        assert!(c.http.https() && c.http.allow_unauthenticated);
        assert!(!HttpConfig::default().https());
        assert!(!HttpConfig::default().allow_unauthenticated);
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = Config::from_toml("[sip]\nlisten_adress = \"0.0.0.0:5060\"\n", Path::new("x"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("listen_adress"), "{e}");
        let e = Config::from_toml("[sipp]\n", Path::new("x"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("sipp"), "{e}");
    }

    #[test]
    fn directory_and_rules() {
        let text = r#"
[[directory]]
dn = "8800*"
kind = "trunk"
geo_location = "london"

[[rules]]
name = "ivr"
dnis = "1800*"
record = "dest"
formats = ["wav", "ogg-opus"]

[[rules]]
name = "off"
source = "10.0.0.0/8"
enabled = false
"#;
        let c = Config::from_toml(text, Path::new("x")).unwrap();
        c.validate().unwrap();
        assert_eq!(c.directory[0].kind, "trunk");
        assert_eq!(c.rules[0].record, crate::filing::RecordSide::Dest);
        assert_eq!(c.rules[0].formats, Some(vec![Format::Wav, Format::OggOpus]));
        assert!(c.rules[0].enabled, "enabled defaults to true");
        assert!(!c.rules[1].enabled);
        let e = Config::from_toml(
            "[[rules]]\nname = \"x\"\nrecrod = \"dest\"\n",
            Path::new("x"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("recrod"), "{e}");
        let e = Config::from_toml(
            "[[rules]]\nname = \"x\"\nrecord = \"both\"\n",
            Path::new("x"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("both"), "{e}");
    }

    #[test]
    fn webhooks_are_read_and_checked_by_key() {
        let c = Config::from_toml(
            "[[webhooks]]\nurl = \"https://qm.example/srs\"\nsecret = \"k\"\nevents = [\"recording.published\"]\nretry_for = 60\n",
            Path::new("x"),
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.webhooks[0].events, ["recording.published"]);
        assert_eq!(c.webhooks[0].retry_for, 60);
        let c = Config::from_toml(
            "[[webhooks]]\nurl = \"qm.example\"\nsecret = \"k\"\n",
            Path::new("x"),
        )
        .unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("webhooks.url"), "{e}");
        let e = Config::from_toml("[[webhooks]]\nurl = \"http://x\"\n", Path::new("x"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("secret"), "{e}");
    }

    #[test]
    fn port_ranges() {
        assert_eq!(
            "20000-39999".parse::<PortRange>(),
            Ok(PortRange {
                lo: 20000,
                hi: 39999
            })
        );
        assert!("5-5".parse::<PortRange>().is_err());
        // The default stays out of Linux's ephemeral range.
        let d = MediaConfig::default().rtp_ports;
        assert_eq!(d.ephemeral_overlap("32768\t60999\n", "\n"), 0);
        let old = PortRange {
            lo: 20000,
            hi: 39999,
        };
        assert_eq!(old.ephemeral_overlap("32768\t60999\n", ""), 7232);
        assert_eq!(
            old.ephemeral_overlap("32768 60999", "32768-39990,39999\n"),
            8
        );
        assert_eq!(old.ephemeral_overlap("garbage", ""), 0);
        assert!("x".parse::<PortRange>().is_err());
        let e = Config::from_toml("[media]\nrtp_ports = \"9-1\"\n", Path::new("x")).unwrap_err();
        assert!(e.to_string().contains("9-1"), "{e}");
    }
}
