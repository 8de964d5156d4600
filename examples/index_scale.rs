//! Issue 16's performance figures (docs/performance.md, "Issue 16: shared
//! index and object store"): the index at scale on SQLite and PostgreSQL,
//! the publication rate with group commit, and upload throughput to an
//! object store.
//!
//!     cargo run --release --example index_scale -- index   [--n 10000000] [--backends sqlite,postgres]
//!         [--index postgres://...] [--dir DIR] [--events 3] [--searches 1000] [--keep] [--reuse]
//!     cargo run --release --example index_scale -- publish [--n 2000] [--batch 1 --batch 256]
//!     cargo run --release --example index_scale -- upload  [--n 50] [--talk 180] [--endpoint URL]
//!
//! `index`: generates `--n` recordings (realistic `RecordingMeta`: two
//! participants, Record DN of one of `--agents` agents, customer ANI, DNIS,
//! CallUUID, ConnID and the other Genesys correlation ids, two streams and
//! WAV files with hashes, sometimes a transfer or DTMF; start times spread
//! in order over `--months` months, as they are published) and writes them
//! through the publisher's index path: [`IndexWriter::index`] in batches of
//! [`PUBLISH_BATCH`], the publisher's group commit. Before each batch, its
//! recordings' call events (`--events` per recording, 0 to 3: Established,
//! AttachedDataChanged, Released, with attached data) are stored as the
//! events thread stores a post (`events::store::insert` and
//! `recordings_for`, one transaction per batch), so publication ties them
//! (`upsert_many_in`: the batch's links) as it does live. Then it runs `--searches` searches of each
//! kind with random existing keys through [`Index::search`] (the API's
//! query code, a page of 100 and the total), and prints p50/p99, the query
//! plans and the size of the index per recording. On PostgreSQL the tables
//! are `VACUUM (ANALYZE)`d after loading (what autovacuum does on a live
//! system); the SQLite index is searched as srs leaves it (no `ANALYZE`).
//!
//! `publish`: the publication rate alone, SQLite and PostgreSQL in the
//! same run, one fresh index each: `--n` recordings through
//! [`IndexWriter::index`] in batches of each `--batch` (1: every
//! publication alone, the worst case; 256: the publisher's batch under
//! load), their events stored beforehand (untimed).
//!
//! `upload`: `--n` recordings of `--talk` seconds, two mono WAVs each (8
//! kHz 16-bit, as srs records G.711), published into a drop with their
//! hashes and queued (`.uploads`); then the upload thread
//! ([`srs::store::objects::Uploader`]: upload, read back, verify, record in
//! the index) drains the queue to an S3 endpoint: MB/s and recordings/s.
//! Without `--endpoint` it starts `s3s-fs` (PATH, `~/.cargo/bin` or
//! `/work/tools/bin`) on loopback.
//!
//! PostgreSQL: `--index postgres://...` (password from `SRS_INDEX_PASSWORD`
//! or `PGPASSWORD`), else a cluster of its own (`srs::testkit::pg`: Debian's
//! binaries, data under `$TMPDIR`, stopped at exit) with `fsync` turned
//! back on (the test cluster runs without), default settings otherwise.
//!
//! The last line of each mode is one JSON object with every figure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use clap::{Parser, Subcommand};
use serde_json::json;
use srs::events::{store as events_store, CallEvent};
use srs::recording::{
    DtmfMeta, EventMeta, FileMeta, ParticipantMeta, RecordingMeta, StoredFile, StreamMeta,
};
use srs::store::backend::{IndexAt, PgTarget};
use srs::store::db::Dialect;
use srs::store::publisher::PUBLISH_BATCH;
use srs::store::{Index, IndexWriter, Query};

#[derive(Parser)]
#[command(about = "issue 16 benches: index at scale, publication rate, uploads")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(clap::Args, Clone)]
struct Common {
    /// Working directory (SQLite file, drop, object store); default: a new
    /// temporary directory, removed at the end unless --keep.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the working directory (and print where it is).
    #[arg(long)]
    keep: bool,
    /// An existing PostgreSQL database instead of a cluster of our own.
    #[arg(long, value_name = "postgres://...")]
    index: Option<String>,
    /// Which back-ends, in order.
    #[arg(long, value_delimiter = ',', default_value = "sqlite,postgres")]
    backends: Vec<String>,
    /// Call events per recording (0 to 3).
    #[arg(long, default_value_t = 3)]
    events: usize,
    /// Agents (Record DNs).
    #[arg(long, default_value_t = 2000)]
    agents: u64,
    /// Months the start times are spread over.
    #[arg(long, default_value_t = 12)]
    months: u32,
    /// Seed of the generator.
    #[arg(long, default_value_t = 16)]
    seed: u64,
}

