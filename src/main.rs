//! `srs`: the SIPREC recording server and its command-line tools.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use srs::config::{Config, PortRange};
use srs::store::{render, Index};

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
    /// List recordings, newest first.
    List(ListArgs),
    /// Show one recording by recording id or Call-ID.
    Show(ShowArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// TOML configuration file; flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// SIP address for UDP and TCP [default: 0.0.0.0:5060].
    #[arg(long, value_name = "ADDR:PORT")]
    sip: Option<SocketAddr>,
    /// RTP port range [default: 20000-39999].
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
        let path = self
            .index
            .clone()
            .unwrap_or_else(|| self.recordings.join("index.sqlite"));
        Index::open_existing(&path).with_context(|| format!("opening index {}", path.display()))
    }
}

#[derive(Args)]
struct ListArgs {
    #[command(flatten)]
    store: StoreArgs,
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
        .with_writer(std::io::stderr)
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
    let recs = match args.store.open_index()? {
        Some(index) => index.list(None)?,
        None => Vec::new(),
    };
    if args.store.json {
        println!("{}", render::list_json(&recs));
    } else {
        println!("{}", render::list_table(&recs));
    }
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
        println!("{}", render::show_json(&rec));
    } else {
        println!("{}", render::show_text(&rec));
    }
    Ok(())
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
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("srs: {e:#}");
            ExitCode::FAILURE
        }
    }
}
