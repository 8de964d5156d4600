//! A real PostgreSQL server for tests (Debian's `postgresql` package): a
//! fresh cluster in a temporary directory (initdb runs as the `postgres`
//! user when the tests run as root, as PostgreSQL refuses root), listening
//! on a free loopback port with password (SCRAM) authentication, stopped
//! when dropped. `stop()` and `start_again()` let a test take it down in
//! the middle of a run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    pub user: String,
    pub password: String,
}

use srs::testkit::pg::{bin_dir, is_root};

impl Postgres {
    /// A running server, or None (the test is skipped, loudly; under
    /// SRS_REQUIRE_PEERS=1 a missing PostgreSQL fails the test).
    pub fn start(test: &str) -> Option<Postgres> {
        let Some(bin) = bin_dir() else {
            super::peers_available(
                test,
                &["/usr/lib/postgresql/*/bin/initdb (apt-get install postgresql)"],
            );
            return None;
        };
        let dir = tempfile::Builder::new().prefix("srs-pg").tempdir().unwrap();
        let password = format!("pw-{}", std::process::id());
        std::fs::write(dir.path().join("pw"), &password).unwrap();
        if is_root() {
            let st = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(st.success(), "chown the cluster directory to postgres");
        }
        let pg = Postgres {
            port: super::free_port(),
            user: "srs".into(),
            password,
            bin,
            dir,
        };
        let out = pg
            .command("initdb")
            .arg("-D")
            .arg(pg.data())
            .args([
                "-U",
                "srs",
                "-E",
                "UTF8",
                "--auth=scram-sha-256",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", pg.dir.path().join("pw").display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg.start_again();
        Some(pg)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A command of the PostgreSQL bin directory, as `postgres` when root.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
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

    /// Starts (again) the server and waits until it accepts connections.
    pub fn start_again(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-o", &opts, "-l"])
            .arg(self.dir.path().join("log"))
            .args(["-w", "start"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not listen:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server at once (connections are cut, as in a crash or a
    /// restart by an operator).
    pub fn stop(&self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "fast", "-w", "stop"])
            .output();
    }

    /// `postgres://srs@127.0.0.1:PORT/DB` (the password is not in it: it
    /// goes through the environment or a file, as in production).
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://{}@127.0.0.1:{}/{db}?sslmode=disable",
            self.user, self.port
        )
    }

    /// Runs SQL through `psql` (e.g. to create a database), panics on error.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                &self.user,
                "-d",
                db,
            ])
            .args(["-v", "ON_ERROR_STOP=1", "-At", "-c", sql])
            .env("PGPASSWORD", &self.password)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "stop"])
            .output();
    }
}