#[derive(Subcommand)]
enum Mode {
    /// Generate an index of --n recordings, then time searches.
    Index {
        #[arg(long, default_value_t = 10_000_000)]
        n: u64,
        /// Searches of each kind.
        #[arg(long, default_value_t = 1000)]
        searches: usize,
        /// Search an index left by an earlier run with --keep (same --dir,
        /// --n and --seed) instead of generating it.
        #[arg(long)]
        reuse: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Publication rate through the publisher's index path.
    Publish {
        #[arg(long, default_value_t = 2000)]
        n: u64,
        /// Recordings per group commit (repeat for several runs).
        #[arg(long, default_values_t = [1usize, PUBLISH_BATCH])]
        batch: Vec<usize>,
        #[command(flatten)]
        common: Common,
    },
    /// Upload throughput through the upload queue.
    Upload {
        #[arg(long, default_value_t = 50)]
        n: u64,
        /// Seconds of each call.
        #[arg(long, default_value_t = 180)]
        talk: u32,
        /// An S3 endpoint (bucket from --bucket, keys from AWS_ACCESS_KEY_ID
        /// and AWS_SECRET_ACCESS_KEY); default: s3s-fs on loopback.
        #[arg(long)]
        endpoint: Option<String>,
        #[arg(long, default_value = "recordings")]
        bucket: String,
        #[command(flatten)]
        common: Common,
    },
}

// ------------------------------------------------------------ generation

/// splitmix64: the generator of every value, so that the searches can
/// recompute any recording's keys from its number.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

struct Gen {
    n: u64,
    seed: u64,
    agents: u64,
    start: DateTime<Utc>,
    span_ms: u64,
    events: usize,
}

const SITES: [&str; 4] = ["Paris", "Lyon", "Montreal", "Dakar"];
const QUEUES: [&str; 6] = [
    "VQ_Sales",
    "VQ_Support",
    "VQ_Billing",
    "VQ_Retention",
    "VQ_Premium",
    "VQ_Overflow",
];
const DISPOSITIONS: [&str; 5] = ["Resolved", "Callback", "Escalated", "Sale", "NoSale"];

impl Gen {
    fn new(n: u64, c: &Common) -> Gen {
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        Gen {
            n: n.max(1),
            seed: c.seed,
            agents: c.agents.max(1),
            start,
            span_ms: u64::from(c.months.max(1)) * 30 * 86_400_000,
            events: c.events.min(3),
        }
    }

    fn h(&self, i: u64, what: u64) -> u64 {
        mix(self.seed ^ mix(i.wrapping_mul(16).wrapping_add(what)))
    }

    /// In publication order: recording `i` starts at `i / n` of the span.
    fn started(&self, i: u64) -> DateTime<Utc> {
        let step = self.span_ms / self.n;
        let ms = i * step + self.h(i, 1) % step.max(1);
        self.start + chrono::Duration::milliseconds(ms as i64)
    }

    fn agent_dn(&self, i: u64) -> String {
        format!("7{:04}", self.h(i, 2) % self.agents)
    }

    /// About three calls per customer.
    fn customer(&self, i: u64) -> u64 {
        self.h(i, 3) % (self.n / 3).max(1)
    }

    fn ani(&self, i: u64) -> String {
        format!("+3361{:07}", self.customer(i))
    }

    fn call_uuid(&self, i: u64) -> String {
        // Genesys CallUUIDs: 32 characters of [0-9A-Z].
        const ALPHA: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUV";
        let words = [self.h(i, 4), self.h(i, 5), self.h(i, 72)];
        (0..32)
            .map(|k| ALPHA[((words[k / 12] >> (5 * (k % 12))) & 31) as usize] as char)
            .collect()
    }

    fn conn_id(&self, i: u64) -> String {
        format!("{:016x}", self.h(i, 6))
    }

    fn case_id(&self, i: u64) -> String {
        format!("CASE-{:09}", self.h(i, 7) % 1_000_000_000)
    }

    fn recording_id(&self, i: u64) -> String {
        let ms = self.started(i).timestamp_millis() as u64;
        let r = self.h(i, 8).to_le_bytes();
        let r2 = self.h(i, 9).to_le_bytes();
        let mut bytes = [0u8; 10];
        bytes[..8].copy_from_slice(&r);
        bytes[8..].copy_from_slice(&r2[..2]);
        uuid::Builder::from_unix_timestamp_millis(ms, &bytes)
            .into_uuid()
            .to_string()
    }

    fn hex64(&self, i: u64, what: u64) -> String {
        (0..4)
            .map(|k| format!("{:016x}", self.h(i, what + k)))
            .collect()
    }

    /// 30 s to 10 min, most around 4.
    fn talk_ms(&self, i: u64) -> u64 {
        30_000 + (self.h(i, 10) % 300_000) + (self.h(i, 11) % 600_000) / 2
    }

