//! The processes the latency benchmark runs: `herald web`, `herald worker`
//! (the real binary, configured through `HERALD_*` variables) and a private
//! `redis-server`, each a child process stopped when its part is done.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use herald::config::Settings;
use tokio::process::{Child, Command};

use crate::queue::BenchError;

/// How long a child process may take to become ready.
const STARTUP: Duration = Duration::from_secs(30);

/// The `herald` binary next to this one (target/release or target/debug).
pub(super) fn herald_binary() -> Result<PathBuf, BenchError> {
    let path = std::env::current_exe()?.with_file_name("herald");
    if path.is_file() {
        Ok(path)
    } else {
        Err(BenchError::Invalid(format!(
            "no `herald` binary at {}: build it next to herald-bench with `cargo build --release -p herald`",
            path.display()
        )))
    }
}

/// A free loopback port. Another process could take it before the child
/// binds it; on a benchmark machine nothing else is binding ports.
pub(crate) fn free_port() -> Result<u16, BenchError> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A child process, killed when stopped or dropped.
pub(crate) struct Spawned {
    child: Child,
    what: String,
}

impl Spawned {
    /// Starts `command` (standard input and output closed, standard error
    /// shared with this process so its warnings show).
    fn start(command: &mut Command, what: String) -> Result<Self, BenchError> {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| BenchError::Invalid(format!("cannot start {what}: {e}")))?;
        Ok(Self { child, what })
    }

    /// The process id.
    pub(super) fn pid(&self) -> Result<u32, BenchError> {
        self.child
            .id()
            .ok_or_else(|| BenchError::Invalid(format!("{} has exited", self.what)))
    }

    /// An error if the process has exited.
    pub(super) fn ensure_running(&mut self) -> Result<(), BenchError> {
        match self.child.try_wait()? {
            Some(status) => Err(BenchError::Invalid(format!(
                "{} exited early: {status}",
                self.what
            ))),
            None => Ok(()),
        }
    }

    /// Kills the process and waits for it.
    pub(crate) async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// `herald web`'s address and the operator token it is started with.
#[derive(Debug, Clone)]
pub(super) struct WebAddress {
    /// Base URL, `http://127.0.0.1:PORT`.
    pub url: String,
    /// `HERALD_WEB_TOKEN` of the process.
    pub token: String,
}

impl WebAddress {
    /// A free port and a fresh token.
    pub(super) fn new() -> Result<Self, BenchError> {
        Ok(Self {
            url: format!("http://127.0.0.1:{}", free_port()?),
            // Two unique suffixes: an operator token has at least 32 characters.
            token: format!(
                "{}{}",
                crate::pipeline::unique_suffix(),
                crate::pipeline::unique_suffix()
            ),
        })
    }
}

/// Starts `herald SUBCOMMAND` pointed at the services of `settings` (its
/// namespace, database, push stand-in and export directory). Everything
/// else comes from the same configuration files and variables as this
/// process's. The worker's ops listener is off, so no port is shared.
pub(super) fn spawn_herald(
    binary: &Path,
    settings: &Settings,
    subcommand: &str,
    web: Option<&WebAddress>,
) -> Result<Spawned, BenchError> {
    let mut command = Command::new(binary);
    command
        .arg(subcommand)
        .envs(crate::export::child_env(settings))
        .env("HERALD_WORKER_OPS_BIND", "");
    if let Some(web) = web {
        let bind = web.url.trim_start_matches("http://");
        command
            .env("HERALD_WEB_BIND", bind)
            .env("HERALD_WEB_TOKEN", &web.token);
    }
    Spawned::start(&mut command, format!("herald {subcommand}"))
}

/// Waits until `herald web` answers `/healthz` with 200.
pub(super) async fn web_ready(
    web: &mut Spawned,
    http: &reqwest::Client,
    url: &str,
) -> Result<(), BenchError> {
    let begun = Instant::now();
    loop {
        web.ensure_running()?;
        let answer = http.get(format!("{url}/healthz")).send().await;
        if answer.is_ok_and(|a| a.status().is_success()) {
            return Ok(());
        }
        if begun.elapsed() > STARTUP {
            return Err(BenchError::Invalid(format!(
                "herald web did not answer {url}/healthz within {} s",
                STARTUP.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A `redis-server` of this run's own on a free port, persisting nothing;
/// returns it and its URL once it answers PING.
pub(crate) async fn private_redis() -> Result<(Spawned, String), BenchError> {
    let port = free_port()?.to_string();
    let mut command = Command::new("redis-server");
    command.args([
        "--port",
        &port,
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]);
    let server = Spawned::start(&mut command, "redis-server".to_owned()).map_err(|e| {
        BenchError::Invalid(format!(
            "{e} (the idle and soak measurements need `redis-server` on PATH)"
        ))
    })?;
    let url = format!("redis://127.0.0.1:{port}");
    let client = redis::Client::open(url.as_str())?;
    let begun = Instant::now();
    loop {
        if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
            if redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .is_ok()
            {
                return Ok((server, url));
            }
        }
        if begun.elapsed() > STARTUP {
            server.stop().await;
            return Err(BenchError::Invalid(format!(
                "the private redis-server on port {port} did not answer"
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
