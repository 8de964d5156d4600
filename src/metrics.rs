//! Metrics in the Prometheus/OpenMetrics text format (`GET /metrics`;
//! names and labels in docs/api.md, Metrics), through `prometheus-client`.
//!
//! Nothing here is touched per packet. The media threads keep their
//! counts as they always did (per stream, plus what a shard folded from
//! its ended streams) and [`Metrics::render`] asks each shard for its
//! totals at scrape time ([`crate::media::reactor::Reactor::counters`]):
//! no shared atomic on the packet path, no allocation. The other numbers
//! are counted where they happen (the SIP task, the publisher, the events
//! thread) or set by the server's once-a-second check (backlogs, disk).

use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::media::reactor::Reactor;

/// Content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `outcome` (and, for refusals, `reason`) of `srs_sessions_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SessionLabels {
    pub outcome: String,
    pub reason: String,
}

/// `code` of `srs_sip_responses_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: u16,
}

/// `status` of `srs_recordings_published_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: String,
}

/// `event` and `outcome` of `srs_webhook_deliveries_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    pub event: String,
    pub outcome: String,
}

/// Every metric of the server.
pub struct Metrics {
    registry: Registry,
    pub sessions_active: Gauge,
    pub sessions: Family<SessionLabels, Counter>,
    pub sip_responses: Family<CodeLabel, Counter>,
    rtp_received: Counter,
    rtp_lost: Counter,
    rtp_foreign: Counter,
    pub published: Family<StatusLabel, Counter>,
    pub publish_duration: Histogram,
    pub publish_backlog: Gauge,
    pub encoder_backlog: Gauge,
    pub webhook_backlog: Gauge,
    /// Issue 16: recordings waiting for upload to the object store.
    pub upload_backlog: Gauge,
    pub disk_free: Gauge,
    pub overload_active: Gauge,
    pub call_events_received: Counter,
    pub call_events_associated: Counter,
    pub webhook_deliveries: Family<DeliveryLabels, Counter>,
    /// Notifications dropped because the events thread's queue was full.
    pub notifications_dropped: Counter,
    /// The media threads, asked for their totals at scrape time.
    reactor: OnceLock<Reactor>,
    /// One scrape at a time folds the media totals into the counters.
    scrape: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut m = Metrics {
            registry: Registry::default(),
            sessions_active: Gauge::default(),
            sessions: Family::default(),
            sip_responses: Family::default(),
            rtp_received: Counter::default(),
            rtp_lost: Counter::default(),
            rtp_foreign: Counter::default(),
            published: Family::default(),
            // 5 ms to about 80 s.
            publish_duration: Histogram::new(exponential_buckets(0.005, 2.0, 15)),
            publish_backlog: Gauge::default(),
            encoder_backlog: Gauge::default(),
            webhook_backlog: Gauge::default(),
            upload_backlog: Gauge::default(),
            disk_free: Gauge::default(),
            overload_active: Gauge::default(),
            call_events_received: Counter::default(),
            call_events_associated: Counter::default(),
            webhook_deliveries: Family::default(),
            notifications_dropped: Counter::default(),
            reactor: OnceLock::new(),
            scrape: tokio::sync::Mutex::new(()),
        };
        let r = &mut m.registry;
        // Counters get their `_total` suffix from the encoder.
        r.register(
            "srs_sessions_active",
            "Recording sessions answered and not ended",
            m.sessions_active.clone(),
        );
        r.register(
            "srs_sessions",
            "New recording sessions by outcome: answered, cancelled (before the answer), failed (start-up), refused (reason: before anything was allocated)",
            m.sessions.clone(),
        );
        r.register(
            "srs_sip_responses",
            "SIP responses sent, by status code (retransmissions included)",
            m.sip_responses.clone(),
        );
        r.register(
            "srs_rtp_packets_received",
            "RTP packets received on recorded streams",
            m.rtp_received.clone(),
        );
        r.register(
            "srs_rtp_packets_lost",
            "RTP packets missing by sequence number (filled with silence)",
            m.rtp_lost.clone(),
        );
        r.register(
            "srs_rtp_packets_foreign",
            "Packets from a source other than the stream's (dropped)",
            m.rtp_foreign.clone(),
        );
        r.register(
            "srs_recordings_published",
            "Recordings published into the drop, by status",
            m.published.clone(),
        );
        r.register(
            "srs_publish_duration_seconds",
            "From a session's end to its recording in the drop and handed to the index",
            m.publish_duration.clone(),
        );
        r.register(
            "srs_publish_backlog",
            "Recordings ended and not yet published (encoding or waiting for the publisher)",
            m.publish_backlog.clone(),
        );
        r.register(
            "srs_encoder_backlog",
            "Stereo/Opus encodes queued or running",
            m.encoder_backlog.clone(),
        );
        r.register(
            "srs_webhook_backlog",
            "Webhook deliveries pending (neither delivered nor dead)",
            m.webhook_backlog.clone(),
        );
        r.register(
            "srs_upload_backlog",
            "Recordings waiting for upload to the object store ([storage.object])",
            m.upload_backlog.clone(),
        );
        r.register(
            "srs_disk_free_bytes",
            "Free bytes on the drop's file system",
            m.disk_free.clone(),
        );
        r.register(
            "srs_overload_active",
            "1 while new sessions are refused for SIP overload (503 Overloaded), else 0",
            m.overload_active.clone(),
        );
        r.register(
            "srs_call_events_received",
            "Call events stored (POST /api/v1/call-events), duplicates excluded",
            m.call_events_received.clone(),
        );
        r.register(
            "srs_call_events_associated",
            "Ties of a call event to a recording",
            m.call_events_associated.clone(),
        );
        r.register(
            "srs_webhook_deliveries",
            "Webhook delivery attempts by event and outcome (delivered, failed, dead)",
            m.webhook_deliveries.clone(),
        );
        r.register(
            "srs_notifications_dropped",
            "Webhook notifications lost because the events thread was too far behind",
            m.notifications_dropped.clone(),
        );
        m
    }
}

