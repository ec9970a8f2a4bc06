//! Command-line interface: argument definitions and dispatch.

mod audit;
mod doctor;
mod enqueue;
mod export;
mod failed;
mod queue;
mod token;

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use herald::{config::Settings, shutdown, telemetry, worker};
use secrecy::SecretString;

/// Herald: background jobs for SCRM notifications.
///
/// Configuration comes from config/default.toml, config/$HERALD_ENV.toml and
/// HERALD_* environment variables (see config/default.toml for every setting).
#[derive(Debug, Parser)]
#[command(name = "herald", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the worker: consume the send_message, push and export queues until SIGTERM/SIGINT.
    Worker,
    /// Put a job on a queue (for scripts and manual tests).
    #[command(subcommand)]
    Enqueue(enqueue::EnqueueCommand),
    /// Export status and cancellation.
    #[command(subcommand)]
    Export(export::ExportCommand),
    /// Serve the dashboard, the operator API and the producers' API (/v1) until SIGTERM/SIGINT.
    Web,
    /// Create, list or revoke the producers' API tokens and the operators' tokens.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Show the audit trail of operators' actions, newest first.
    Audit(audit::AuditArgs),
    /// List, retry or discard failed jobs (default queue: push).
    Failed(failed::FailedArgs),
    /// Pause or resume a queue, or show every queue's state.
    #[command(subcommand)]
    Queue(queue::QueueCommand),
    /// Check that Redis, MongoDB and the push endpoint answer; exit 1 if any does not.
    Doctor,
    /// List every setting: its environment variable, default and meaning.
    Config(ConfigArgs),
}

#[derive(Debug, Args)]
struct ConfigArgs {
    /// Print the Markdown table that docs/configuration.md holds.
    #[arg(long)]
    markdown: bool,
}

/// Runs the parsed command; the exit code reports its outcome.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Worker => {
            let settings = load_settings()?;
            let telemetry =
                telemetry::init(&settings.log, settings.trace_export.as_ref(), "worker");
            settings.warn_unknown();
            let outcome = worker::run(settings, shutdown::signal()).await;
            telemetry.shutdown().await;
            outcome.context("worker stopped with an error")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Enqueue(command) => {
            let settings = load_settings()?;
            enqueue::run(command, &settings).await
        }
        Command::Export(command) => {
            let settings = load_settings()?;
            export::run(command, &settings).await
        }
        Command::Token(command) => {
            let settings = load_settings()?;
            token::run(command, &settings).await
        }
        Command::Audit(args) => {
            let settings = load_settings()?;
            audit::run(args, &settings).await
        }
        Command::Web => {
            let settings = load_settings()?;
            let telemetry = telemetry::init(&settings.log, settings.trace_export.as_ref(), "web");
            settings.warn_unknown();
            let outcome = run_web(settings).await;
            telemetry.shutdown().await;
            outcome
        }
        Command::Failed(args) => {
            let settings = load_settings()?;
            failed::run(args, &settings).await
        }
        Command::Queue(command) => {
            let settings = load_settings()?;
            queue::run(command, &settings).await
        }
        Command::Doctor => {
            let settings = load_settings()?;
            Ok(doctor::run(&settings).await)
        }
        Command::Config(args) => {
            // The declarations alone: no configuration is read, so this
            // works where the services or the files are missing.
            if args.markdown {
                print!("{}", herald::config::reference_table());
            } else {
                print!("{}", herald::config::reference_text());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn load_settings() -> anyhow::Result<Settings> {
    Settings::load().context("invalid configuration")
}

async fn run_web(settings: Settings) -> anyhow::Result<ExitCode> {
    let conn = herald::queue::connect(settings.redis.url.as_str()).await?;
    // Not pinged: the dashboard starts while MongoDB is down, and /readyz
    // says so; the indexes are created when MongoDB answers.
    let database = herald::store::open(&settings.mongodb).await?;
    let configured = operator_credentials(&settings, &database).await?;
    ensure_web_indexes(&database).await;
    let listener = tokio::net::TcpListener::bind(settings.web.bind)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (setting `web.bind`, env HERALD_WEB_BIND)",
                settings.web.bind
            )
        })?;
    tracing::info!(address = %settings.web.bind, "dashboard listening");
    // Like the worker, the server follows a Sentinel failover by stopping
    // (finishing the requests in flight) with a failure, for its supervisor
    // to start it again on the new master.
    let (stop, mut moved_rx) = herald::queue::failover::shutdown_or_failover(
        shutdown::signal(),
        settings.redis.url.clone(),
        settings.worker.heartbeat_interval,
    );
    // The dashboard shows every shard a worker consumes, even if this
    // process's `redis.queue_shards` is lower.
    let settings = herald::queues::shards::known(&mut conn.clone(), &settings).await;
    let state = herald::web::WebState::new(conn, &database, &settings, configured)?;
    let (ops_stop, ops_stopped) = tokio::sync::oneshot::channel::<()>();
    let ops = match settings.web.ops_bind {
        Some(addr) => {
            let (bound, task) =
                herald::ops::spawn(addr, "web.ops_bind", state.ops.clone(), async move {
                    let _ = ops_stopped.await;
                })
                .await?;
            tracing::info!(address = %bound, "operations endpoints listening apart (/healthz, /readyz, /metrics)");
            Some(task)
        }
        None => None,
    };
    herald::web::serve_with(
        listener,
        state,
        herald::web::ServeOptions::from_settings(&settings),
        stop,
    )
    .await
    .context("dashboard server failed")?;
    let _ = ops_stop.send(());
    if let Some(task) = ops {
        let _ = task.await;
    }
    herald::store::close(&database).await;
    if let Ok(moved) = moved_rx.try_recv() {
        anyhow::bail!("{moved}; exiting so the supervisor starts the server on the new master");
    }
    tracing::info!("dashboard stopped");
    Ok(ExitCode::SUCCESS)
}

