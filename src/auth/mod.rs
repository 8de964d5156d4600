//! Access control of the HTTP API (docs/api.md, Access control): who may
//! do what ([`Role`], [`Right`]), on which recordings ([`Scope`]), proved
//! by which token ([`tokens`]).
//!
//! - A token is a random 256-bit secret (`srs_` + 43 base64url
//!   characters), shown once when it is made. The index keeps only its
//!   SHA-256 ([`hash_secret`]), so whoever reads the index (or a backup of
//!   it) cannot use the tokens.
//! - A role is a fixed set of rights; `admin` has them all, `integration`
//!   only posts machine data and reads nothing.
//! - A scope narrows what a token sees to some recordings: it is applied
//!   inside the SQL of every search and lookup, so totals and pages count
//!   only what the token may see, and a recording out of scope is simply
//!   not found (404, never 403: its existence is not revealed).

pub mod scope;
pub mod tokens;

pub use scope::{Scope, ScopeError};
pub use tokens::{TokenError, TokenInfo, TokenSet};

/// What a token may do, by role. Roles nest (`viewer` < `listener` <
/// `admin`), except `integration`, which is apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Searches, reads metadata and live sessions.
    Viewer,
    /// A viewer who also downloads audio.
    Listener,
    /// Everything: also deletes, holds, reads the audit trail, manages tokens.
    Admin,
    /// Posts data meant for machines (call events) and reads nothing.
    Integration,
}

/// One thing a request does, checked against the caller's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Right {
    /// Search recordings (`GET /api/v1/recordings`).
    Search,
    /// Read one recording's metadata.
    View,
    /// Read the sessions being recorded now.
    Live,
    /// Download audio.
    Download,
    /// Delete recordings.
    Delete,
    /// Put or release a legal hold.
    Hold,
    /// Read the audit trail.
    ReadAudit,
    /// Add, list and revoke tokens.
    ManageTokens,
    /// Post call events and other machine data.
    PostEvents,
    /// Read the metrics (`GET /metrics`; issue 14).
    Metrics,
    /// List the webhook deliveries (issue 14).
    ReadWebhooks,
    /// Send a webhook delivery again (issue 14).
    RetryWebhooks,
}

impl Right {
    /// What the right is, for a 403 message.
    pub fn describe(self) -> &'static str {
        match self {
            Right::Search => "searching recordings",
            Right::View => "reading a recording's metadata",
            Right::Live => "reading the live sessions",
            Right::Download => "downloading audio",
            Right::Delete => "deleting recordings",
            Right::Hold => "holding recordings",
            Right::ReadAudit => "reading the audit trail",
            Right::ManageTokens => "managing tokens",
            Right::PostEvents => "posting call events",
            Right::Metrics => "reading the metrics",
            Right::ReadWebhooks => "reading the webhook deliveries",
            Right::RetryWebhooks => "retrying webhook deliveries",
        }
    }
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Listener, Role::Admin, Role::Integration];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Listener => "listener",
            Role::Admin => "admin",
            Role::Integration => "integration",
        }
    }

    /// Whether this role has `right`.
    pub fn allows(self, right: Right) -> bool {
        use Right::*;
        match self {
            Role::Admin => true,
            Role::Viewer => matches!(right, Search | View | Live | Metrics),
            Role::Listener => matches!(right, Search | View | Live | Download | Metrics),
            Role::Integration => matches!(right, PostEvents),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is none of the four.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: use viewer, listener, admin or integration")]
pub struct UnknownRole(pub String);

impl std::str::FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, UnknownRole> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s.trim())
            .ok_or_else(|| UnknownRole(s.to_string()))
    }
}

/// Every token begins with this, so that a secret pasted into the wrong
/// place (a log, a ticket, a repository) is easy to recognise and scan for.
pub const SECRET_PREFIX: &str = "srs_";

/// Bytes of randomness in a secret.
const SECRET_BYTES: usize = 32;

/// The system's random generator failed (it does not, on Linux).
#[derive(Debug, Clone, thiserror::Error)]
#[error("the system random generator failed")]
pub struct RandomError;

