//! `srs`: the SIPREC recording server and its command-line tools.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use srs::config::{Config, PortRange};
use srs::store::{render, FileDrop, Index, Query};

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
    /// SQLite index [default: <recordings>/index.sqlite].
    #[arg(long, value_name = "PATH")]
    index: Option<PathBuf>,
    /// HTTP API address [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR:PORT")]
    http: Option<SocketAddr>,
}

#[derive(Args)]
struct StoreArgs {
    /// File drop directory.
    #[arg(long, value_name = "DIR", default_value = "./recordings")]
    recordings: PathBuf,
    /// SQLite index [default: <recordings>/index.sqlite].
    #[arg(long, value_name = "PATH")]
    index: Option<PathBuf>,
    /// Print JSON (the same objects as metadata.json).
    #[arg(long)]
    json: bool,
}

impl StoreArgs {
    fn open_index(&self) -> anyhow::Result<Option<Index>> {
        let path = index_path(&self.recordings, self.index.as_ref());
        Index::open_existing(&path).with_context(|| format!("opening index {}", path.display()))
    }
}

/// `--index`, else `<recordings>/index.sqlite`.
fn index_path(recordings: &std::path::Path, index: Option<&PathBuf>) -> PathBuf {
    srs::store::index_path(recordings, index.map(PathBuf::as_path))
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
}

impl ListArgs {
    fn query(&self) -> Query {
        Query {
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
    /// SQLite index [default: <recordings>/index.sqlite].
    #[arg(long, value_name = "PATH")]
    index: Option<PathBuf>,
}

fn repair(args: RepairArgs) -> anyhow::Result<()> {
    use srs::store::{recover, FileDrop};
    let drop = FileDrop::new(&args.recordings);
    let recovered = if args.dirs.is_empty() {
        recover::recover_all(&drop)
    } else {
        let mut out = Vec::new();
        for d in &args.dirs {
            // A phantom (no audio, no Call-ID) is removed, not published.
            out.extend(
                recover::recover_dir(&drop, d)
                    .with_context(|| format!("repairing {}", d.display()))?,
            );
        }
        out
    };
    let path = index_path(&args.recordings, args.index.as_ref());
    let index = Index::open(&path).with_context(|| format!("opening index {}", path.display()))?;
    for m in &recovered {
        index.upsert(m)?;
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
    /// SQLite index, created if missing [default: <recordings>/index.sqlite].
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
        Some(index) => index.search(&query)?,
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
    let index = Index::open(&path).with_context(|| format!("opening index {}", path.display()))?;
    let drop = FileDrop::new(&args.recordings);
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
        .with_context(|| {
            format!(
                "reindexing {} into {}",
                args.recordings.display(),
                path.display()
            )
        });
    bar.finish_and_clear();
    let report = report?;
    if report.removed > 0 {
        note(&format!(
            "srs: removed {} index entries whose recording is no longer in the drop",
            report.removed
        ));
    }
    out(&format!(
        "reindexed {} recordings into {}",
        report.indexed,
        path.display()
    ))?;
    Ok(())
}

fn show(args: ShowArgs) -> anyhow::Result<()> {
    let rec = match args.store.open_index()? {
        Some(index) => index.get(&args.id)?,
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
