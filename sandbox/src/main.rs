//! `herald-push-sandbox`: the local stand-in for Tuisongbao and the Pusher
//! HTTP API (see the library's docs), as a process for demos and a
//! developer's own setup.
//!
//! Its credentials default to Herald's configured ones (the same layers
//! `herald` reads: `config/`, `HERALD_ENV`, `HERALD_*`), so a worker of the
//! same configuration is accepted; it starts even where those settings are
//! incomplete (production files), as long as the credentials are given on
//! the command line.

use std::{net::IpAddr, process::ExitCode};

use anyhow::Context;
use clap::Parser;
use herald::{
    config::{ProviderKind, Settings},
    shutdown, telemetry,
};
use herald_push_sandbox::{serve_with_key, SandboxCredentials, DEFAULT_PUSHER_KEY};
use secrecy::ExposeSecret;

/// Run a local stand-in for Tuisongbao and the Pusher HTTP API that
/// records every event it receives.
#[derive(Debug, Parser)]
#[command(name = "herald-push-sandbox", version)]
struct Args {
    /// Port to listen on.
    #[arg(long, default_value_t = 7070)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// App id to accept (default: the configured app id of push.provider).
    #[arg(long)]
    app_id: Option<String>,
    /// Secret to accept (default: the configured secret of push.provider).
    #[arg(long)]
    secret: Option<String>,
    /// Pusher app key to accept (default: the configured pusher.key).
    #[arg(long)]
    key: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let settings = Settings::load();
    if let Ok(settings) = &settings {
        let _no_export = telemetry::init(&settings.log, None, "sandbox");
    }
    let configured = settings.as_ref().ok().map(|s| match s.push.provider {
        ProviderKind::Tuisongbao => (
            s.tuisongbao.app_id.clone(),
            s.tuisongbao.secret.expose_secret().to_owned(),
            s.pusher.key.clone(),
        ),
        ProviderKind::Pusher => (
            s.pusher.app_id.clone(),
            s.pusher.secret.expose_secret().to_owned(),
            s.pusher.key.clone(),
        ),
    });
    let app_id = args
        .app_id
        .or_else(|| configured.as_ref().map(|c| c.0.clone()))
        .context("no --app-id given and the provider's app_id is not configured")?;
    let secret = args
        .secret
        .or_else(|| configured.as_ref().map(|c| c.1.clone()))
        .context("no --secret given and the provider's secret is not configured")?;
    let key = args
        .key
        .or_else(|| configured.as_ref().map(|c| c.2.clone()))
        .unwrap_or_else(|| DEFAULT_PUSHER_KEY.to_owned());

    let addr = std::net::SocketAddr::new(args.host, args.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    println!("push sandbox listening on http://{bound} (app id {app_id}, Pusher key {key}); events at http://{bound}/_sandbox/events");
    serve_with_key(
        listener,
        SandboxCredentials { app_id, secret },
        key,
        shutdown::signal(),
    )
    .await
    .context("push sandbox failed")
}
