//! Sign-in sessions of the web page (docs/web.md, Sign-in): an API token
//! is posted once (`POST /api/v1/login`) and exchanged for a session
//! cookie, so the page never keeps the secret (not in a URL, not in
//! `localStorage`, not in a script variable after the form is sent).
//!
//! - The cookie holds a random 256-bit session id; it is `HttpOnly`
//!   (scripts cannot read it), `SameSite=Strict` (no other site's page can
//!   make the browser send it), `Path=/`, and on HTTPS `Secure` with the
//!   `__Host-` prefix (no subdomain can set or shadow it).
//! - The table is in memory, keyed by the SHA-256 of the id (as tokens
//!   are): a lookup compares no secret, so it leaks no timing. It keeps
//!   the hash of the token, never the token: each request finds the token
//!   again in the tokens in force, so a session has exactly its token's
//!   role and scope, and dies with it when the token is revoked.
//! - Each session has a CSRF token too, given to the page by `POST
//!   /api/v1/login` and `GET /api/v1/me`; a request authenticated by the
//!   cookie that changes anything (any method but GET, HEAD, OPTIONS) must
//!   send it in `X-CSRF-Token` (else 403). `SameSite=Strict` alone already
//!   stops cross-site requests in current browsers; the token also stops
//!   a same-site attacker (another application on a sibling host) and
//!   older browsers.
//! - A session ends after `http.session_idle_timeout_s` without a request,
//!   after `http.session_max_age_s` in all, at `POST /api/v1/logout`, or
//!   when the server restarts (the table is not kept). At most
//!   [`MAX_SESSIONS`] live at once: the least recently used goes first.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::auth::{new_secret, sha256_hex};

/// Sessions kept at once (memory bound: about 300 bytes each).
pub const MAX_SESSIONS: usize = 10_000;

/// The cookie's name on plain HTTP.
pub const COOKIE: &str = "srs_session";
/// The cookie's name on HTTPS: the `__Host-` prefix makes the browser
/// refuse it unless `Secure`, `Path=/` and without `Domain`.
pub const SECURE_COOKIE: &str = "__Host-srs_session";

/// The header a cookie-authenticated change must carry.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// One signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    /// SHA-256 of the token's secret (as the token set keys it).
    pub token_hash: String,
    /// The CSRF token of this session.
    pub csrf: String,
    created: Instant,
    last_used: Instant,
}

/// What a request found in its cookie.
#[derive(Debug, Clone)]
pub struct Found {
    pub token_hash: String,
    pub csrf: String,
}

/// The sessions of one server.
#[derive(Debug)]
pub struct Sessions {
    table: Mutex<HashMap<String, Session>>,
    idle: Duration,
    max_age: Duration,
    /// Whether cookies are `Secure` (the API speaks HTTPS).
    pub secure: bool,
}

/// A new session: the cookie's value and the CSRF token.
#[derive(Debug)]
pub struct Opened {
    pub id: String,
    pub csrf: String,
}

/// The system's random generator failed (it does not, on Linux).
#[derive(Debug, thiserror::Error)]
#[error("the system random generator failed")]
pub struct NoRandom;

impl Sessions {
    pub fn new(idle: Duration, max_age: Duration, secure: bool) -> Sessions {
        Sessions {
            table: Mutex::new(HashMap::new()),
            idle,
            max_age,
            secure,
        }
    }

    /// The cookie's name.
    pub fn cookie_name(&self) -> &'static str {
        if self.secure {
            SECURE_COOKIE
        } else {
            COOKIE
        }
    }

    /// Opens a session for the token whose secret hashes to `token_hash`.
    pub fn open(&self, token_hash: String, now: Instant) -> Result<Opened, NoRandom> {
        // Same generator and form as the API tokens (256 random bits).
        let id = new_secret().map_err(|_| NoRandom)?;
        let csrf = new_secret().map_err(|_| NoRandom)?;
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        self.expire(&mut t, now);
        if t.len() >= MAX_SESSIONS {
            if let Some(oldest) = t
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| k.clone())
            {
                t.remove(&oldest);
            }
        }
        t.insert(
            sha256_hex(id.as_bytes()),
            Session {
                token_hash,
                csrf: csrf.clone(),
                created: now,
                last_used: now,
            },
        );
        Ok(Opened { id, csrf })
    }

    /// The live session of cookie value `id` (its use noted), or `None`.
    pub fn find(&self, id: &str, now: Instant) -> Option<Found> {
        let key = sha256_hex(id.as_bytes());
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let alive = t.get(&key).map(|s| self.alive(s, now))?;
        if !alive {
            t.remove(&key);
            return None;
        }
        let s = t.get_mut(&key)?;
        s.last_used = now;
        Some(Found {
            token_hash: s.token_hash.clone(),
            csrf: s.csrf.clone(),
        })
    }

    /// Ends the session of cookie value `id`; whether there was one.
    pub fn close(&self, id: &str) -> bool {
        let key = sha256_hex(id.as_bytes());
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        t.remove(&key).is_some()
    }

    /// Sessions kept now (expired ones included until swept).
    pub fn len(&self) -> usize {
        self.table.lock().map(|t| t.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn alive(&self, s: &Session, now: Instant) -> bool {
        now.saturating_duration_since(s.last_used) < self.idle
            && now.saturating_duration_since(s.created) < self.max_age
    }

    fn expire(&self, t: &mut HashMap<String, Session>, now: Instant) {
        t.retain(|_, s| self.alive(s, now));
    }

    /// The `Set-Cookie` value that gives the browser session `id`.
    pub fn set_cookie(&self, id: &str) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!(
            "{}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            self.cookie_name(),
            self.max_age.as_secs()
        )
    }

    /// The `Set-Cookie` value that removes the cookie.
    pub fn clear_cookie(&self) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!(
            "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}",
            self.cookie_name()
        )
    }

    /// The value of this server's cookie in a `Cookie` request header.
    pub fn cookie_in<'a>(&self, header: &'a str) -> Option<&'a str> {
        let name = self.cookie_name();
        header.split(';').find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k.trim() == name && !v.trim().is_empty()).then(|| v.trim())
        })
    }
}

