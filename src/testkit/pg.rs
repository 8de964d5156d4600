//! A real PostgreSQL server for the library's own tests (the index suite
//! runs on SQLite and on PostgreSQL): one cluster per test process, made
//! with Debian's `postgresql` binaries in a temporary directory (as the
//! `postgres` user when run as root), password (SCRAM) authentication,
//! stopped when the process exits; each test gets a database of its own.
//! `tests/common/pg.rs` is the same for the end-to-end tests.
//!
//! Missing PostgreSQL: the PostgreSQL half of a test is skipped with a
//! loud message, or fails under `SRS_REQUIRE_PEERS=1` (CI).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::store::backend::{IndexAt, PgTarget};

/// The running cluster of this process.
pub struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    pub port: u16,
    pub password: String,
}

/// The newest installed PostgreSQL's bin directory (Debian's layout).
pub fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop()
}

/// Whether this process runs as root (PostgreSQL refuses to: its
/// commands then run as the `postgres` user).
pub fn is_root() -> bool {
    // SAFETY: a plain syscall without arguments.
    unsafe { libc::geteuid() == 0 }
}

fn free_port() -> u16 {
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

static DATA_DIR: Mutex<Option<(PathBuf, PathBuf)>> = Mutex::new(None);

extern "C" fn stop_at_exit() {
    if let Ok(Some((bin, dir))) = DATA_DIR.lock().map(|d| d.clone()) {
        let _ = command(&bin, "pg_ctl")
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn command(bin: &Path, program: &str) -> Command {
    let path = bin.join(program);
    let mut c = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(path);
        c
    } else {
        Command::new(path)
    };
    c.stdin(Stdio::null());
    c
}

fn start() -> Result<Cluster, String> {
    let bin =
        bin_dir().ok_or("no /usr/lib/postgresql/*/bin/initdb (apt-get install postgresql)")?;
    let dir = std::env::temp_dir().join(format!("srs-unit-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let password = format!("pw-{}", std::process::id());
    std::fs::write(dir.join("pw"), &password).map_err(|e| e.to_string())?;
    if is_root() {
        let st = Command::new("chown")
            .args(["-R", "postgres"])
            .arg(&dir)
            .status()
            .map_err(|e| e.to_string())?;
        if !st.success() {
            return Err("chown the cluster directory to postgres".into());
        }
    }
    *DATA_DIR.lock().unwrap() = Some((bin.clone(), dir.clone()));
    // SAFETY: registers a plain function without captures.
    unsafe { libc::atexit(stop_at_exit) };
    let out = command(&bin, "initdb")
        .arg("-D")
        .arg(dir.join("data"))
        .args([
            "-U",
            "srs",
            "-E",
            "UTF8",
            "--auth=scram-sha-256",
            "--no-sync",
        ])
        .arg(format!("--pwfile={}", dir.join("pw").display()))
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("initdb: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let port = free_port();
    // SRS_TEST_PG_OPTS: more server options, after ours so that they win
    // (examples/index_scale.rs turns fsync back on: a bench must not run
    // without it).
    let opts = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200 {}",
        dir.display(),
        std::env::var("SRS_TEST_PG_OPTS").unwrap_or_default()
    );
    let out = command(&bin, "pg_ctl")
        .arg("-D")
        .arg(dir.join("data"))
        .args(["-o", &opts, "-l"])
        .arg(dir.join("log"))
        .args(["-w", "start"])
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "pg_ctl start: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(dir.join("log")).unwrap_or_default()
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err("PostgreSQL did not listen".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Cluster {
        dir,
        bin,
        port,
        password,
    })
}

/// The process's cluster, started at the first call; `None` (said loudly)
/// when PostgreSQL is not installed, a panic under `SRS_REQUIRE_PEERS=1`.
pub fn cluster(test: &str) -> Option<&'static Cluster> {
    static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
    match CLUSTER.get_or_init(start) {
        Ok(c) => Some(c),
        Err(e) => {
            if std::env::var("SRS_REQUIRE_PEERS").as_deref() == Ok("1") {
                panic!("{test}: SRS_REQUIRE_PEERS=1 but PostgreSQL cannot run: {e}");
            }
            eprintln!("\n*** SKIPPED the PostgreSQL half of {test}: {e} (set SRS_REQUIRE_PEERS=1 to make this an error) ***\n");
            None
        }
    }
}

impl Cluster {
    /// `postgres://srs@127.0.0.1:PORT/DB?sslmode=disable`.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://srs@127.0.0.1:{}/{db}?sslmode=disable",
            self.port
        )
    }

    /// A new, empty database and the index location for it.
    pub fn fresh(&self) -> IndexAt {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!("t{}", N.fetch_add(1, Ordering::SeqCst));
        let admin = PgTarget::parse(&self.url("postgres"), Some(self.password.clone()))
            .unwrap()
            .connect()
            .unwrap();
        admin
            .execute_batch(&format!("CREATE DATABASE {name}"))
            .unwrap();
        IndexAt::Postgres(Arc::new(
            PgTarget::parse(&self.url(&name), Some(self.password.clone())).unwrap(),
        ))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    pub fn bin(&self) -> &Path {
        &self.bin
    }
}

/// A fresh SQLite index location (in its own temporary directory, removed
/// when the guard drops) and, when PostgreSQL runs, a fresh PostgreSQL one:
/// the index suite runs `f` on each, named in panics.
pub fn each_backend(test: &str, mut f: impl FnMut(&IndexAt)) {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "srs-unit-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    struct Rm(PathBuf);
    impl Drop for Rm {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _rm = Rm(dir.clone());
    f(&IndexAt::Sqlite(dir.join("index.sqlite")));
    if let Some(c) = cluster(test) {
        f(&c.fresh());
    }
}
