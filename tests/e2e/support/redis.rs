//! A real `redis-server` for the cluster tests, on a Unix socket in a temporary directory (no
//! port to race for). `./dev test` installs it; outside CI a missing server skips the test.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub struct Redis {
    child: Option<Child>,
    pub socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Redis {
    /// Start one, or `None` (outside CI) when `redis-server` is not installed.
    pub async fn start() -> Option<Redis> {
        if Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            assert!(
                std::env::var_os("CI").is_none(),
                "redis-server must be installed in CI (./dev test does)"
            );
            eprintln!("redis-server not installed: skipped (./dev test installs it)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("redis.sock");
        let mut redis = Redis {
            child: None,
            socket,
            _dir: dir,
        };
        redis.spawn().await;
        Some(redis)
    }

    async fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--save",
                "",
                "--appendonly",
                "no",
                "--unixsocketperm",
                "700",
            ])
            .arg("--unixsocket")
            .arg(&self.socket)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        // Ready when it answers PING on its socket.
        let deadline = tokio::time::Instant::now() + super::EVENT_TIMEOUT;
        loop {
            let pong = Command::new("redis-cli")
                .arg("-s")
                .arg(&self.socket)
                .arg("ping")
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).contains("PONG"))
                .unwrap_or(false);
            if pong {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Kill it (as an outage would).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.socket);
    }

    /// Start it again on the same socket.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