/// The configured operator token `herald web` serves with, after checking
/// that operators can sign in at all: `web.token`, or an operator token in
/// MongoDB, or (only with `web.dev`) a random token made for this run.
async fn operator_credentials(
    settings: &Settings,
    database: &mongodb::Database,
) -> anyhow::Result<Option<SecretString>> {
    if let Some(token) = &settings.web.token {
        if settings.web.dev {
            tracing::warn!("web.dev is on but web.token is set: serving with web.token, not in development mode");
        }
        return Ok(Some(token.clone()));
    }
    let operators = herald::store::operators::OperatorTokenStore::new(database);
    match operators.any().await {
        Ok(true) => return Ok(None),
        Ok(false) => {}
        Err(error) if !settings.web.dev => {
            anyhow::bail!(
                "no operator credentials: web.token (env HERALD_WEB_TOKEN) is empty, and MongoDB, \
                 which holds the operator tokens, did not answer ({error}); set HERALD_WEB_TOKEN \
                 to at least 32 characters (`openssl rand -hex 32`)"
            )
        }
        Err(_) => {}
    }
    if !settings.web.dev {
        anyhow::bail!(
            "no operator credentials: set web.token (env HERALD_WEB_TOKEN, at least 32 characters: \
             `openssl rand -hex 32`), or create an operator token with `herald token create \
             --operator NAME --role operator`; for development only, HERALD_WEB_DEV=true makes one \
             for each run"
        );
    }
    let token = herald::store::tokens::new_development_token()
        .context("cannot make a development token")?;
    tracing::warn!(
        token = %token,
        "DEVELOPMENT MODE (web.dev): no operator credentials are configured, so this run made the \
         operator token above; it works until the process stops. Never run this way in production"
    );
    Ok(Some(SecretString::from(token)))
}

/// Creates the indexes `herald web` reads by, when MongoDB answers.
async fn ensure_web_indexes(database: &mongodb::Database) {
    let results = [
        herald::store::ApiTokenStore::new(database)
            .ensure_indexes()
            .await,
        herald::store::operators::OperatorTokenStore::new(database)
            .ensure_indexes()
            .await,
        herald::store::audit::AuditLog::new(database)
            .ensure_indexes()
            .await,
    ];
    for result in results {
        if let Err(error) = result {
            tracing::warn!(%error, "cannot create an index now; the first write creates its collection");
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// The reference of every command, which this test keeps true.
    const COMMANDS_DOC: &str = include_str!("../../docs/commands.md");

    /// Each runnable subcommand (`herald export status`, ...) with its long
    /// options, `--help` and `--version` left out.
    fn leaves(command: &clap::Command, path: &str, out: &mut Vec<(String, Vec<String>)>) {
        for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
            let path = format!("{path} {}", sub.get_name());
            if sub.has_subcommands() {
                leaves(sub, &path, out);
            } else {
                let options = sub
                    .get_arguments()
                    .filter_map(|arg| arg.get_long())
                    .filter(|long| !matches!(*long, "help" | "version"))
                    .map(|long| format!("--{long}"))
                    .collect();
                out.push((path, options));
            }
        }
    }

    #[test]
    fn every_subcommand_and_option_is_in_the_commands_reference() {
        let mut commands = Vec::new();
        leaves(&Cli::command(), "herald", &mut commands);
        let mut missing = Vec::new();
        for (path, options) in commands {
            let rows: Vec<&str> = COMMANDS_DOC
                .lines()
                .filter(|line| line.starts_with('|') && line.contains(&format!("`{path}")))
                .collect();
            if rows.is_empty() {
                missing.push(path);
                continue;
            }
            for option in options {
                if !rows.iter().any(|row| row.contains(&option)) {
                    missing.push(format!("{path} {option}"));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "docs/commands.md does not name: {missing:#?}"
        );
    }
}