    fn dnis(&self, i: u64) -> String {
        format!("+33800{:06}", 100 + self.h(i, 12) % 20)
    }

    fn meta(&self, i: u64) -> RecordingMeta {
        let started = self.started(i);
        let talk_ms = self.talk_ms(i);
        let ended = started + chrono::Duration::milliseconds(talk_ms as i64);
        let id = self.recording_id(i);
        let agent = self.agent_dn(i);
        let agent_n: u64 = agent[1..].parse().unwrap_or(0);
        let ani = self.ani(i);
        let dnis = self.dnis(i);
        let uuid = self.call_uuid(i);
        let conn = self.conn_id(i);
        let inbound = self.h(i, 13) % 5 != 0;
        let fmt = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut correlation = BTreeMap::new();
        for (k, v) in [
            ("calluuid", uuid.clone()),
            ("connid", conn.clone()),
            ("ani", ani.clone()),
            ("dnis", dnis.clone()),
            ("dn", agent.clone()),
            ("recorddn", agent.clone()),
            ("otherdn", if inbound { ani.clone() } else { dnis.clone() }),
            ("agentid", format!("agent{}", &agent[1..])),
            (
                "genesys_record_id",
                format!("{uuid}_{}", started.format("%Y-%m-%d_%H-%M-%S")),
            ),
            ("sipsappname", "cl2-sips-CTC_1a".to_string()),
        ] {
            correlation.insert(k.to_string(), v);
        }
        let files: Vec<FileMeta> = [("customer", "1"), ("agent", "2")]
            .iter()
            .enumerate()
            .map(|(k, (who, label))| FileMeta {
                name: format!("{who}-{label}.wav"),
                labels: vec![label.to_string()],
                duration_ms: talk_ms,
                sample_rate: 8000,
                channels: 1,
                bytes: 44 + talk_ms * 16,
                sha256: Some(self.hex64(i, 20 + 4 * k as u64)),
                ..Default::default()
            })
            .collect();
        let mut participants = vec![
            ParticipantMeta {
                id: format!("{:x}", self.h(i, 14)),
                aor: Some(format!("sip:{ani}@sbc.example.net")),
                name: None,
                labels: vec!["1".into()],
                file: Some(files[0].name.clone()),
            },
            ParticipantMeta {
                id: format!("{:x}", self.h(i, 15)),
                aor: Some(format!("sip:{agent}@10.28.70.121")),
                name: Some(format!("Agent {agent_n}")),
                labels: vec!["2".into()],
                file: Some(files[1].name.clone()),
            },
        ];
        let packets = talk_ms / 20;
        let streams = ["1", "2"]
            .iter()
            .enumerate()
            .map(|(k, label)| StreamMeta {
                label: label.to_string(),
                codec: "PCMU".into(),
                participant_id: Some(participants[k].id.clone()),
                attribution: None,
                packets_received: packets,
                jitter_ms: 0.4,
                ..Default::default()
            })
            .collect();
        let mut events = Vec::new();
        // One call in ten is transferred to a supervisor.
        if self.h(i, 16) % 10 == 0 {
            let sup = format!("8{:03}", self.h(i, 17) % 200);
            let at = fmt(started + chrono::Duration::milliseconds((talk_ms / 2) as i64));
            events.push(EventMeta {
                at: at.clone(),
                kind: "metadata-update".into(),
                detail: Some("partial".into()),
                ..Default::default()
            });
            events.push(EventMeta {
                at,
                kind: "participant-joined".into(),
                participant_id: Some(format!("{:x}", self.h(i, 18))),
                aor: Some(format!("sip:{sup}@10.28.70.121")),
                ..Default::default()
            });
            participants.push(ParticipantMeta {
                id: format!("{:x}", self.h(i, 18)),
                aor: Some(format!("sip:{sup}@10.28.70.121")),
                name: Some(format!("Supervisor {sup}")),
                labels: vec![],
                file: None,
            });
        }
        // One in twenty has DTMF (an IVR or a card number typed).
        let dtmf = if self.h(i, 19) % 20 == 0 {
            (0..4)
                .map(|k| DtmfMeta {
                    label: "1".into(),
                    digit: ((self.h(i, 30 + k) % 10) as u8 + b'0').to_string(),
                    at_ms: 5_000 + k * 400,
                    duration_ms: 120,
                    at: fmt(started + chrono::Duration::milliseconds(5_000 + k as i64 * 400)),
                })
                .collect()
        } else {
            Vec::new()
        };
        RecordingMeta {
            recording_id: id.clone(),
            call_id: format!("{:016x}{:08x}@10.178.60.190", self.h(i, 40), i),
            status: "complete".into(),
            started_at: fmt(started),
            ended_at: fmt(ended),
            duration_ms: talk_ms,
            source: "10.178.60.190:5060".into(),
            transport: "udp".into(),
            node: Some(if i % 2 == 0 { "srs-a" } else { "srs-b" }.into()),
            record_dn: Some(agent.clone()),
            record_dn_kind: Some("extension".into()),
            geo_location: Some(SITES[(agent_n % 4) as usize].into()),
            direction: Some(if inbound { "inbound" } else { "outbound" }.into()),
            correlation,
            rule: Some("agents".into()),
            path: format!("{}/{id}", started.format("%Y/%m/%d")),
            participants,
            streams,
            files,
            events,
            dtmf,
            metadata_file: Some("metadata.xml".into()),
            user_agent: Some("Genesys-SIPServer/8.1.103.95".into()),
            metadata_files: vec![StoredFile {
                name: "metadata.xml".into(),
                sha256: self.hex64(i, 50),
                bytes: 2100,
            }],
            manifest_sha256: Some(self.hex64(i, 60)),
            ..Default::default()
        }
    }

