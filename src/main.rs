//! `srs`: the SIPREC recording server and its command-line tools.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use srs::auth::{tokens, Role, Scope};
use srs::config::{Config, PortRange};
use srs::store::audit::{self, AuditQuery};
use srs::store::{render, FileDrop, Index, IndexAt, Query};

#[derive(Parser)]
#[command(name = "srs", version, about = "SIPREC recording server (RFC 7866)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the recording server (embedded defaults; see examples/srs.toml).
    Serve(ServeArgs),
    /// List recordings, newest first (100 by default; filters combine with AND).
    List(ListArgs),
    /// Show one recording by recording id or Call-ID.
    Show(ShowArgs),
    /// Rebuild the index from the file drop (idempotent; safe while serving).
    Reindex(ReindexArgs),
    /// Publish recordings a crash left in `<recordings>/.incoming` (status
    /// `recovered`) and index them. Do not run against the drop of a
    /// running server: `srs serve` does this itself at start.
    Repair(RepairArgs),
    /// Manage the HTTP API's tokens (kept as hashes in the index; a
    /// running server sees changes within a second).
    Token(TokenArgs),
    /// Read the audit trail, or verify its hash chain (--verify).
    Audit(AuditArgs),

    // The life of a recording (issue 15; docs/operations.md, Retention,
    // legal hold and erasure). Every one of these is audited (cli:<user>).
    /// Put a legal hold on a recording: it is never deleted, by retention
    /// or by hand, until released.
    Hold(HoldArgs),
    /// Release the legal hold of a recording.
    Release(ReleaseArgs),
    /// Delete recordings (files, index rows, together; audited), by id, or
    /// every recording where a number took part (--dn, for an erasure
    /// request). Held recordings are kept (exit 1, naming the hold).
    Delete(DeleteArgs),
    /// Check recordings against their SHA-256 hashes and manifest (all of
    /// them by default): exit 1 naming each missing or altered file.
    Verify(VerifyArgs),
    /// Apply the [[retention]] rules now (srs serve also does, on a schedule).
    Retention(RetentionArgs),
    /// Copy a recording's files into a directory, decrypted if they are
    /// encrypted at rest (--identity or [encryption] identities).
    Export(ExportArgs),
    /// Keys for encryption at rest.
    Key(KeyArgs),
    /// List webhook deliveries (newest first), or send one again (--retry).
    Webhooks(WebhooksArgs),
    /// The recordings of this drop waiting for upload to the object store
    /// ([storage.object]), oldest first; --enqueue ID queues one again.
    Uploads(UploadsArgs),
}

#[derive(Args)]
struct UploadsArgs {
    /// File drop directory.
    #[arg(long, value_name = "DIR", default_value = "./recordings")]
    recordings: PathBuf,
    /// Queue these recordings (ids) for upload again (a running server
    /// picks them up within a minute).
    #[arg(long, value_name = "ID")]
    enqueue: Vec<String>,
    /// JSON: {"backlog": N, "oldest_age_s": S, "pending": [...]}.
    #[arg(long)]
    json: bool,
}

fn uploads_cmd(args: UploadsArgs) -> anyhow::Result<()> {
    let drop = FileDrop::new(&args.recordings);
    if !args.enqueue.is_empty() {
        let all = drop.scan().context("scanning the drop")?;
        for id in &args.enqueue {
            let Some(m) = all.iter().find(|m| &m.recording_id == id) else {
                bail!("{id}: not in the drop {}", args.recordings.display());
            };
            srs::store::objects::enqueue(&args.recordings, m)
                .with_context(|| format!("queueing {id}"))?;
        }
    }
    let pending = srs::store::objects::backlog(&args.recordings)
        .with_context(|| format!("reading {}/.uploads", args.recordings.display()))?;
    let oldest = pending.first().map(|p| p.age_s);
    if args.json {
        return out(&serde_json::json!({
            "backlog": pending.len(),
            "oldest_age_s": oldest,
            "pending": pending,
        })
        .to_string());
    }
    out(&format!(
        "{} recording(s) waiting for upload{}",
        pending.len(),
        oldest.map_or(String::new(), |s| format!(", the oldest for {s} s"))
    ))?;
    for p in &pending {
        out(&format!("{}  {}  {} s", p.recording_id, p.path, p.age_s))?;
    }
    Ok(())
}

#[derive(Args)]
struct WebhooksArgs {
    /// Only dead deliveries (retry_for ran out) and pending ones that
    /// failed at least once.
    #[arg(long)]
    failed: bool,
    /// Send this delivery again from now (same id and body, a fresh
    /// retry_for); a running server picks it up within a second.
    #[arg(long, value_name = "ID")]
    retry: Option<String>,
    /// At most N deliveries [default: 100].
    #[arg(long, value_name = "N", default_value_t = 100)]
    limit: usize,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    index: IndexArgs,
}

#[derive(Args)]
struct HoldArgs {
    /// Recording id or SIP Call-ID.
    id: String,
    /// Why (a case or matter reference), kept with the hold.
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
    #[command(flatten)]
    index: IndexArgs,
    /// Print the recording's JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ReleaseArgs {
    /// Recording id or SIP Call-ID.
    id: String,
    #[command(flatten)]
    index: IndexArgs,
}

#[derive(Args)]
struct DeleteArgs {
    /// Recording ids (or SIP Call-IDs).
    #[arg(required_unless_present = "dn", conflicts_with = "dn")]
    ids: Vec<String>,
    /// Every recording where this number took part at any moment (the
    /// index's DN set, as `srs list --dn`): an erasure request.
    #[arg(long, value_name = "N")]
    dn: Option<String>,
    /// List what would be deleted; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// The server's configuration: its [storage.object] (the recordings'
    /// copies there are deleted too; without it a recording that has
    /// some is refused) and its [[webhooks]] (told of each deletion).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    index: IndexArgs,
}

