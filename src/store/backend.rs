//! Where the index is: a SQLite file (the default, inside the drop) or a
//! PostgreSQL database shared by several recorders (`storage.index =
//! "postgres://user@host:port/db?sslmode=..."`, `docs/scale-out.md`).
//!
//! The PostgreSQL password is never part of the URL (a URL with one is
//! refused, so that it cannot end up in a log or a process list): it comes
//! from the environment (`SRS_INDEX_PASSWORD`, else libpq's `PGPASSWORD`)
//! or from a file (`storage.index_password_file`, e.g. a container secret).
//! Displaying an [`IndexAt`] never shows it.
//!
//! `sslmode`: `disable` (plain TCP), `prefer` (the default: TLS when the
//! server offers it) or `require` (TLS or no connection). The server's
//! certificate is checked against the system's roots; `sslrootcert=FILE`
//! in the URL adds a CA of its own (a private PostgreSQL).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::db::{Db, DbError};

/// How long connecting to PostgreSQL may take.
pub const PG_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the index is.
#[derive(Clone)]
pub enum IndexAt {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database.
    Postgres(Arc<PgTarget>),
}

impl std::fmt::Debug for IndexAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

impl std::fmt::Display for IndexAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IndexAt::Sqlite(p) => write!(f, "{}", p.display()),
            IndexAt::Postgres(t) => f.write_str(&t.url),
        }
    }
}

impl PartialEq for IndexAt {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (IndexAt::Sqlite(a), IndexAt::Sqlite(b)) => a == b,
            (IndexAt::Postgres(a), IndexAt::Postgres(b)) => a.url == b.url,
            _ => false,
        }
    }
}

impl From<PathBuf> for IndexAt {
    fn from(p: PathBuf) -> Self {
        IndexAt::Sqlite(p)
    }
}

impl From<&Path> for IndexAt {
    fn from(p: &Path) -> Self {
        IndexAt::Sqlite(p.to_path_buf())
    }
}

/// Whether `storage.index` / `--index` names a PostgreSQL database.
pub fn is_postgres_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

/// A PostgreSQL index that cannot be used as configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("storage.index: {0}")]
    Url(String),
    #[error("storage.index: the URL holds a password: remove it and set SRS_INDEX_PASSWORD (or PGPASSWORD) or storage.index_password_file instead (a URL ends up in logs and process lists)")]
    PasswordInUrl,
    #[error("storage.index_password_file {path}: {message}")]
    PasswordFile { path: PathBuf, message: String },
    #[error("storage.index: sslmode {0:?}: use disable, prefer or require")]
    SslMode(String),
    #[error("storage.index: sslrootcert {path}: {message}")]
    RootCert { path: PathBuf, message: String },
}

/// `sslmode` of the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
}

/// A PostgreSQL database and how to reach it.
pub struct PgTarget {
    /// The URL as configured (it holds no password).
    url: String,
    config: postgres::Config,
    ssl: SslMode,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTarget")
            .field("url", &self.url)
            .field("ssl", &self.ssl)
            .finish()
    }
}

/// Splits the query string off a URL and takes out the keys this layer
/// handles itself (`sslmode`, `sslrootcert`), leaving the rest for the
/// driver.
fn take_params(url: &str) -> (String, Vec<(String, String)>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_string(), Vec::new());
    };
    let mut kept = Vec::new();
    let mut taken = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if matches!(k, "sslmode" | "sslrootcert") {
            taken.push((k.to_string(), v.to_string()));
        } else {
            kept.push(pair);
        }
    }
    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (rest, taken)
}