impl Metrics {
    /// The media threads whose counters a scrape folds in.
    pub fn set_reactor(&self, reactor: Reactor) {
        let _ = self.reactor.set(reactor);
    }

    /// One new session's outcome (`reason` for refusals, else empty).
    pub fn session(&self, outcome: &str, reason: &str) {
        self.sessions
            .get_or_create(&SessionLabels {
                outcome: outcome.into(),
                reason: reason.into(),
            })
            .inc();
    }

    /// `n` more refusals for `reason`.
    pub fn refused(&self, reason: &str, n: u64) {
        self.sessions
            .get_or_create(&SessionLabels {
                outcome: "refused".into(),
                reason: reason.into(),
            })
            .inc_by(n);
    }

    /// A SIP response sent: its status code, from its first line.
    pub fn sip_response(&self, payload: &[u8]) {
        if let Some(code) = payload
            .strip_prefix(b"SIP/2.0 ")
            .and_then(|r| r.get(..3))
            .and_then(|c| std::str::from_utf8(c).ok())
            .and_then(|c| c.parse::<u16>().ok())
        {
            self.sip_responses.get_or_create(&CodeLabel { code }).inc();
        }
    }

    /// A recording published with `status`, `secs` after its session ended.
    pub fn published(&self, status: &str, secs: f64) {
        self.published
            .get_or_create(&StatusLabel {
                status: status.into(),
            })
            .inc();
        self.publish_duration.observe(secs);
    }

    /// A webhook attempt's outcome.
    pub fn delivery(&self, event: &str, outcome: &str) {
        self.webhook_deliveries
            .get_or_create(&DeliveryLabels {
                event: event.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    /// The text of a scrape: the media threads' totals folded in first.
    pub async fn render(&self) -> String {
        let _one = self.scrape.lock().await;
        if let Some(r) = self.reactor.get() {
            let t = r.counters().await;
            for (c, total) in [
                (&self.rtp_received, t.received),
                (&self.rtp_lost, t.lost),
                (&self.rtp_foreign, t.foreign),
            ] {
                // Totals only grow; a stream's live count can trail its
                // final one by what its reorder buffer held.
                let now = c.get();
                if total > now {
                    c.inc_by(total - now);
                }
            }
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding the metrics failed");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_text_has_every_name_of_the_issue() {
        let m = Metrics::default();
        m.session("answered", "");
        m.refused("rate-limit", 2);
        m.sip_response(b"SIP/2.0 503 Rate Limit\r\n");
        m.sip_response(b"INVITE sip:x SIP/2.0\r\n");
        m.published("complete", 0.02);
        let text = m.render().await;
        for name in [
            "srs_sessions_active ",
            "srs_sessions_total{outcome=\"answered\",reason=\"\"} 1",
            "srs_sessions_total{outcome=\"refused\",reason=\"rate-limit\"} 2",
            "srs_sip_responses_total{code=\"503\"} 1",
            "srs_rtp_packets_received_total 0",
            "srs_rtp_packets_lost_total 0",
            "srs_rtp_packets_foreign_total 0",
            "srs_recordings_published_total{status=\"complete\"} 1",
            "srs_publish_duration_seconds_bucket{le=\"0.04\"} 1",
            "srs_publish_backlog ",
            "srs_encoder_backlog ",
            "srs_webhook_backlog ",
            "srs_upload_backlog ",
            "srs_disk_free_bytes ",
            "srs_overload_active ",
        ] {
            assert!(text.contains(name), "{name} missing:\n{text}");
        }
        assert_eq!(
            text.matches("srs_sip_responses_total{").count(),
            1,
            "{text}"
        );
    }

    #[tokio::test]
    async fn the_grafana_dashboard_uses_only_names_that_exist() {
        let m = Metrics::default();
        m.session("answered", "");
        m.sip_response(b"SIP/2.0 200 OK");
        m.published("complete", 0.1);
        m.delivery("recording.published", "delivered");
        let text = m.render().await;
        let dashboard = include_str!("../docs/grafana-dashboard.json");
        let mut names = 0;
        for (i, _) in dashboard.match_indices("srs_") {
            let name: String = dashboard[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if name == "srs_" {
                continue;
            }
            names += 1;
            assert!(
                text.contains(&format!("{name} ")) || text.contains(&format!("{name}{{")),
                "{name} of the dashboard is not a metric"
            );
        }
        assert!(names >= 15, "{names}");
    }
}