#[derive(Args)]
struct VerifyArgs {
    /// Recording ids (or SIP Call-IDs); none: every recording.
    ids: Vec<String>,
    /// Print a JSON array of reports.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    index: IndexArgs,
}

#[derive(Args)]
struct RetentionArgs {
    #[command(subcommand)]
    command: RetentionCommand,
}

#[derive(Subcommand)]
enum RetentionCommand {
    /// Delete every recording due under the rules (held ones kept), after
    /// dropping from the index the recordings gone from the drop.
    Run {
        /// The configuration with the [[retention]] rules (and, unless
        /// given here, the drop and index paths).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// File drop directory [default: the config's, else ./recordings].
        #[arg(long, value_name = "DIR")]
        recordings: Option<PathBuf>,
        /// SQLite index [default: the config's, else <recordings>/index.sqlite].
        #[arg(long, value_name = "PATH")]
        index: Option<PathBuf>,
        /// List what would be deleted; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct ExportArgs {
    /// Recording id or SIP Call-ID.
    id: String,
    /// Directory to write into (created; files there of the same names
    /// are replaced).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// age identity file to decrypt with (repeat for several keys).
    #[arg(long, value_name = "FILE")]
    identity: Vec<PathBuf>,
    /// A configuration whose [encryption] identities are used too, and
    /// whose [storage.object] serves the files kept only in the object
    /// store.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    index: IndexArgs,
}

#[derive(Args)]
struct KeyArgs {
    #[command(subcommand)]
    command: KeyCommand,
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Make an age X25519 key pair: the identity (private key) into FILE
    /// (mode 0600, never overwritten), the public key on stdout, for
    /// [encryption] recipients.
    Generate {
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

/// Where the index is: the same flags as `srs list`.
#[derive(Args)]
struct IndexArgs {
    /// File drop directory.
    #[arg(long, value_name = "DIR", default_value = "./recordings")]
    recordings: PathBuf,
    /// The index: a SQLite file, or postgres://user@host:port/db (password
    /// from SRS_INDEX_PASSWORD, PGPASSWORD or the file SRS_INDEX_PASSWORD_FILE)
    /// [default: <recordings>/index.sqlite].
    #[arg(long, value_name = "PATH")]
    index: Option<PathBuf>,
}

impl IndexArgs {
    fn path(&self) -> IndexAt {
        index_path(&self.recordings, self.index.as_ref())
    }
}

#[derive(Args)]
struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Make a token and print its secret, alone on stdout, this once
    /// (creates the index if there is none yet).
    Add {
        /// A name for the token (letters, digits, '.', '_', '-', '@'),
        /// unique among active tokens; the audit trail names it.
        name: String,
        /// viewer (search, metadata, live sessions), listener (also
        /// audio), admin (everything), integration (posts call events,
        /// reads nothing).
        #[arg(long, value_name = "ROLE")]
        role: Role,
        /// Restrict the token to some recordings: dn=PATTERN (Record DN),
        /// geo=PATTERN, site=PATTERN (the Record DN's directory site);
        /// repeat: same key any, different keys all. Patterns: * and ?.
        #[arg(long = "scope", value_name = "KEY=PATTERN")]
        scopes: Vec<String>,
        #[command(flatten)]
        index: IndexArgs,
    },
    /// List the tokens (never their secrets).
    List {
        #[command(flatten)]
        index: IndexArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke the active token of that name.
    Revoke {
        name: String,
        #[command(flatten)]
        index: IndexArgs,
    },
}

#[derive(Args)]
struct AuditArgs {
    /// Entries at or after T (RFC 3339, or YYYY-MM-DD from 00:00 UTC).
    #[arg(long, value_name = "T")]
    since: Option<String>,
    /// Entries at or before T (RFC 3339, or YYYY-MM-DD for the whole UTC day).
    #[arg(long, value_name = "T")]
    until: Option<String>,
    /// Entries that touched this recording id.
    #[arg(long, value_name = "ID")]
    recording: Option<String>,
    /// Entries of this actor (a token name, or cli:<user>).
    #[arg(long, value_name = "NAME")]
    actor: Option<String>,
    /// Entries of this action (search, view, download, live, audit,
    /// token-add, token-revoke, ...).
    #[arg(long, value_name = "ACTION")]
    action: Option<String>,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
    /// Check the hash chain instead: exit 1, naming the first bad entry,
    /// if any entry was altered, removed or inserted.
    #[arg(long)]
    verify: bool,
    #[command(flatten)]
    index: IndexArgs,
}

#[derive(Args)]
struct ServeArgs {
    /// TOML configuration file; flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// SIP address for UDP and TCP [default: 0.0.0.0:5060].
    #[arg(long, value_name = "ADDR:PORT")]
    sip: Option<SocketAddr>,
    /// RTP port range [default: 10000-29999].
    #[arg(long, value_name = "LO-HI")]
    rtp_ports: Option<PortRange>,
    /// File drop directory [default: ./recordings].
    #[arg(long, value_name = "DIR")]
    recordings: Option<PathBuf>,
    /// The index: a SQLite file, or postgres://user@host:port/db (password
    /// from SRS_INDEX_PASSWORD, PGPASSWORD or the file SRS_INDEX_PASSWORD_FILE)
    /// [default: <recordings>/index.sqlite].
    #[arg(long, value_name = "PATH")]
    index: Option<PathBuf>,
    /// HTTP API address [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR:PORT")]
    http: Option<SocketAddr>,
    /// This recorder's id among several (`[node] id`; default: the host name).
    #[arg(long, value_name = "ID")]
    node_id: Option<String>,
}

#[derive(Args)]
struct StoreArgs {
    /// File drop directory.
    #[arg(long, value_name = "DIR", default_value = "./recordings")]
    recordings: PathBuf,
    /// The index: a SQLite file, or postgres://user@host:port/db (password
    /// from SRS_INDEX_PASSWORD, PGPASSWORD or the file SRS_INDEX_PASSWORD_FILE)
    /// [default: <recordings>/index.sqlite].
    #[arg(long, value_name = "PATH")]
    index: Option<PathBuf>,
    /// Print JSON (the same objects as metadata.json).
    #[arg(long)]
    json: bool,
}

impl StoreArgs {
    /// The index, read-write (without creating it): `list` and `show`
    /// write their audit entry. `None`: there is no index (nothing to
    /// read, nothing to audit).
    fn open_index(&self) -> anyhow::Result<Option<Index>> {
        let path = index_path(&self.recordings, self.index.as_ref());
        Index::open_existing_rw_at(&path).with_context(|| {
            format!(
                "opening index {} (srs list and show write the audit trail: they need write access to it)",
                path
            )
        })
    }
}

/// An audit entry of the command line (`cli:<user>`, from `local`).
fn cli_entry(
    action: &str,
    recording_ids: Vec<String>,
    filters: serde_json::Value,
    outcome: &str,
) -> audit::Entry {
    audit::Entry {
        actor: srs::auth::cli_actor(),
        role: "cli".into(),
        client: "local".into(),
        action: action.into(),
        recording_ids,
        filters,
        outcome: outcome.into(),
    }
}

/// Writes `entry` before anything is shown: a tool that cannot record
/// what it reads shows nothing.
fn record(index: &Index, entry: audit::Entry) -> anyhow::Result<()> {
    audit::append(index.conn(), &[entry])
        .context("writing the audit trail (srs list and show are audited; nothing was shown)")?;
    Ok(())
}

/// `--index` (a file, or `postgres://user@host:port/db`, its password
/// from `SRS_INDEX_PASSWORD`, `PGPASSWORD` or the file named by
/// `SRS_INDEX_PASSWORD_FILE`), else `<recordings>/index.sqlite`.
fn index_path(recordings: &std::path::Path, index: Option<&PathBuf>) -> IndexAt {
    let file = std::env::var_os("SRS_INDEX_PASSWORD_FILE").map(PathBuf::from);
    match IndexAt::resolve(recordings, index.map(PathBuf::as_path), file.as_deref()) {
        Ok(at) => at,
        Err(e) => {
            eprintln!("srs: {e}");
            std::process::exit(2);
        }
    }
}

#[derive(Args)]
struct ListArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Only recordings filed under this Record DN (exact).
    #[arg(long, value_name = "DN")]
    record_dn: Option<String>,
    /// Only recordings where this DN took part at any moment (exact): Record
    /// DN, dn/otherdn/ani/dnis/agentid, participants' numbers, later joiners.
    #[arg(long, value_name = "DN")]
    dn: Option<String>,
    /// Only recordings with a participant whose AoR or name contains TEXT (any case).
    #[arg(long, value_name = "TEXT")]
    participant: Option<String>,
    /// Only recordings with this Genesys CallUUID (exact, any case).
    #[arg(long, value_name = "ID")]
    call_uuid: Option<String>,
    /// Only recordings with this ANI (calling number, exact).
    #[arg(long, value_name = "N")]
    ani: Option<String>,
    /// Only recordings with this DNIS (called number, exact).
    #[arg(long, value_name = "N")]
    dnis: Option<String>,
    /// Only recordings with this geo-location (exact, any case).
    #[arg(long, value_name = "GEO")]
    geo: Option<String>,
    /// Started at or after T (RFC 3339, or YYYY-MM-DD from 00:00 UTC).
    #[arg(long, value_name = "T")]
    since: Option<String>,
    /// Started at or before T (RFC 3339, or YYYY-MM-DD for the whole UTC day).
    #[arg(long, value_name = "T")]
    until: Option<String>,
    /// Only recordings with this status (e.g. complete).
    #[arg(long, value_name = "S")]
    status: Option<String>,
    /// At most N recordings [default: 100, at most 1000].
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Skip the first N matching recordings (paging).
    #[arg(long, value_name = "N")]
    offset: Option<usize>,
    /// Only recordings under legal hold.
    #[arg(long)]
    held: bool,
    /// Only recordings whose call events attached KEY=VALUE (exact; the
    /// latest value of the key; repeat: all must match).
    #[arg(long = "attached", value_name = "KEY=VALUE", value_parser = parse_attached)]
    attached: Vec<(String, String)>,
}

/// `KEY=VALUE` of `--attached`.
fn parse_attached(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("{s:?}: expected KEY=VALUE")),
    }
}