/// Whether `given` is the session's CSRF token, in time independent of
/// where they differ.
pub fn csrf_matches(expected: &str, given: Option<&str>) -> bool {
    let Some(given) = given else {
        return false;
    };
    let (a, b) = (expected.as_bytes(), given.trim().as_bytes());
    if a.len() != b.len() || a.is_empty() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether a method changes state (and so needs the CSRF token).
pub fn changes_state(method: &axum::http::Method) -> bool {
    !matches!(
        *method,
        axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions() -> Sessions {
        Sessions::new(Duration::from_secs(60), Duration::from_secs(600), false)
    }

    #[test]
    fn a_session_is_found_by_its_cookie_only() {
        let s = sessions();
        let t0 = Instant::now();
        let o = s.open("hash-a".into(), t0).unwrap();
        assert!(o.id.len() >= 43 && o.csrf.len() >= 43 && o.id != o.csrf);
        let f = s.find(&o.id, t0).unwrap();
        assert_eq!(
            (f.token_hash.as_str(), f.csrf.as_str()),
            ("hash-a", o.csrf.as_str())
        );
        assert!(s.find(&o.csrf, t0).is_none(), "the CSRF token is no cookie");
        assert!(s.find("srs_guess", t0).is_none());
        // The table keeps only the hash of the id.
        let t = s.table.lock().unwrap();
        assert!(!t.contains_key(&o.id));
    }

    #[test]
    fn sessions_expire_when_idle_and_when_old() {
        let s = sessions();
        let t0 = Instant::now();
        let o = s.open("h".into(), t0).unwrap();
        // Used every 50 s: alive past the idle timeout of 60 s...
        for k in 1..=11 {
            assert!(
                s.find(&o.id, t0 + Duration::from_secs(50 * k)).is_some(),
                "{k}"
            );
        }
        // ...but not past the maximum age (600 s).
        assert!(s.find(&o.id, t0 + Duration::from_secs(601)).is_none());
        let o = s.open("h".into(), t0).unwrap();
        assert!(
            s.find(&o.id, t0 + Duration::from_secs(61)).is_none(),
            "idle"
        );
        assert!(s.find(&o.id, t0).is_none(), "removed once expired");
    }

    #[test]
    fn logout_closes_and_the_table_is_bounded() {
        let s = sessions();
        let t0 = Instant::now();
        let o = s.open("h".into(), t0).unwrap();
        assert!(s.close(&o.id));
        assert!(!s.close(&o.id));
        assert!(s.find(&o.id, t0).is_none());
        let first = s.open("first".into(), t0).unwrap();
        for i in 1..MAX_SESSIONS + 5 {
            s.open(format!("h{i}"), t0 + Duration::from_millis(i as u64))
                .unwrap();
        }
        assert_eq!(s.len(), MAX_SESSIONS);
        assert!(
            s.find(&first.id, t0).is_none(),
            "least recently used went first"
        );
    }

    #[test]
    fn cookies() {
        let s = sessions();
        let c = s.set_cookie("abc");
        assert_eq!(
            c,
            "srs_session=abc; Path=/; HttpOnly; SameSite=Strict; Max-Age=600"
        );
        assert!(s.clear_cookie().contains("Max-Age=0"));
        let secure = Sessions::new(Duration::from_secs(1), Duration::from_secs(2), true);
        let c = secure.set_cookie("abc");
        assert!(c.starts_with("__Host-srs_session=abc;"), "{c}");
        assert!(c.ends_with("; Secure"), "{c}");
        assert_eq!(s.cookie_in("a=1; srs_session=xyz; b=2"), Some("xyz"));
        assert_eq!(s.cookie_in("srs_session_old=1"), None);
        assert_eq!(s.cookie_in("srs_session="), None);
        assert_eq!(
            secure.cookie_in("srs_session=xyz"),
            None,
            "plain name on HTTPS"
        );
        assert_eq!(secure.cookie_in("__Host-srs_session=k"), Some("k"));
    }

    #[test]
    fn csrf_tokens_compare_exactly() {
        assert!(csrf_matches("abc", Some("abc")));
        assert!(csrf_matches("abc", Some(" abc ")));
        assert!(!csrf_matches("abc", Some("abd")));
        assert!(!csrf_matches("abc", Some("ab")));
        assert!(!csrf_matches("abc", None));
        assert!(!csrf_matches("", Some("")));
        use axum::http::Method;
        assert!(!changes_state(&Method::GET));
        assert!(!changes_state(&Method::HEAD));
        for m in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
            assert!(changes_state(&m));
        }
    }
}
