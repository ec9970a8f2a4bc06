//! `herald audit`: the trail of operators' actions; and the wrapper the
//! command line's own actions run in, so they are on the trail too.
//!
//! An action from the command line (`herald failed retry`, `herald queue
//! pause`, `herald export cancel`, `herald token create|revoke`) is
//! recorded as done by `cli:<the user>` from the host it ran on. As on the
//! dashboard, the record is written first: when MongoDB cannot take it,
//! the action is not run.

use std::{future::Future, process::ExitCode};

use anyhow::Context;
use clap::Args;
use herald::{
    config::Settings,
    store::{
        self,
        audit::{Actor, AuditFilter, AuditLog},
    },
};
use mongodb::bson::oid::ObjectId;

/// `herald audit` options.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Records to print, newest first (1 to 500).
    #[arg(long, default_value_t = 50)]
    limit: i64,
    /// Only this operator's actions (`web.token`, `cli:ann`, a token's name).
    #[arg(long)]
    actor: Option<String>,
    /// Only this action (retry, discard, retry_bulk, discard_bulk, pause,
    /// resume, export_cancel, export_download, token_create, token_revoke,
    /// sign_in, sign_out).
    #[arg(long)]
    action: Option<String>,
    /// Only records older than this one (the id a previous page ended with).
    #[arg(long, value_name = "ID")]
    before: Option<String>,
    /// Print JSON lines instead of columns.
    #[arg(long)]
    json: bool,
}

/// Prints a page of the trail.
pub async fn run(args: AuditArgs, settings: &Settings) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        (1..=store::audit::MAX_AUDIT_PAGE).contains(&args.limit),
        "--limit must be 1 to {}",
        store::audit::MAX_AUDIT_PAGE
    );
    let before = args
        .before
        .as_deref()
        .map(|id| ObjectId::parse_str(id).with_context(|| format!("'{id}' is not a record id")))
        .transpose()?;
    let database = store::connect(&settings.mongodb).await?;
    let filter = AuditFilter {
        actor: args.actor,
        action: args.action,
        before,
    };
    let (records, more) = AuditLog::new(&database).page(&filter, args.limit).await?;
    for record in &records {
        if args.json {
            println!("{}", serde_json::to_string(record)?);
        } else {
            println!(
                "{}  {}  {:<15}  {:<16}  {:<12}  {:>6}  {}  {}",
                record.id,
                record.at,
                record.actor.name,
                record.action,
                record.outcome,
                record.count.map_or("-".to_owned(), |c| c.to_string()),
                record.actor.from,
                record.target
            );
        }
    }
    if more {
        if let Some(last) = records.last() {
            eprintln!("older records: --before {}", last.id);
        }
    }
    store::close(&database).await;
    Ok(ExitCode::SUCCESS)
}

/// Who the command line acts as: `cli:<the user>`, from this host.
fn cli_actor() -> Actor {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".to_owned());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".to_owned());
    Actor {
        name: format!("cli:{user}"),
        role: "operator".to_owned(),
        via: "cli".to_owned(),
        from: host,
    }
}

/// Runs `work`, the command line's action `action` on `target`, with its
/// audit record (written first; when it cannot be, `work` does not run).
/// `work` reports how many things it concerned.
pub async fn audited<T, F, Fut>(
    settings: &Settings,
    action: &str,
    target: serde_json::Value,
    work: F,
) -> anyhow::Result<T>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = anyhow::Result<(T, u64)>>,
{
    let database = store::connect(&settings.mongodb)
        .await
        .context("the audit trail is in MongoDB, which did not answer: the action was not run")?;
    let log = AuditLog::new(&database);
    let record = log
        .begin(&cli_actor(), action, target)
        .await
        .context("the action could not be recorded in the audit trail, so it was not run")?;
    let result = work().await;
    let outcome = match &result {
        Ok((_, count)) => Ok(*count),
        Err(error) => Err(format!("{error:#}")),
    };
    if let Err(error) = log.finish(record, outcome).await {
        eprintln!("warning: the audit record of this action says only that it started: {error}");
    }
    store::close(&database).await;
    result.map(|(value, _)| value)
}