impl ListArgs {
    fn query(&self) -> Query {
        Query {
            attached: self.attached.clone(),
            record_dn: self.record_dn.clone(),
            dn: self.dn.clone(),
            participant: self.participant.clone(),
            call_uuid: self.call_uuid.clone(),
            ani: self.ani.clone(),
            dnis: self.dnis.clone(),
            geo: self.geo.clone(),
            since: self.since.clone(),
            until: self.until.clone(),
            status: self.status.clone(),
            held: self.held.then_some(true),
            limit: self.limit,
            offset: self.offset,
        }
    }
}

#[derive(Args)]
struct RepairArgs {
    /// Incoming directories to repair (default: all of `<recordings>/.incoming`).
    dirs: Vec<PathBuf>,
    /// File drop directory.
    #[arg(long, value_name = "DIR", default_value = "./recordings")]
    recordings: PathBuf,
    /// The index: a SQLite file, or postgres://user@host:port/db (password
    /// from SRS_INDEX_PASSWORD, PGPASSWORD or the file SRS_INDEX_PASSWORD_FILE)
    /// [default: <recordings>/index.sqlite].
    #[arg(long, value_name = "PATH")]
    index: Option<PathBuf>,
    /// The server's configuration, for its [encryption] recipients:
    /// without it, recovered audio is published unencrypted.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

fn repair(args: RepairArgs) -> anyhow::Result<()> {
    use srs::store::{recover, FileDrop};
    let drop = FileDrop::new(&args.recordings);
    let encryptor = match &args.config {
        Some(c) => {
            srs::store::crypt::Encryptor::from_recipients(&Config::load(c)?.encryption.recipients)?
        }
        None => None,
    };
    let recovered = if args.dirs.is_empty() {
        recover::recover_all_sealed(&drop, encryptor.as_ref())
    } else {
        let mut out = Vec::new();
        for d in &args.dirs {
            // A phantom (no audio, no Call-ID) is removed, not published.
            out.extend(
                recover::recover_dir_sealed(&drop, d, encryptor.as_ref())
                    .with_context(|| format!("repairing {}", d.display()))?,
            );
        }
        out
    };
    let path = index_path(&args.recordings, args.index.as_ref());
    let index = Index::open_at(&path).with_context(|| format!("opening index {}", path))?;
    for m in &recovered {
        index.upsert(m)?;
    }
    if !recovered.is_empty() {
        let ids = recovered.iter().map(|m| m.recording_id.clone()).collect();
        audit::append(
            index.conn(),
            &[cli_entry("repair", ids, serde_json::json!({}), "ok")],
        )
        .context("writing the audit trail of the repair")?;
    }
    for m in &recovered {
        out(&format!(
            "recovered {} ({} files, {} ms) -> {}",
            m.recording_id,
            m.files.len(),
            m.duration_ms,
            m.path
        ))?;
    }
    out(&format!("repaired {} recordings", recovered.len()))?;
    Ok(())
}

#[derive(Args)]
struct ReindexArgs {
    /// File drop directory.
    #[arg(long, value_name = "DIR", default_value = "./recordings")]
    recordings: PathBuf,
    /// The index, created if missing: a SQLite file or postgres://...
    /// [default: <recordings>/index.sqlite].
    #[arg(long, value_name = "PATH")]
    index: Option<PathBuf>,
}

#[derive(Args)]
struct ShowArgs {
    /// Recording id or SIP Call-ID.
    id: String,
    #[command(flatten)]
    store: StoreArgs,
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let base = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    // webrtc-sdp logs whole SDP lines it drops, a=crypto (SRTP keys) among
    // them: its logs are always off, whatever RUST_LOG says.
    let filter = EnvFilter::try_new(format!("{base},webrtc_sdp=off"))
        .unwrap_or_else(|_| EnvFilter::new("info,webrtc_sdp=off"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(srs::logging::stderr)
        .init();
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(v) = args.sip {
        config.sip.listen = v;
    }
    if let Some(v) = args.rtp_ports {
        config.media.rtp_ports = v;
    }
    if let Some(v) = args.recordings {
        config.storage.recordings = v;
    }
    if let Some(v) = args.index {
        config.storage.index = Some(v);
    }
    if let Some(v) = args.http {
        config.http.listen = v;
    }
    if let Some(v) = args.node_id {
        config.node.id = Some(v);
    }
    config.validate()?;
    // (srs::server::run raises the open-file limit and sizes the
    // connection caps from it.)
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(async move {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("signal received: finishing active recordings");
            let _ = tx.send(true);
        });
        srs::server::run(config, rx, |_| {}).await
    })?;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn list(args: ListArgs) -> anyhow::Result<()> {
    let query = args.query();
    query.validate()?;
    let (recs, total) = match args.store.open_index()? {
        Some(index) => {
            let (recs, total) = index.search(&query)?;
            let ids = recs.iter().map(|r| r.recording_id.clone()).collect();
            let filters = serde_json::to_value(&query).unwrap_or_default();
            record(&index, cli_entry("search", ids, filters, "ok"))?;
            (recs, total)
        }
        None => (Vec::new(), 0),
    };
    if args.store.json {
        out(&render::list_json(&recs))?;
    } else {
        out(&render::list_table(&recs))?;
    }
    let shown_to = query.effective_offset() as u64 + recs.len() as u64;
    if !recs.is_empty() && shown_to < total {
        note(&format!(
            "srs: {} to {} of {total} matching recordings; more with --offset {shown_to}",
            query.effective_offset() + 1,
            shown_to,
        ));
    }
    Ok(())
}

/// Logging of `srs reindex`: warnings (e.g. an unreadable metadata.json
/// skipped) on stderr, more with RUST_LOG.
fn init_reindex_logging() {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(srs::logging::stderr)
        .init();
}

fn reindex(args: ReindexArgs) -> anyhow::Result<()> {
    use indicatif::{ProgressBar, ProgressStyle};
    use std::io::IsTerminal;

    let path = index_path(&args.recordings, args.index.as_ref());
    let index = Index::open_at(&path).with_context(|| format!("opening index {}", path))?;
    let drop = FileDrop::new(&args.recordings);
    // Recordings removed from the drop by hand: dropped from the index and
    // audited as found missing (issue 15).
    let missing = if args.recordings.is_dir() {
        lifecycle(&args.recordings, &path)
            .reconcile(&srs::lifecycle::Who::cli())
            .context("checking the index against the drop")?
    } else {
        Vec::new()
    };
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new_spinner();
        bar.set_message(format!("scanning {}", args.recordings.display()));
        bar.enable_steady_tick(std::time::Duration::from_millis(100));
        bar
    } else {
        ProgressBar::hidden()
    };
    let report = index
        .reindex(&drop, |done, total| {
            if done == 0 {
                bar.set_length(total as u64);
                bar.set_message("indexing");
                if let Ok(style) =
                    ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({eta} left)")
                {
                    bar.set_style(style.progress_chars("=> "));
                }
            }
            bar.set_position(done as u64);
        })
        .with_context(|| format!("reindexing {} into {}", args.recordings.display(), path));
    bar.finish_and_clear();
    let mut report = report?;
    report.removed += missing.len();
    audit::append(
        index.conn(),
        &[cli_entry(
            "reindex",
            Vec::new(),
            serde_json::json!({ "indexed": report.indexed, "removed": report.removed }),
            "ok",
        )],
    )
    .context("writing the audit trail of the reindex")?;
    if report.removed > 0 {
        note(&format!(
            "srs: removed {} index entries whose recording is no longer in the drop{}",
            report.removed,
            if missing.is_empty() {
                String::new()
            } else {
                format!(" (audited as found-missing: {})", missing.join(" "))
            }
        ));
    }
    out(&format!(
        "reindexed {} recordings into {}",
        report.indexed, path
    ))?;
    Ok(())
}

fn show(args: ShowArgs) -> anyhow::Result<()> {
    let rec = match args.store.open_index()? {
        Some(index) => {
            let rec = index.get(&args.id)?;
            let filters = serde_json::json!({ "id": args.id });
            let entry = match &rec {
                Some(r) => cli_entry("view", vec![r.recording_id.clone()], filters, "ok"),
                None => cli_entry("view", Vec::new(), filters, "not-found"),
            };
            record(&index, entry)?;
            rec
        }
        None => None,
    };
    let Some(rec) = rec else {
        bail!("no recording with id or Call-ID {:?}", args.id);
    };
    if args.store.json {
        out(&render::show_json(&rec))?;
    } else {
        out(&render::show_text(&rec))?;
    }
    Ok(())
}

fn token(args: TokenArgs) -> anyhow::Result<()> {
    match args.command {
        TokenCommand::Add {
            name,
            role,
            scopes,
            index,
        } => {
            let scope = Scope::parse(&scopes)?;
            tokens::check_name(&name)?;
            let path = index.path();
            // Created if need be: the first admin token can be made before
            // the server first runs.
            let ix = Index::open_at(&path).with_context(|| format!("opening index {}", path))?;
            let filters =
                serde_json::json!({ "name": name, "role": role, "scopes": scope.items() });
            let entry = cli_entry("token-add", Vec::new(), filters, "ok");
            let secret = audit::with_write(ix.conn(), |c| {
                let secret = tokens::add(c, &name, role, &scope, &entry.actor)?;
                audit::append_in(c, &[entry])
                    .map_err(|e| tokens::TokenError::Unavailable(e.to_string()))?;
                Ok::<_, tokens::TokenError>(secret)
            })?;
            out(&secret)?;
            note(&format!(
                "srs: token {name:?} ({role}{}) made; its secret is shown this once",
                if scope.is_unrestricted() {
                    String::new()
                } else {
                    format!(", scope {}", scope.items().join(" "))
                }
            ));
        }
        TokenCommand::List { index, json } => {
            let path = index.path();
            let list = match Index::open_existing_at(&path)
                .with_context(|| format!("opening index {}", path))?
            {
                Some(ix) => tokens::list(ix.conn())?,
                None => Vec::new(),
            };
            if json {
                out(&serde_json::to_string_pretty(&list)?)?;
            } else {
                out(&render_tokens(&list))?;
            }
        }
        TokenCommand::Revoke { name, index } => {
            let path = index.path();
            let Some(ix) = Index::open_existing_rw_at(&path)
                .with_context(|| format!("opening index {}", path))?
            else {
                bail!("no index at {}: no token to revoke", path);
            };
            let entry = cli_entry(
                "token-revoke",
                Vec::new(),
                serde_json::json!({ "name": name }),
                "ok",
            );
            audit::with_write(ix.conn(), |c| {
                tokens::revoke(c, &name)?;
                audit::append_in(c, &[entry])
                    .map_err(|e| tokens::TokenError::Unavailable(e.to_string()))?;
                Ok::<_, tokens::TokenError>(())
            })?;
            out(&format!("revoked {name}"))?;
        }
    }
    Ok(())
}

fn render_tokens(list: &[tokens::TokenInfo]) -> String {
    if list.is_empty() {
        return "no tokens: the HTTP API is open on its (loopback) address".into();
    }
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::NOTHING);
    t.set_header(["NAME", "ROLE", "SCOPE", "CREATED", "BY", "REVOKED"]);
    for tk in list {
        t.add_row([
            tk.name.clone(),
            tk.role.to_string(),
            if tk.scopes.is_empty() {
                "-".into()
            } else {
                tk.scopes.join(" ")
            },
            tk.created_at.clone(),
            tk.created_by.clone(),
            tk.revoked_at.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    t.to_string()
}

fn audit_cmd(args: AuditArgs) -> anyhow::Result<()> {
    let path = args.index.path();
    let Some(ix) =
        Index::open_existing_at(&path).with_context(|| format!("opening index {}", path))?
    else {
        bail!("no index at {}", path);
    };
    if ix.version() < audit::AUDIT_VERSION {
        bail!(
            "the index {} has no audit trail yet (schema version {}): it is added when srs serve next starts",
            path,
            ix.version()
        );
    }
    if args.verify {
        return match audit::verify(ix.conn())? {
            Ok(v) => {
                if args.json {
                    out(&serde_json::to_string(
                        &serde_json::json!({"intact": true, "verified": v}),
                    )?)?;
                } else {
                    out(&format!(
                        "audit trail intact: {} entries; head: seq {}, hash {}",
                        v.entries,
                        v.head_seq.map_or("-".into(), |s| s.to_string()),
                        v.head_hash.as_deref().unwrap_or("-"),
                    ))?;
                }
                Ok(())
            }
            Err(broken) => {
                if args.json {
                    out(&serde_json::to_string(
                        &serde_json::json!({"intact": false, "broken": broken}),
                    )?)?;
                }
                Err(anyhow::anyhow!(
                    "{broken} ({} entries before it are intact)",
                    broken.intact
                ))
            }
        };
    }
    let q = AuditQuery {
        since: args.since,
        until: args.until,
        recording: args.recording,
        actor: args.actor,
        action: args.action,
        after: None,
        limit: None,
    };
    let mut failed: Option<anyhow::Error> = None;
    let mut n = 0usize;
    audit::read(ix.conn(), &q, |row| {
        let line = if args.json {
            serde_json::to_string(&row).unwrap_or_default()
        } else {
            let ids = if row.recording_ids.is_empty() {
                if row.recording_count > 0 {
                    format!("({} recordings)", row.recording_count)
                } else {
                    "-".into()
                }
            } else {
                row.recording_ids.join(",")
            };
            format!(
                "{:>6}  {}  {}  {}  {}  {}  {}  {}  {}",
                row.seq,
                row.at,
                row.actor,
                row.role,
                row.client,
                row.action,
                row.outcome,
                ids,
                row.filters
            )
        };
        n += 1;
        match out(&line) {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    if n == 0 && !args.json {
        note("srs: no audit entries match");
    }
    Ok(())
}

// --- The life of a recording (issue 15). ---

/// Lifecycle changes on the drop `recordings` and the index at `index`.
fn lifecycle(recordings: &std::path::Path, index: &IndexAt) -> srs::lifecycle::Lifecycle {
    srs::lifecycle::Lifecycle::new(recordings, index.clone(), Vec::new().into())
}

fn hold_cmd(args: HoldArgs) -> anyhow::Result<()> {
    let life = lifecycle(&args.index.recordings, &args.index.path());
    let meta = life.hold(
        &args.id,
        &Scope::default(),
        args.reason,
        &srs::lifecycle::Who::cli(),
    )?;
    if args.json {
        out(&render::show_json(&meta))?;
    } else if let Some(h) = &meta.hold {
        out(&format!(
            "held {} ({})",
            meta.recording_id,
            srs::lifecycle::describe(h)
        ))?;
    }
    Ok(())
}

fn release_cmd(args: ReleaseArgs) -> anyhow::Result<()> {
    let life = lifecycle(&args.index.recordings, &args.index.path());
    let (meta, was) = life.release(&args.id, &Scope::default(), &srs::lifecycle::Who::cli())?;
    if was {
        out(&format!("released {}", meta.recording_id))?;
    } else {
        out(&format!("{} was not held", meta.recording_id))?;
    }
    Ok(())
}

/// Prints a deletion's or retention run's report; an error when some of
/// what was asked could not be deleted (held, not found).
fn print_report(r: &srs::lifecycle::Report, json: bool, asked: bool) -> anyhow::Result<()> {
    if json {
        out(&serde_json::to_string_pretty(r)?)?;
    } else {
        let verb = if r.dry_run { "would delete" } else { "deleted" };
        for d in &r.deleted {
            out(&format!(
                "{verb} {} ({}{}) {}",
                d.recording_id,
                d.started_at,
                d.rule
                    .as_deref()
                    .map(|x| format!(", rule {x}"))
                    .unwrap_or_default(),
                d.path
            ))?;
        }
        for k in &r.held {
            out(&format!(
                "kept {}: {}",
                k.recording_id,
                srs::lifecycle::describe(&k.hold)
            ))?;
        }
        for id in &r.found_missing {
            out(&format!(
                "found missing {id}: no longer in the drop, dropped from the index"
            ))?;
        }
        note(&format!(
            "srs: {} {verb}, {} held (kept){}{}",
            r.deleted.len(),
            r.held.len(),
            if r.not_found.is_empty() {
                String::new()
            } else {
                format!(", not found: {}", r.not_found.join(" "))
            },
            if r.found_missing.is_empty() {
                String::new()
            } else {
                format!(", {} found missing", r.found_missing.len())
            }
        ));
    }
    if asked && (!r.held.is_empty() || !r.not_found.is_empty()) {
        let held: Vec<String> = r
            .held
            .iter()
            .map(|k| {
                format!(
                    "{} is under legal hold ({})",
                    k.recording_id,
                    srs::lifecycle::describe(&k.hold)
                )
            })
            .collect();
        let missing: Vec<String> = r
            .not_found
            .iter()
            .map(|id| format!("no recording {id:?}"))
            .collect();
        bail!(
            "not deleted: {}",
            held.into_iter()
                .chain(missing)
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    Ok(())
}

/// The object store of a configuration's `[storage.object]`, if any.
fn objects_of(cfg: &Config) -> anyhow::Result<Option<srs::store::objects::Objects>> {
    Ok(cfg
        .storage
        .object
        .as_ref()
        .map(srs::store::objects::Objects::from_config)
        .transpose()?)
}

fn delete_cmd(args: DeleteArgs) -> anyhow::Result<()> {
    let mut life = lifecycle(&args.index.recordings, &args.index.path());
    if let Some(c) = &args.config {
        let cfg = Config::load(c)?;
        let objects = objects_of(&cfg)?;
        life = life
            .with_webhooks(&cfg.webhooks)
            .with_node(cfg.node.id())
            .with_objects(objects);
    }
    let who = srs::lifecycle::Who::cli();
    let report = match &args.dn {
        Some(dn) => life.delete_by_dn(dn, &who, args.dry_run)?,
        None => life.delete(&args.ids, &Scope::default(), &who, args.dry_run)?,
    };
    print_report(&report, args.json, true)
}

fn verify_cmd(args: VerifyArgs) -> anyhow::Result<()> {
    use srs::store::integrity;
    let path = args.index.path();
    let root = &args.index.recordings;
    let index =
        Index::open_existing_rw_at(&path).with_context(|| format!("opening index {}", path))?;
    let mut recs = Vec::new();
    let mut unknown = Vec::new();
    match &index {
        Some(ix) if args.ids.is_empty() => recs = ix.list(None)?,
        Some(ix) => {
            for id in &args.ids {
                match ix.get(id)? {
                    Some(m) => recs.push(m),
                    None => unknown.push(id.clone()),
                }
            }
        }
        // No index: the drop's own metadata.json files.
        None => {
            recs = FileDrop::new(root).scan()?;
            if !args.ids.is_empty() {
                recs.retain(|m| {
                    args.ids.contains(&m.recording_id) || args.ids.contains(&m.call_id)
                });
            }
        }
    }
    let reports: Vec<integrity::Report> = recs.iter().map(|m| integrity::verify(root, m)).collect();
    let damaged: Vec<&integrity::Report> = reports.iter().filter(|r| r.damaged()).collect();
    if let Some(ix) = &index {
        let ids = recs.iter().map(|m| m.recording_id.clone()).collect();
        let filters = serde_json::json!({ "ids": args.ids, "damaged": damaged.len() });
        let outcome = if damaged.is_empty() { "ok" } else { "damaged" };
        record(ix, cli_entry("verify", ids, filters, outcome))?;
    }
    if args.json {
        out(&serde_json::to_string_pretty(&reports)?)?;
    } else {
        for r in &reports {
            match r.status {
                "damaged" => out(&format!(
                    "{} DAMAGED: {}",
                    r.recording_id,
                    r.problems.join("; ")
                ))?,
                "unverifiable" => out(&format!(
                    "{} unverifiable: published without hashes",
                    r.recording_id
                ))?,
                s => out(&format!("{} {s}", r.recording_id))?,
            }
        }
    }
    if !unknown.is_empty() {
        bail!("no recording {}", unknown.join(", "));
    }
    if !damaged.is_empty() {
        bail!(
            "{} of {} recordings damaged: {}",
            damaged.len(),
            reports.len(),
            damaged
                .iter()
                .map(|r| format!("{} ({})", r.recording_id, r.problems.join("; ")))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if reports.is_empty() {
        note("srs: no recordings to verify");
    }
    Ok(())
}

fn retention_cmd(args: RetentionArgs) -> anyhow::Result<()> {
    let RetentionCommand::Run {
        config,
        recordings,
        index,
        dry_run,
        json,
    } = args.command;
    let cfg = Config::load(&config)?;
    cfg.validate()?;
    let recordings = recordings.unwrap_or_else(|| cfg.storage.recordings.clone());
    let mut cfg_index = cfg.clone();
    cfg_index.storage.recordings = recordings.clone();
    if let Some(i) = index {
        cfg_index.storage.index = Some(i);
    }
    let index = cfg_index.index_at()?;
    let objects = objects_of(&cfg)?;
    let life = srs::lifecycle::Lifecycle::new(&recordings, index, cfg.directory.clone().into())
        .with_webhooks(&cfg.webhooks)
        .with_node(cfg.node.id())
        .with_objects(objects);
    if cfg.retention.is_empty() {
        note(&format!(
            "srs: {} has no [[retention]] rule: every recording is kept",
            config.display()
        ));
    }
    let report = life.retention_run(
        &cfg.retention,
        chrono::Utc::now(),
        &srs::lifecycle::Who::cli(),
        dry_run,
    )?;
    print_report(&report, json, false)
}

fn export_cmd(args: ExportArgs) -> anyhow::Result<()> {
    use srs::store::crypt::Decryptor;
    let path = args.index.path();
    let Some(ix) = Index::open_existing_rw_at(&path)
        .with_context(|| format!("opening index {} (srs export is audited)", path))?
    else {
        bail!("no index at {}", path);
    };
    let filters = serde_json::json!({ "id": args.id, "out": args.out });
    let Some(meta) = ix.get(&args.id)? else {
        record(&ix, cli_entry("export", Vec::new(), filters, "not-found"))?;
        bail!("no recording with id or Call-ID {:?}", args.id);
    };
    let mut identities = args.identity.clone();
    let config = args.config.as_ref().map(|c| Config::load(c)).transpose()?;
    if let Some(c) = &config {
        identities.extend(c.encryption.identities.clone());
    }
    let decryptor = Decryptor::from_files(&identities)?;
    // Issue 16: a file without a local copy (keep_local = false, or
    // exported on another host than the recorder's) comes from the object
    // store the index says it is in, with the [storage.object] of --config.
    let objects = config.as_ref().map(objects_of).transpose()?.flatten();
    let fetch = |src: &std::path::Path,
                 stored_name: &str,
                 to: &std::path::Path|
     -> anyhow::Result<()> {
        let Some((key, size)) =
            srs::store::objects::stored_key(ix.conn(), &meta.recording_id, stored_name)?
        else {
            bail!(
                "{} is not in the drop and the index records no copy in an object store",
                src.display()
            );
        };
        let Some(objects) = &objects else {
            bail!(
                "{} is kept only in the object store (key {key}): give --config with its [storage.object]",
                src.display()
            );
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let got = rt
            .block_on(objects.download(&key, to))
            .with_context(|| format!("downloading {key} from {}", objects.url()))?;
        if got != size {
            bail!("{key}: {got} bytes downloaded, the index records {size}");
        }
        Ok(())
    };
    let encrypted = meta.files.iter().any(|f| f.encryption.is_some());
    if encrypted && decryptor.is_none() {
        record(
            &ix,
            cli_entry(
                "export",
                vec![meta.recording_id.clone()],
                filters,
                "encrypted",
            ),
        )?;
        bail!(
            "recording {} is encrypted and no identity was given (--identity FILE, or --config with [encryption] identities)",
            meta.recording_id
        );
    }
    record(
        &ix,
        cli_entry("export", vec![meta.recording_id.clone()], filters, "ok"),
    )?;
    let dir = args.index.recordings.join(&meta.path);
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    for f in &meta.files {
        let mut src = dir.join(f.stored_name());
        let dst = args.out.join(&f.name);
        let mut spool = None;
        if !src.exists() {
            let part = args.out.join(format!(".{}.part", f.stored_name()));
            fetch(&src, f.stored_name(), &part)?;
            src = part.clone();
            spool = Some(part);
        }
        let done = match (&decryptor, f.encryption.is_some()) {
            (Some(d), true) => d
                .decrypt_file(&src, &dst)
                .map(|_| ())
                .map_err(anyhow::Error::from),
            _ if spool.is_some() => std::fs::rename(&src, &dst)
                .with_context(|| format!("renaming {} to {}", src.display(), dst.display())),
            _ => std::fs::copy(&src, &dst)
                .map(|_| ())
                .with_context(|| format!("copying {} to {}", src.display(), dst.display())),
        };
        if let Some(part) = spool {
            let _ = std::fs::remove_file(part);
        }
        done?;
        out(&dst.display().to_string())?;
    }
    for f in &meta.metadata_files {
        let (src, dst) = (dir.join(&f.name), args.out.join(&f.name));
        if src.exists() {
            std::fs::copy(&src, &dst)
                .with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
        } else {
            fetch(&src, &f.name, &dst)?;
        }
        out(&dst.display().to_string())?;
    }
    let dst = args.out.join(srs::store::drop::METADATA_FILE);
    std::fs::write(&dst, format!("{}\n", render::show_json(&meta)))
        .with_context(|| format!("writing {}", dst.display()))?;
    out(&dst.display().to_string())?;
    Ok(())
}

fn key_cmd(args: KeyArgs) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let KeyCommand::Generate { out: file } = args.command;
    let (text, public) = srs::store::crypt::generate();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&file)
        .with_context(|| {
            format!(
                "creating {} (an existing key is never overwritten)",
                file.display()
            )
        })?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", file.display()))?;
    out(&public)?;
    note(&format!(
        "srs: identity (private key) written to {}; put the public key above in [encryption] recipients of the recorder, and the file in [encryption] identities of the reading side only",
        file.display()
    ));
    Ok(())
}

/// `srs webhooks`: the outbox, or one delivery sent again.
fn webhooks(args: WebhooksArgs) -> anyhow::Result<()> {
    use srs::webhooks::outbox;
    let path = args.index.path();
    if let Some(id) = &args.retry {
        let Some(ix) =
            Index::open_existing_rw_at(&path).with_context(|| format!("opening index {}", path))?
        else {
            bail!("no index at {}", path);
        };
        let entry = cli_entry(
            "webhook-retry",
            Vec::new(),
            serde_json::json!({ "id": id }),
            "ok",
        );
        let retried = audit::with_write(ix.conn(), |c| {
            let r = outbox::retry(c, id, chrono::Utc::now())
                .map_err(|e| tokens::TokenError::Unavailable(e.to_string()))?;
            if r {
                audit::append_in(c, &[entry])
                    .map_err(|e| tokens::TokenError::Unavailable(e.to_string()))?;
            }
            Ok::<_, tokens::TokenError>(r)
        })?;
        if !retried {
            bail!("no delivery {id:?} waiting or dead (delivered ones are not sent again)");
        }
        out(&format!("delivery {id} queued again"))?;
        return Ok(());
    }
    let Some(ix) =
        Index::open_existing_at(&path).with_context(|| format!("opening index {}", path))?
    else {
        return Ok(());
    };
    let list = outbox::list(ix.conn(), args.failed, args.limit.min(10_000))
        .context("reading the webhook outbox (run srs serve once to upgrade the index)")?;
    if args.json {
        for d in &list {
            out(&serde_json::to_string(d)?)?;
        }
        return Ok(());
    }
    if list.is_empty() {
        note("srs: no webhook deliveries match");
        return Ok(());
    }
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::NOTHING);
    t.set_header([
        "DELIVERY",
        "EVENT",
        "RECORDING",
        "STATUS",
        "ATTEMPTS",
        "CREATED",
        "URL",
        "LAST ERROR",
    ]);
    for d in &list {
        t.add_row([
            d.id.clone(),
            d.event.clone(),
            d.recording_id.clone().unwrap_or_else(|| "-".into()),
            d.status.clone(),
            d.attempts.to_string(),
            d.created_at.clone(),
            d.url.clone(),
            render::clean(d.last_error.as_deref().unwrap_or("-")),
        ]);
    }
    out(&t.to_string())
}

/// Standard output was closed by its reader (`srs list --json | head`).
#[derive(Debug, thiserror::Error)]
#[error("standard output closed")]
struct ClosedPipe;

/// Writes a line of a command's output. `println!` panics when the reader
/// has closed the pipe; here that ends the command quietly ([`ClosedPipe`]).
fn out(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(ClosedPipe.into()),
        r => r.context("writing to standard output"),
    }
}

/// A line on stderr; a closed stderr is ignored (never a panic).
fn note(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(a) => {
            init_logging();
            serve(a)
        }
        Command::List(a) => list(a),
        Command::Show(a) => show(a),
        Command::Repair(a) => repair(a),
        Command::Reindex(a) => {
            init_reindex_logging();
            reindex(a)
        }
        Command::Token(a) => token(a),
        Command::Audit(a) => audit_cmd(a),
        Command::Webhooks(a) => webhooks(a),
        Command::Uploads(a) => uploads_cmd(a),
        Command::Hold(a) => hold_cmd(a),
        Command::Release(a) => release_cmd(a),
        Command::Delete(a) => delete_cmd(a),
        Command::Verify(a) => verify_cmd(a),
        Command::Retention(a) => retention_cmd(a),
        Command::Export(a) => export_cmd(a),
        Command::Key(a) => key_cmd(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `srs list | head`: the reader has all it wanted.
        Err(e) if e.is::<ClosedPipe>() => ExitCode::SUCCESS,
        Err(e) => {
            note(&format!("srs: {e:#}"));
            ExitCode::FAILURE
        }
    }
}