    fn customer_id(&self, i: u64) -> String {
        format!("C{:08}", self.customer(i))
    }

    /// The call events a CTI connector posts for recording `i`.
    fn call_events(&self, i: u64) -> Vec<CallEvent> {
        let started = self.started(i);
        let at = |ms: i64| {
            (started + chrono::Duration::milliseconds(ms))
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        };
        let agent = self.agent_dn(i);
        let base = CallEvent {
            call_uuid: Some(self.call_uuid(i)),
            conn_id: Some(self.conn_id(i)),
            this_dn: Some(agent.clone()),
            other_dn: Some(self.ani(i)),
            agent_id: Some(format!("agent{}", &agent[1..])),
            ani: Some(self.ani(i)),
            dnis: Some(self.dnis(i)),
            call_type: Some("Inbound".into()),
            ..Default::default()
        };
        let queue = QUEUES[(self.h(i, 70) % QUEUES.len() as u64) as usize];
        let mut out = vec![
            CallEvent {
                event: "EventEstablished".into(),
                time: at(0),
                this_queue: Some(queue.into()),
                user_data: BTreeMap::from([
                    ("CustomerId".into(), self.customer_id(i)),
                    ("Queue".into(), queue.into()),
                    ("Language".into(), "fr".into()),
                ]),
                ..base.clone()
            },
            CallEvent {
                event: "EventAttachedDataChanged".into(),
                time: at(20_000),
                user_data: BTreeMap::from([("CaseId".into(), self.case_id(i))]),
                ..base.clone()
            },
            CallEvent {
                event: "EventReleased".into(),
                time: at(self.talk_ms(i) as i64),
                user_data: BTreeMap::from([(
                    "Disposition".into(),
                    DISPOSITIONS[(self.h(i, 71) % 5) as usize].into(),
                )]),
                ..base
            },
        ];
        out.truncate(self.events);
        out
    }
}

// ------------------------------------------------------------- back-ends

struct Backend {
    name: &'static str,
    at: IndexAt,
}

/// The PostgreSQL index: `--index`, else a fresh database in a cluster of
/// our own (fsync on).
fn postgres(common: &Common) -> Result<IndexAt, String> {
    if let Some(url) = &common.index {
        let pw = PgTarget::password(None).map_err(|e| e.to_string())?;
        return Ok(IndexAt::Postgres(Arc::new(
            PgTarget::parse(url, pw).map_err(|e| e.to_string())?,
        )));
    }
    // The test cluster runs without fsync; a bench must not (later options
    // win: SRS_TEST_PG_OPTS="-c shared_buffers=4GB" adds to this).
    if std::env::var_os("SRS_TEST_PG_OPTS").is_none_or(|o| !o.to_string_lossy().contains("fsync")) {
        let more = std::env::var("SRS_TEST_PG_OPTS").unwrap_or_default();
        // Read by the cluster's start below, on this thread.
        std::env::set_var("SRS_TEST_PG_OPTS", format!("-c fsync=on {more}"));
    }
    let c = srs::testkit::pg::cluster("index_scale").ok_or("PostgreSQL cannot run")?;
    Ok(c.fresh())
}

fn pg_settings(ix: &Index) -> serde_json::Value {
    let show = |name: &str| -> String {
        ix.conn()
            .query_row(&format!("SHOW {name}"), [], |r| r.get::<String>(0))
            .unwrap_or_default()
    };
    json!({
        "version": show("server_version"),
        "fsync": show("fsync"),
        "synchronous_commit": show("synchronous_commit"),
        "shared_buffers": show("shared_buffers"),
    })
}

fn backends(common: &Common, dir: &Path, tag: &str) -> Vec<Backend> {
    let mut out = Vec::new();
    for b in &common.backends {
        match b.as_str() {
            "sqlite" => out.push(Backend {
                name: "sqlite",
                at: IndexAt::Sqlite(dir.join(format!("{tag}.sqlite"))),
            }),
            "postgres" => match postgres(common) {
                Ok(at) => out.push(Backend {
                    name: "postgres",
                    at,
                }),
                Err(e) => eprintln!("*** PostgreSQL skipped: {e}"),
            },
            other => eprintln!("*** unknown back-end {other:?} (sqlite, postgres)"),
        }
    }
    out
}

/// Bytes the index takes.
fn index_bytes(ix: &Index, at: &IndexAt) -> u64 {
    match at {
        IndexAt::Sqlite(p) => std::fs::metadata(p).map(|m| m.len()).unwrap_or(0),
        IndexAt::Postgres(_) => ix
            .conn()
            .query_row("SELECT pg_database_size(current_database())", [], |r| {
                r.get::<i64>(0)
            })
            .map(|b| b as u64)
            .unwrap_or(0),
    }
}

// ---------------------------------------------------------------- writing

/// Stores the batch's call events as the events thread stores posts (one
/// transaction), returns the time it took.
fn post_events(ix: &Index, g: &Gen, range: std::ops::Range<u64>) -> Duration {
    if g.events == 0 {
        return Duration::ZERO;
    }
    let t = Instant::now();
    let c = ix.conn();
    let tx = c.immediate_transaction().expect("events transaction");
    for i in range {
        let now = g
            .started(i)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        for e in g.call_events(i) {
            if events_store::insert(c, &e, &now)
                .expect("storing an event")
                .is_some()
            {
                events_store::recordings_for(c, &e).expect("recordings_for");
            }
        }
    }
    tx.commit().expect("events commit");
    t.elapsed()
}

struct Written {
    index_s: f64,
    events_s: f64,
}

/// Writes recordings `range` through the publisher's path in batches.
fn write(
    writer: &mut IndexWriter,
    ev: &Index,
    g: &Gen,
    n: u64,
    batch: usize,
    quiet: bool,
) -> Written {
    let mut index_s = 0.0;
    let mut events_s = 0.0;
    let mut i = 0u64;
    let mut next_report = Instant::now() + Duration::from_secs(30);
    let t0 = Instant::now();
    while i < n {
        let end = (i + batch as u64).min(n);
        events_s += post_events(ev, g, i..end).as_secs_f64();
        let metas: Vec<RecordingMeta> = (i..end).map(|k| g.meta(k)).collect();
        let t = Instant::now();
        writer.index(metas);
        index_s += t.elapsed().as_secs_f64();
        assert!(
            writer.is_healthy() && writer.pending() == 0,
            "the index refused a batch (see the log above)"
        );
        i = end;
        if !quiet && Instant::now() >= next_report {
            next_report += Duration::from_secs(30);
            eprintln!(
                "  {i}/{n} ({:.0}%) in {:.0} s: {:.0} recordings/s (index), {:.0}/s overall",
                i as f64 * 100.0 / n as f64,
                t0.elapsed().as_secs_f64(),
                i as f64 / index_s,
                i as f64 / t0.elapsed().as_secs_f64()
            );
        }
    }
    Written { index_s, events_s }
}

// -------------------------------------------------------------- searching

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let k = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[k - 1]
}