/// Percent-decoding of a URL parameter value (a path with `%2F`).
fn unescape(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(x) = u8::from_str_radix(&v[i + 1..i + 3], 16) {
                out.push(x);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn tls_config(root: Option<&Path>) -> Result<rustls::ClientConfig, TargetError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for c in native.certs {
        let _ = roots.add(c);
    }
    if let Some(path) = root {
        let bad = |message: String| TargetError::RootCert {
            path: path.to_path_buf(),
            message,
        };
        let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let mut any = false;
        for c in rustls_pemfile_certs(&pem).map_err(bad)? {
            roots.add(c).map_err(|e| bad(e.to_string()))?;
            any = true;
        }
        if !any {
            return Err(bad("no certificate in it".into()));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TargetError::Url(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The certificates of a PEM file.
fn rustls_pemfile_certs(
    pem: &[u8],
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())
}

impl PgTarget {
    /// Reads a `postgres://` URL; the password comes from `password` (read
    /// by [`PgTarget::password`]), never from the URL.
    pub fn parse(url: &str, password: Option<String>) -> Result<PgTarget, TargetError> {
        let (rest, taken) = take_params(url);
        let mut ssl = SslMode::Prefer;
        let mut root = None;
        for (k, v) in taken {
            match k.as_str() {
                "sslmode" => {
                    ssl = match v.as_str() {
                        "disable" => SslMode::Disable,
                        "prefer" | "allow" => SslMode::Prefer,
                        "require" | "verify-ca" | "verify-full" => SslMode::Require,
                        other => return Err(TargetError::SslMode(other.to_string())),
                    }
                }
                _ => root = Some(PathBuf::from(unescape(&v))),
            }
        }
        let mut config: postgres::Config = rest
            .parse()
            .map_err(|e: postgres::Error| TargetError::Url(e.to_string()))?;
        if config.get_password().is_some() {
            return Err(TargetError::PasswordInUrl);
        }
        if let Some(p) = password {
            config.password(p);
        }
        config
            .ssl_mode(match ssl {
                SslMode::Disable => postgres::config::SslMode::Disable,
                SslMode::Prefer => postgres::config::SslMode::Prefer,
                SslMode::Require => postgres::config::SslMode::Require,
            })
            .connect_timeout(PG_CONNECT_TIMEOUT)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30))
            .application_name("srs");
        let tls = match ssl {
            SslMode::Disable => None,
            _ => Some(tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(
                root.as_deref(),
            )?)),
        };
        Ok(PgTarget {
            url: url.to_string(),
            config,
            ssl,
            tls,
        })
    }

    /// The password: `SRS_INDEX_PASSWORD`, else `PGPASSWORD`, else the
    /// first line of `file`; `None` when none is set (trust or
    /// certificate authentication).
    pub fn password(file: Option<&Path>) -> Result<Option<String>, TargetError> {
        for var in ["SRS_INDEX_PASSWORD", "PGPASSWORD"] {
            if let Some(v) = std::env::var_os(var) {
                return Ok(Some(v.to_string_lossy().into_owned()));
            }
        }
        let Some(path) = file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|e| TargetError::PasswordFile {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(Some(
            text.lines()
                .next()
                .unwrap_or_default()
                .trim_end()
                .to_string(),
        ))
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// A new connection. Must not be called on a thread that runs an
    /// async runtime (the client drives a small runtime of its own).
    pub fn connect(&self) -> Result<Db, DbError> {
        let client = super::db::off_runtime(|| match &self.tls {
            None => self.config.connect(postgres::NoTls),
            Some(tls) => self.config.connect(tls.clone()),
        })?;
        Ok(Db::postgres(client))
    }
}

impl IndexAt {
    /// The index named by `storage.index` / `--index` (`None`: the file
    /// inside the drop), `password_file` for PostgreSQL.
    pub fn resolve(
        recordings: &Path,
        index: Option<&Path>,
        password_file: Option<&Path>,
    ) -> Result<IndexAt, TargetError> {
        match index.and_then(Path::to_str).filter(|s| is_postgres_url(s)) {
            Some(url) => {
                let pw = PgTarget::password(password_file)?;
                Ok(IndexAt::Postgres(Arc::new(PgTarget::parse(url, pw)?)))
            }
            None => Ok(IndexAt::Sqlite(super::index_path(recordings, index))),
        }
    }

    /// The SQLite file, if the index is one.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            IndexAt::Sqlite(p) => Some(p),
            IndexAt::Postgres(_) => None,
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, IndexAt::Postgres(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(is_postgres_url("postgres://srs@db:5432/srs"));
        assert!(is_postgres_url("postgresql://srs@db/srs"));
        assert!(!is_postgres_url("/var/lib/srs/index.sqlite"));
        let t = PgTarget::parse(
            "postgres://srs@127.0.0.1:5433/rec?sslmode=disable&connect_timeout=3",
            Some("pw".into()),
        )
        .unwrap();
        assert_eq!(t.ssl, SslMode::Disable);
        assert_eq!(t.config.get_dbname(), Some("rec"));
        assert_eq!(t.config.get_password(), Some(&b"pw"[..]));
        // Displayed as configured, never with the password.
        let at = IndexAt::Postgres(Arc::new(t));
        assert!(!format!("{at} {at:?}").contains("pw"));
        assert_eq!(
            PgTarget::parse("postgres://srs:secret@h/db", None).unwrap_err(),
            TargetError::PasswordInUrl
        );
        assert!(matches!(
            PgTarget::parse("postgres://srs@h/db?sslmode=sometimes", None),
            Err(TargetError::SslMode(_))
        ));
        let t = PgTarget::parse("postgres://srs@h/db", None).unwrap();
        assert_eq!(t.ssl, SslMode::Prefer);
        assert!(t.tls.is_some());
    }

    #[test]
    fn sqlite_by_default() {
        let at = IndexAt::resolve(Path::new("/rec"), None, None).unwrap();
        assert_eq!(at.sqlite_path(), Some(Path::new("/rec/index.sqlite")));
        let at = IndexAt::resolve(Path::new("/rec"), Some(Path::new("/x/i.sqlite")), None).unwrap();
        assert_eq!(at.sqlite_path(), Some(Path::new("/x/i.sqlite")));
    }
}
