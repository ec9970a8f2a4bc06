//! Private servers a fault test can stop, kill and start again on the same
//! port and files: a Redis with its append-only file, a SecantusDB in its
//! durable mode. Each is killed and its files removed on drop.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use mongodb::bson::doc;

use crate::{
    helpers::{signal, wait_within},
    ops::free_port,
};

/// Which server.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// `redis-server` with `appendonly yes` (fsync every second, Redis's
    /// default) and no snapshots.
    RedisWithAof,
    /// SecantusDB (`secantusd-rs`, or `secantusd-py`) with
    /// `--sync-on-commit`, as `scripts/setup.sh` starts it.
    DurableSecantus,
}

/// One private server; see the module docs.
pub struct PrivateServer {
    kind: Kind,
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl PrivateServer {
    /// Starts a server of `kind` on a free port and waits until it answers.
    pub async fn start(kind: Kind) -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("herald-private-{port}"));
        std::fs::create_dir_all(&dir).expect("private server dir");
        let mut server = Self {
            kind,
            port,
            dir,
            child: None,
        };
        server.restart().await;
        server
    }

    /// The URL to give Herald.
    pub fn url(&self) -> String {
        match self.kind {
            Kind::RedisWithAof => format!("redis://127.0.0.1:{}", self.port),
            Kind::DurableSecantus => format!("mongodb://127.0.0.1:{}", self.port),
        }
    }

    fn command(&self) -> Command {
        let port = self.port.to_string();
        match self.kind {
            Kind::RedisWithAof => {
                let mut command = Command::new("redis-server");
                command
                    .args(["--port", &port, "--bind", "127.0.0.1"])
                    .args(["--save", "", "--appendonly", "yes"])
                    .args(["--appendfsync", "everysec", "--dir"])
                    .arg(&self.dir);
                command
            }
            Kind::DurableSecantus => {
                let mut command = Command::new(secantus_binary());
                command
                    .args(["--host", "127.0.0.1", "--port", &port, "--storage-path"])
                    .arg(&self.dir)
                    .arg("--sync-on-commit");
                command
            }
        }
    }

    /// Starts the server (again, on the same files) and waits until it
    /// answers: for Redis, once it has loaded its AOF.
    pub async fn restart(&mut self) {
        let child = self
            .command()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the private server runs");
        self.child = Some(child);
        let (kind, url) = (self.kind, self.url());
        wait_within(
            "the private server to answer",
            Duration::from_secs(60),
            Duration::from_millis(20),
            || answers(kind, url.clone()),
        )
        .await;
    }

    /// Sends `signal_name` (`TERM`, `KILL`) and waits for the exit; a
    /// SIGTERM must end in a clean exit (Redis writes its AOF out first).
    pub fn stop(&mut self, signal_name: &str) {
        if let Some(mut child) = self.child.take() {
            signal(&child, signal_name);
            let status = child.wait().expect("the private server exits");
            if signal_name == "TERM" {
                assert!(status.success(), "stopped cleanly: {status:?}");
            }
        }
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether the server at `url` answers a ping.
async fn answers(kind: Kind, url: String) -> Option<()> {
    match kind {
        Kind::RedisWithAof => {
            let mut conn = crate::helpers::try_redis(&url).await?;
            redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .ok()
                .map(|_| ())
        }
        Kind::DurableSecantus => {
            let client = mongodb::Client::with_uri_str(&url).await.ok()?;
            let pinged = client
                .database("admin")
                .run_command(doc! { "ping": 1 })
                .await
                .ok()
                .map(|_| ());
            client.shutdown().immediate(true).await;
            pinged
        }
    }
}

/// The MongoDB-compatible server the setup installs: `secantusd-rs` (or,
/// where it could not be built, `secantusd-py`), on `PATH` or in
/// `~/.cargo/bin`.
fn secantus_binary() -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .chain([home.join(".cargo/bin")])
        .collect();
    for name in ["secantusd-rs", "secantusd-py"] {
        if let Some(found) = dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()) {
            return found;
        }
    }
    panic!("no secantusd-rs or secantusd-py found; scripts/setup.sh installs one")
}