type MakeQuery = Box<dyn Fn(&Gen, u64) -> Query>;

fn search_kinds(g: &Gen) -> Vec<(&'static str, MakeQuery)> {
    let mut kinds: Vec<(&'static str, MakeQuery)> = vec![
        (
            "dn_agent",
            Box::new(|g: &Gen, i| Query {
                dn: Some(g.agent_dn(i)),
                ..Default::default()
            }),
        ),
        (
            "dn_customer",
            Box::new(|g: &Gen, i| Query {
                dn: Some(g.ani(i)),
                ..Default::default()
            }),
        ),
        (
            "call_uuid",
            Box::new(|g: &Gen, i| Query {
                call_uuid: Some(g.call_uuid(i).to_ascii_lowercase()),
                ..Default::default()
            }),
        ),
        (
            "time_day",
            Box::new(|g: &Gen, i| {
                let s = g.started(i);
                Query {
                    since: Some(s.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
                    until: Some(
                        (s + chrono::Duration::days(1))
                            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    ),
                    ..Default::default()
                }
            }),
        ),
        (
            "dn_agent_month",
            Box::new(|g: &Gen, i| {
                let s = g.started(i);
                Query {
                    dn: Some(g.agent_dn(i)),
                    since: Some(
                        (s - chrono::Duration::days(30))
                            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    ),
                    until: Some(s.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
                    ..Default::default()
                }
            }),
        ),
    ];
    if g.events >= 1 {
        kinds.push((
            "attached_customer",
            Box::new(|g: &Gen, i| Query {
                attached: vec![("CustomerId".into(), g.customer_id(i))],
                ..Default::default()
            }),
        ));
    }
    if g.events >= 2 {
        kinds.push((
            "attached_case",
            Box::new(|g: &Gen, i| Query {
                attached: vec![("CaseId".into(), g.case_id(i))],
                ..Default::default()
            }),
        ));
    }
    kinds
}

fn searches(ix: &Index, g: &Gen, n: u64, per_kind: usize) -> (serde_json::Value, String) {
    let mut out = serde_json::Map::new();
    let mut plans = String::new();
    for (name, make) in search_kinds(g) {
        let example = make(g, g.h(0, 99) % n);
        let plan =
            srs::store::index::explain_search(ix, &example).unwrap_or_else(|e| e.to_string());
        plans.push_str(&format!("--- {name}: {}\n{plan}\n", describe(&example)));
        let mut ms = Vec::with_capacity(per_kind);
        let mut found = 0u64;
        let mut empty = 0u64;
        for k in 0..per_kind as u64 {
            let i = mix(g.seed ^ 0x5ea2c4 ^ k.wrapping_mul(31) ^ name.len() as u64) % n;
            let q = make(g, i);
            let t = Instant::now();
            let (page, total) = ix.search(&q).expect("search");
            ms.push(t.elapsed().as_secs_f64() * 1e3);
            found += total;
            if page.is_empty() {
                empty += 1;
            }
        }
        ms.sort_by(f64::total_cmp);
        let r = json!({
            "p50_ms": round(percentile(&ms, 0.50)),
            "p99_ms": round(percentile(&ms, 0.99)),
            "max_ms": round(*ms.last().unwrap_or(&0.0)),
            "mean_total": round(found as f64 / per_kind.max(1) as f64),
            "empty": empty,
        });
        eprintln!("  {name:18} {r}");
        out.insert(name.into(), r);
    }
    (serde_json::Value::Object(out), plans)
}

fn describe(q: &Query) -> String {
    serde_json::to_string(q).unwrap_or_default()
        + &q.attached
            .iter()
            .map(|(k, v)| format!(" attached.{k}={v}"))
            .collect::<String>()
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

// ------------------------------------------------------------------ modes

fn workdir(common: &Common) -> (PathBuf, Option<tempfile::TempDir>) {
    match &common.dir {
        Some(d) => {
            std::fs::create_dir_all(d).expect("creating --dir");
            (d.clone(), None)
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("srs-index-scale")
                .tempdir()
                .expect("temporary directory");
            (t.path().to_path_buf(), Some(t))
        }
    }
}

fn index_mode(n: u64, per_kind: usize, reuse: bool, common: &Common) -> serde_json::Value {
    let (dir, tmp) = workdir(common);
    let g = Gen::new(n, common);
    let mut results = Vec::new();
    for b in backends(common, &dir, "index") {
        eprintln!("== {}: {} recordings at {}", b.name, n, b.at);
        let ix = Index::open_at(&b.at).expect("opening the index");
        let mut r = serde_json::Map::new();
        r.insert("backend".into(), b.name.into());
        if ix.dialect() == Dialect::Postgres {
            r.insert("settings".into(), pg_settings(&ix));
        }
        let have = ix.count().expect("count");
        if reuse && have == n {
            eprintln!("  reusing the {have} recordings there");
        } else {
            assert_eq!(have, 0, "the index is not empty: a new --dir, or --reuse");
            let mut writer = IndexWriter::open(b.at.clone());
            // The events thread's own connection, as in the server.
            let events = Index::open_at(&b.at).expect("opening the index");
            let t = Instant::now();
            let w = write(&mut writer, &events, &g, n, PUBLISH_BATCH, false);
            let wall = t.elapsed().as_secs_f64();
            r.insert("insert_wall_s".into(), round(wall).into());
            r.insert("index_s".into(), round(w.index_s).into());
            r.insert("events_s".into(), round(w.events_s).into());
            r.insert(
                "recordings_per_s_index".into(),
                round(n as f64 / w.index_s).into(),
            );
            r.insert(
                "recordings_per_s_overall".into(),
                round(n as f64 / wall).into(),
            );
            eprintln!(
                "  inserted in {wall:.1} s: {:.0} recordings/s through IndexWriter (group commit of {PUBLISH_BATCH}), events {:.1} s",
                n as f64 / w.index_s,
                w.events_s
            );
            if ix.dialect() == Dialect::Postgres {
                let t = Instant::now();
                ix.conn().execute_batch("VACUUM (ANALYZE)").expect("vacuum");
                r.insert(
                    "vacuum_analyze_s".into(),
                    round(t.elapsed().as_secs_f64()).into(),
                );
            }
        }
        assert_eq!(ix.count().unwrap(), n, "every recording is in the index");
        let bytes = index_bytes(&ix, &b.at);
        r.insert("index_bytes".into(), bytes.into());
        r.insert(
            "bytes_per_recording".into(),
            round(bytes as f64 / n as f64).into(),
        );
        eprintln!(
            "  index size {bytes} bytes: {:.0} bytes per recording",
            bytes as f64 / n as f64
        );
        let (s, plans) = searches(&ix, &g, n, per_kind);
        println!("query plans on {} ({n} recordings):\n{plans}", b.name);
        r.insert("searches".into(), s);
        results.push(serde_json::Value::Object(r));
    }
    if common.keep {
        eprintln!("kept {}", dir.display());
        if let Some(t) = tmp {
            let _ = t.keep();
        }
    }
    json!({"mode": "index", "n": n, "events_per_recording": g.events, "agents": g.agents,
           "searches_per_kind": per_kind, "results": results})
}

fn publish_mode(n: u64, batches: &[usize], common: &Common) -> serde_json::Value {
    let (dir, _tmp) = workdir(common);
    let g = Gen::new(n, common);
    let mut results = Vec::new();
    for &batch in batches {
        let mut per_backend = serde_json::Map::new();
        for b in backends(common, &dir, &format!("publish-{batch}")) {
            let ix = Index::open_at(&b.at).expect("opening the index");
            // Events first, untimed: they arrive during the calls.
            let t = Instant::now();
            for start in (0..n).step_by(PUBLISH_BATCH) {
                post_events(&ix, &g, start..(start + PUBLISH_BATCH as u64).min(n));
            }
            let events_s = t.elapsed().as_secs_f64();
            let mut writer = IndexWriter::open(b.at.clone());
            let w = write_only(&mut writer, &g, n, batch);
            assert_eq!(ix.count().unwrap(), n);
            let rate = n as f64 / w;
            eprintln!(
                "  {}: {n} publications in batches of {batch}: {w:.2} s, {rate:.0}/s (events beforehand {events_s:.1} s)",
                b.name
            );
            let mut r = json!({"seconds": round(w), "per_s": round(rate)});
            if ix.dialect() == Dialect::Postgres {
                r["settings"] = pg_settings(&ix);
                // What one statement costs by itself: a publication alone
                // is about 25 of them (upsert_many_in), one round trip each;
                // a batch of 256 about the same number.
                let t = Instant::now();
                for _ in 0..2000 {
                    ix.conn()
                        .query_row("SELECT 1", [], |r| r.get::<i64>(0))
                        .expect("SELECT 1");
                }
                r["round_trip_us"] = round(t.elapsed().as_secs_f64() * 1e6 / 2000.0).into();
            }
            per_backend.insert(b.name.into(), r);
        }
        let ratio = match (
            per_backend
                .get("postgres")
                .and_then(|r| r["per_s"].as_f64()),
            per_backend.get("sqlite").and_then(|r| r["per_s"].as_f64()),
        ) {
            (Some(p), Some(s)) if s > 0.0 => Some(round(p / s)),
            _ => None,
        };
        results
            .push(json!({"batch": batch, "backends": per_backend, "postgres_over_sqlite": ratio}));
    }
    json!({"mode": "publish", "n": n, "events_per_recording": g.events, "results": results})
}

/// [`write`] without events (stored beforehand): seconds in the writer.
fn write_only(writer: &mut IndexWriter, g: &Gen, n: u64, batch: usize) -> f64 {
    let mut secs = 0.0;
    let mut i = 0u64;
    while i < n {
        let end = (i + batch as u64).min(n);
        let metas: Vec<RecordingMeta> = (i..end).map(|k| g.meta(k)).collect();
        let t = Instant::now();
        writer.index(metas);
        secs += t.elapsed().as_secs_f64();
        assert!(
            writer.is_healthy() && writer.pending() == 0,
            "the index refused a batch"
        );
        i = end;
    }
    secs
}

// ----------------------------------------------------------------- upload

fn s3s_fs() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(h) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(h).join(".cargo/bin"));
    }
    dirs.push("/work/tools/bin".into());
    dirs.into_iter()
        .map(|d| d.join("s3s-fs"))
        .find(|f| f.exists())
}

struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sha256_file(p: &Path) -> String {
    let bytes = std::fs::read(p).expect("reading a file");
    ring::digest::digest(&ring::digest::SHA256, &bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn upload_mode(
    n: u64,
    talk: u32,
    endpoint: Option<String>,
    bucket: &str,
    common: &Common,
) -> serde_json::Value {
    let (dir, _tmp) = workdir(common);
    let root = dir.join("drop");
    let g = Gen::new(n, common);
    // One WAV of the call's length (a tone with some noise), copied for
    // every file: 8 kHz 16-bit mono, as srs writes G.711 calls.
    let sample = dir.join("sample.wav");
    {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&sample, spec).expect("sample WAV");
        for k in 0..u64::from(talk) * 8000 {
            let s = (k as f64 * 2.0 * std::f64::consts::PI * 440.0 / 8000.0).sin() * 8000.0
                + (mix(k) % 512) as f64
                - 256.0;
            w.write_sample(s as i16).expect("writing the sample WAV");
        }
        w.finalize().expect("finishing the sample WAV");
    }
    let wav_sha = sha256_file(&sample);
    let wav_bytes = std::fs::metadata(&sample).unwrap().len();
    let index_at = match common.index.as_deref() {
        Some(_) => postgres(common).expect("PostgreSQL"),
        None => IndexAt::Sqlite(root.join(srs::store::INDEX_FILE)),
    };
    let ix = Index::open_at(&index_at).expect("index");
    let mut total_bytes = 0u64;
    let mut metas = Vec::new();
    for i in 0..n {
        let mut m = g.meta(i);
        m.duration_ms = u64::from(talk) * 1000;
        let rdir = root.join(&m.path);
        std::fs::create_dir_all(&rdir).unwrap();
        for f in &mut m.files {
            std::fs::copy(&sample, rdir.join(&f.name)).unwrap();
            f.sha256 = Some(wav_sha.clone());
            f.bytes = wav_bytes;
            f.duration_ms = m.duration_ms;
            total_bytes += wav_bytes;
        }
        m.metadata_files.clear();
        m.metadata_file = None;
        m.manifest_sha256 = None;
        let json = serde_json::to_vec_pretty(&m).unwrap();
        total_bytes += json.len() as u64;
        std::fs::write(rdir.join("metadata.json"), json).unwrap();
        metas.push(m);
    }
    ix.upsert_batch(&metas).expect("indexing");
    for m in &metas {
        srs::store::objects::enqueue(&root, m).expect("queueing");
    }
    // The store.
    let mut _server = None;
    let (endpoint, access, secret) = match endpoint {
        Some(e) => (
            e,
            std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_default(),
            std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_default(),
        ),
        None => {
            let bin = s3s_fs().expect("s3s-fs (cargo install s3s-fs --features binary)");
            let store = dir.join("s3");
            std::fs::create_dir_all(store.join(bucket)).unwrap();
            let port = {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap().port()
            };
            let (access, secret) = (
                "bench-access".to_string(),
                format!("bench-secret-{}", std::process::id()),
            );
            let child = std::process::Command::new(bin)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--access-key", &access, "--secret-key", &secret])
                .arg(&store)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("starting s3s-fs");
            _server = Some(Child(child));
            let deadline = Instant::now() + Duration::from_secs(20);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < deadline, "s3s-fs did not listen");
                std::thread::sleep(Duration::from_millis(50));
            }
            (format!("http://127.0.0.1:{port}"), access, secret)
        }
    };
    let cfg = srs::config::ObjectConfig {
        url: format!("s3://{bucket}/bench"),
        endpoint: Some(endpoint.clone()),
        region: Some("us-east-1".into()),
        access_key_id: Some(access),
        secret_access_key: Some(secret),
        keep_local: srs::config::KeepLocal::Always,
    };
    let objects = srs::store::objects::Objects::from_config(&cfg).expect("object store");
    eprintln!(
        "== upload: {n} recordings of {talk} s ({:.1} MB each, {:.1} MB in all) to {endpoint}",
        total_bytes as f64 / n as f64 / 1e6,
        total_bytes as f64 / 1e6
    );
    let t = Instant::now();
    let _uploader =
        srs::store::objects::Uploader::start(objects, root.clone(), index_at.clone(), None)
            .expect("upload thread");
    loop {
        let left = srs::store::objects::backlog(&root).expect("queue").len();
        if left == 0 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(3600),
            "the queue did not drain ({left} left)"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let secs = t.elapsed().as_secs_f64();
    let recorded: i64 = ix
        .conn()
        .query_row(
            "SELECT COUNT(DISTINCT recording_id) FROM recording_objects",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        recorded as u64, n,
        "every recording's objects are in the index"
    );
    let mb_s = total_bytes as f64 / 1e6 / secs;
    eprintln!(
        "  drained in {secs:.2} s: {mb_s:.1} MB/s, {:.1} recordings/s (each file uploaded, read back and verified)",
        n as f64 / secs
    );
    json!({"mode": "upload", "n": n, "talk_s": talk, "bytes": total_bytes, "seconds": round(secs),
           "mb_per_s": round(mb_s), "recordings_per_s": round(n as f64 / secs),
           "recorded_in_index": recorded, "endpoint": endpoint})
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let out = match &cli.mode {
        Mode::Index {
            n,
            searches,
            reuse,
            common,
        } => index_mode(*n, *searches, *reuse, common),
        Mode::Publish { n, batch, common } => publish_mode(*n, batch, common),
        Mode::Upload {
            n,
            talk,
            endpoint,
            bucket,
            common,
        } => upload_mode(*n, *talk, endpoint.clone(), bucket, common),
    };
    println!("{out}");
}