/// A new secret: [`SECRET_PREFIX`] and 32 bytes from the operating
/// system's generator, base64url without padding (43 characters).
pub fn new_secret() -> Result<String, RandomError> {
    use base64::Engine;
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; SECRET_BYTES];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| RandomError)?;
    Ok(format!(
        "{SECRET_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// SHA-256 of `data`, lower-case hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, data).as_ref())
}

/// What the index keeps of a secret: its SHA-256 in hex. A plain hash is
/// enough (no salt, no slow hash): the secret has 256 random bits, so
/// there is nothing to guess from a leaked hash. Requests are matched by
/// looking this hash up, so no comparison of secrets can leak timing.
pub fn hash_secret(secret: &str) -> String {
    sha256_hex(secret.trim().as_bytes())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Who runs a command-line tool, for the audit trail: `cli:<name>` of
/// the effective uid (from the password database, not `$USER`, which any
/// caller can set), plus `(sudo <name>)` when run through sudo.
pub fn cli_actor() -> String {
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    let name = user_name(uid).unwrap_or_else(|| uid.to_string());
    match std::env::var("SUDO_USER") {
        Ok(s) if !s.is_empty() && s != name => format!("cli:{name} (sudo {s})"),
        _ => format!("cli:{name}"),
    }
}

/// The login name of `uid` from the password database.
fn user_name(uid: libc::uid_t) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 4096];
    // SAFETY: all-zero is a valid `passwd` (null pointers and zeros), only
    // read after getpwuid_r filled it.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: the buffers live across the call and their sizes are given;
    // on success `out` points at `pwd`, whose strings point into `buf`.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut out) };
    if rc != 0 || out.is_null() || pwd.pw_name.is_null() {
        return None;
    }
    // SAFETY: pw_name is a NUL-terminated string inside `buf`, alive here.
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
    Some(name.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rights_by_role() {
        use Right::*;
        let reads = [Search, View, Live];
        for r in reads {
            assert!(Role::Viewer.allows(r));
            assert!(Role::Listener.allows(r));
            assert!(Role::Admin.allows(r));
            assert!(!Role::Integration.allows(r), "integration reads nothing");
        }
        assert!(!Role::Viewer.allows(Download));
        assert!(Role::Listener.allows(Download));
        for r in [Delete, Hold, ReadAudit, ManageTokens] {
            assert!(!Role::Viewer.allows(r));
            assert!(!Role::Listener.allows(r));
            assert!(!Role::Integration.allows(r));
            assert!(Role::Admin.allows(r));
        }
        assert!(!Role::Integration.allows(Download));
        assert!(Role::Integration.allows(PostEvents));
        assert!(Role::Admin.allows(PostEvents));
        assert!(!Role::Listener.allows(PostEvents));
        // Issue 14: metrics for every reader, never for integration;
        // webhook deliveries for admins.
        for role in [Role::Viewer, Role::Listener, Role::Admin] {
            assert!(role.allows(Metrics));
        }
        assert!(!Role::Integration.allows(Metrics));
        for r in [ReadWebhooks, RetryWebhooks] {
            assert!(Role::Admin.allows(r));
            for role in [Role::Viewer, Role::Listener, Role::Integration] {
                assert!(!role.allows(r));
            }
        }
    }

    #[test]
    fn roles_parse_by_name_only() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        let e = "root".parse::<Role>().unwrap_err().to_string();
        assert!(e.contains("root") && e.contains("viewer"), "{e}");
    }

    #[test]
    fn secrets_are_random_and_only_their_hash_is_kept() {
        let a = new_secret().unwrap();
        let b = new_secret().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with(SECRET_PREFIX));
        assert_eq!(a.len(), SECRET_PREFIX.len() + 43);
        assert!(a[4..]
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        let h = hash_secret(&a);
        assert_eq!(h.len(), 64);
        assert!(!h.contains(&a[4..]));
        assert_eq!(hash_secret(&format!(" {a}\n")), h, "pasted with blanks");
        // The SHA-256 of "abc" (FIPS 180-2).
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn the_cli_actor_is_the_uid_name() {
        let a = cli_actor();
        assert!(a.starts_with("cli:"), "{a}");
        assert!(a.len() > 4, "{a}");
    }
}
