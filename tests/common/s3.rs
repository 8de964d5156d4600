//! A real S3-compatible server for tests: `s3s-fs` (crates.io, installed by
//! `.ci/run` with `cargo install s3s-fs --features binary`), which checks
//! every request's SigV4 signature against its access key and supports
//! multipart upload. It stores objects as files under a temporary
//! directory (a bucket is a directory). Killed when dropped; `stop()` and
//! `start_again()` make it unreachable for a while.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct S3 {
    dir: tempfile::TempDir,
    child: std::sync::Mutex<Option<Child>>,
    pub port: u16,
    pub access_key: String,
    pub secret_key: String,
    pub bucket: String,
}

fn binary() -> Option<PathBuf> {
    let from_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("s3s-fs"))
            .find(|f| f.exists())
    });
    from_path.or_else(|| {
        let home = std::env::var_os("HOME").map(PathBuf::from)?;
        let f = home.join(".cargo/bin/s3s-fs");
        f.exists().then_some(f)
    })
}

impl S3 {
    /// A running server with one bucket, or None (skipped loudly; an error
    /// under SRS_REQUIRE_PEERS=1).
    pub fn start(test: &str) -> Option<S3> {
        if binary().is_none() {
            super::peers_available(test, &["s3s-fs (cargo install s3s-fs --features binary)"]);
            return None;
        }
        let dir = tempfile::Builder::new().prefix("srs-s3").tempdir().unwrap();
        let bucket = "recordings".to_string();
        std::fs::create_dir(dir.path().join(&bucket)).unwrap();
        let s3 = S3 {
            dir,
            child: std::sync::Mutex::new(None),
            port: super::free_port(),
            access_key: "srs-test-access".into(),
            secret_key: format!("srs-test-secret-{}", std::process::id()),
            bucket,
        };
        s3.start_again();
        Some(s3)
    }

    /// Starts (again) the server and waits until it listens.
    pub fn start_again(&self) {
        let child = Command::new(binary().unwrap())
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--access-key",
                &self.access_key,
                "--secret-key",
                &self.secret_key,
            ])
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("s3s-fs runs");
        *self.child.lock().unwrap() = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server: the object store is unreachable until
    /// [`S3::start_again`] (the objects stay on disk).
    pub fn stop(&self) {
        if let Some(mut c) = self.child.lock().unwrap().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Where an object is stored on disk (to check or corrupt it).
    pub fn object_path(&self, key: &str) -> PathBuf {
        self.dir.path().join(&self.bucket).join(key)
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        self.stop();
    }
}
