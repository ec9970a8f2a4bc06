//! A real Pusher-protocol server for the tests: Sockudo (crates.io, not
//! Herald's code), one per test, on a free loopback port, with one app
//! whose id, key and secret the test chooses. `scripts/setup.sh --browser`
//! (or `--sockudo`) installs the binary; without it the tests fail and say
//! so, never skip.
//!
//! Sockudo serves the WebSocket (`/app/{key}`, what pusher-js connects to)
//! and the Pusher HTTP API (`/apps/{id}/events`, what Herald's worker
//! posts to) on the same port. It is configured through its environment
//! only, from a scratch working directory, so that no `config/config.toml`
//! or `.env` of the caller is read; its metrics listener (port 9601 by
//! default) is off, its queue in memory (its default is Redis), and its
//! HTTP API rate limit (100 calls a minute by default) off, since a test's
//! progress events exceed it.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::{
    helpers::{installed_binary, wait_for_listener},
    ops::free_port,
};

/// The app the server knows.
pub const APP_ID: &str = "herald-inbox-test";
pub const APP_KEY: &str = "herald-inbox-key";
pub const APP_SECRET: &str = "herald-inbox-secret";

/// The sockudo binary: `HERALD_TEST_SOCKUDO`, else on `PATH`, else in
/// Cargo's bin directory.
fn binary() -> PathBuf {
    installed_binary("HERALD_TEST_SOCKUDO", "sockudo").unwrap_or_else(|| {
        panic!(
            "sockudo is not installed (nor named by HERALD_TEST_SOCKUDO): \
                 run `bash scripts/setup.sh --browser`, which installs it with cargo install \
                 (with Debian's protobuf-compiler; about 14 minutes of one core, once)"
        )
    })
}

/// A running Sockudo; killed, and its scratch directory removed, on drop.
pub struct SockudoServer {
    child: Child,
    /// Its port on 127.0.0.1 (WebSocket and HTTP API).
    pub port: u16,
    dir: PathBuf,
}

impl SockudoServer {
    /// Starts a server with the app [`APP_ID`] / [`APP_KEY`] /
    /// [`APP_SECRET`] and waits until it listens.
    pub async fn start() -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("herald-sockudo-{port}"));
        std::fs::create_dir_all(&dir).expect("Sockudo's scratch directory");
        let log = std::fs::File::create(dir.join("sockudo.log")).expect("Sockudo's log file");
        let child = Command::new(binary())
            .current_dir(&dir)
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("SOCKUDO_DEFAULT_APP_ID", APP_ID)
            .env("SOCKUDO_DEFAULT_APP_KEY", APP_KEY)
            .env("SOCKUDO_DEFAULT_APP_SECRET", APP_SECRET)
            .env("METRICS_ENABLED", "false")
            .env("QUEUE_DRIVER", "memory")
            .env("RATE_LIMITER_ENABLED", "false")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("sockudo runs: {e}"));
        let server = Self { child, port, dir };
        wait_for_listener("Sockudo", port, Duration::from_secs(30)).await;
        server
    }

    /// The base URL of its HTTP API (`pusher.url`).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The `HERALD_*` variables that point a worker and `herald web` at it.
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("HERALD_PUSH_PROVIDER", "pusher".to_owned()),
            ("HERALD_PUSHER_URL", self.url()),
            ("HERALD_PUSHER_APP_ID", APP_ID.to_owned()),
            ("HERALD_PUSHER_KEY", APP_KEY.to_owned()),
            ("HERALD_PUSHER_SECRET", APP_SECRET.to_owned()),
        ]
    }

    /// What it logged so far (for a failure message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sockudo.log")).unwrap_or_default()
    }
}

impl Drop for SockudoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
