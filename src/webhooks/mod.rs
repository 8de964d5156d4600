//! Webhooks (issue 14; docs/api.md, Webhooks): an HTTP POST of JSON to
//! each `[[webhooks]]` receiver when a recording starts, is published,
//! fails or is deleted, and when call events tie to a recording already
//! published.
//!
//! - At least once: every delivery is a row of the durable outbox in the
//!   index ([`outbox`]), written by the events thread
//!   ([`crate::events::worker`]), kept until the receiver answers 2xx or
//!   the delivery's `retry_for` runs out (then it is dead: the dead-letter
//!   list of `srs webhooks --failed`).
//! - Deliveries run on their own thread and runtime ([`delivery`]), at
//!   most `max_in_flight` at once per receiver, each within `timeout_ms`;
//!   failures retry with exponential backoff and jitter ([`backoff`]).
//!   Nothing on the SIP, media or publishing path ever waits for them.
//! - Each POST carries `X-Srs-Event`, `X-Srs-Delivery` (the delivery id,
//!   the same on every retry: receivers deduplicate by it) and
//!   `X-Srs-Signature: sha256=<hex HMAC-SHA256 of the body>` ([`sign`]).

pub mod delivery;
pub mod outbox;

use serde::Deserialize;

/// The events a webhook may subscribe to.
pub const EVENTS: [&str; 5] = [
    "recording.started",
    "recording.published",
    "recording.failed",
    "recording.deleted",
    "call-events.associated",
];

/// One `[[webhooks]]` entry.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where deliveries are POSTed (`http://` or `https://`).
    pub url: String,
    /// Key of the HMAC-SHA256 signature of each body.
    pub secret: String,
    /// Events sent to it (default: all of [`EVENTS`]).
    #[serde(default = "all_events")]
    pub events: Vec<String>,
    /// Seconds a delivery is retried before it is dead (default a day).
    #[serde(default = "default_retry_for")]
    pub retry_for: u64,
    /// Time one attempt may take, connecting and the answer included.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Wait before the first retry; doubles with each failure (up to
    /// [`MAX_BACKOFF_MS`]), with jitter.
    #[serde(default = "default_retry_initial_ms")]
    pub retry_initial_ms: u64,
    /// Deliveries to this receiver in flight at once.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
}

// The secret never goes into a log.
impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url)
            .field("events", &self.events)
            .field("retry_for", &self.retry_for)
            .finish_non_exhaustive()
    }
}

fn all_events() -> Vec<String> {
    EVENTS.iter().map(|e| e.to_string()).collect()
}
fn default_retry_for() -> u64 {
    86_400
}
fn default_timeout_ms() -> u64 {
    10_000
}
fn default_retry_initial_ms() -> u64 {
    1_000
}
fn default_max_in_flight() -> usize {
    4
}

/// Longest wait between two attempts.
pub const MAX_BACKOFF_MS: u64 = 3_600_000;

impl WebhookConfig {
    /// Whether it subscribes to `event`.
    pub fn wants(&self, event: &str) -> bool {
        self.events.iter().any(|e| e == event)
    }

    /// Checks one entry: the config key at fault and why.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let uri: Result<hyper::Uri, _> = self.url.parse();
        match uri {
            Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => {}
            _ => {
                return Err((
                    "webhooks.url",
                    format!("{:?}: expected an http:// or https:// URL", self.url),
                ))
            }
        }
        if self.secret.trim().is_empty() {
            return Err(("webhooks.secret", "must not be empty".into()));
        }
        if let Some(e) = self.events.iter().find(|e| !EVENTS.contains(&e.as_str())) {
            return Err((
                "webhooks.events",
                format!("unknown event {e:?}: use {}", EVENTS.join(", ")),
            ));
        }
        if self.timeout_ms == 0 || self.max_in_flight == 0 || self.retry_initial_ms == 0 {
            return Err((
                "webhooks.timeout_ms",
                "timeout_ms, retry_initial_ms and max_in_flight must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// `sha256=<lower-case hex HMAC-SHA256 of body under secret>`: the
/// `X-Srs-Signature` header.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = ring::hmac::sign(&key, body);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in tag.as_ref() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The wait before the next attempt after `failures` failed ones:
/// `initial * 2^(failures-1)`, at most [`MAX_BACKOFF_MS`], times a jitter
/// in [0.5, 1) (`jitter` in [0, 1)) so that receivers coming back are not
/// hit by every delivery at the same instant.
pub fn backoff(initial_ms: u64, failures: u32, jitter: f64) -> u64 {
    let exp = failures.saturating_sub(1).min(40);
    let full = initial_ms
        .saturating_mul(1u64 << exp.min(30))
        .min(MAX_BACKOFF_MS);
    let j = 0.5 + 0.5 * jitter.clamp(0.0, 1.0);
    ((full as f64) * j).max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_rfc_4231_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        assert_eq!(backoff(1000, 1, 0.999_999), 999);
        assert_eq!(backoff(1000, 1, 0.0), 500);
        assert_eq!(backoff(1000, 2, 0.0), 1000);
        assert_eq!(backoff(1000, 5, 0.0), 8000);
        assert_eq!(backoff(1000, 40, 0.0), MAX_BACKOFF_MS / 2);
        assert!(backoff(1000, 100, 0.99) < MAX_BACKOFF_MS);
    }

    #[test]
    fn entries_are_checked_by_key() {
        let ok: WebhookConfig =
            toml::from_str("url = \"https://qm.example/hook\"\nsecret = \"s\"\n").unwrap();
        assert_eq!(ok.check(), Ok(()));
        assert_eq!(ok.events.len(), 5);
        assert_eq!((ok.retry_for, ok.max_in_flight), (86_400, 4));
        assert!(!format!("{ok:?}").contains("\"s\""), "no secret in Debug");
        for (text, key) in [
            ("url = \"ftp://x\"\nsecret = \"s\"", "webhooks.url"),
            ("url = \"http://x\"\nsecret = \" \"", "webhooks.secret"),
            (
                "url = \"http://x\"\nsecret = \"s\"\nevents = [\"recording.done\"]",
                "webhooks.events",
            ),
        ] {
            let c: WebhookConfig = toml::from_str(text).unwrap();
            assert_eq!(c.check().unwrap_err().0, key, "{text}");
        }
        assert!(
            toml::from_str::<WebhookConfig>("url = \"http://x\"\nsecret = \"s\"\nsecrte = 1")
                .is_err()
        );
    }
}
