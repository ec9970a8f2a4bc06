//! `herald failed ...`: the failed-job operations, for scripts.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use herald::{
    config::Settings,
    queue::{
        self,
        admin::{BulkAction, BulkProgress, DeadFilter, QueueAdmin},
    },
};
use herald_jobs::QueueName;

use super::audit::audited;

#[derive(Debug, Args)]
pub struct FailedArgs {
    /// Queue: push, send_message or export.
    #[arg(long, global = true, default_value = "push", value_parser = parse_queue)]
    queue: QueueName,
    #[command(subcommand)]
    command: FailedCommand,
}

/// Which failed jobs: filters on what the failed list indexes.
#[derive(Debug, Args, Default)]
struct FilterArgs {
    /// Only jobs of this event (push queue).
    #[arg(long)]
    event: Option<String>,
    /// Only jobs of this account (24-hex id).
    #[arg(long)]
    account: Option<String>,
    /// Only jobs of this error group (its id, from `herald failed groups`).
    #[arg(long)]
    error: Option<String>,
}

impl FilterArgs {
    fn filter(self) -> DeadFilter {
        let mut labels = Vec::new();
        if let Some(event) = self.event {
            labels.push(("event".to_owned(), event));
        }
        if let Some(account) = self.account {
            labels.push(("account".to_owned(), account));
        }
        DeadFilter {
            labels,
            error: self.error,
        }
    }
}

#[derive(Debug, Subcommand)]
enum FailedCommand {
    /// List failed jobs, most recent failure first.
    List {
        /// Print JSON (one object per line) instead of a table.
        #[arg(long)]
        json: bool,
        /// Most jobs to list.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Failed jobs grouped by error, largest group first.
    Groups {
        /// Print JSON (one object per line) instead of a table.
        #[arg(long)]
        json: bool,
        /// Most groups to list.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Send failed jobs back to the queue with a fresh attempt budget.
    Retry {
        /// Job ids.
        ids: Vec<String>,
        /// Retry every failed job of the queue (or every one the filter
        /// selects), in slices, printing the progress.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Delete failed jobs for good.
    Discard {
        /// Job ids.
        ids: Vec<String>,
        /// Discard every failed job of the queue (or every one the filter
        /// selects), in slices, printing the progress.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        #[command(flatten)]
        filter: FilterArgs,
    },
}

/// A queue named on the command line.
pub(super) fn parse_queue(s: &str) -> Result<QueueName, String> {
    QueueName::ALL
        .iter()
        .copied()
        .find(|q| q.as_str() == s)
        .ok_or_else(|| format!("'{s}' is not a queue (push, send_message, export)"))
}

pub async fn run(args: FailedArgs, settings: &Settings) -> anyhow::Result<ExitCode> {
    let conn = queue::connect(settings.redis.url.as_str()).await?;
    // Every shard a worker consumes, even if this process's setting is lower.
    let settings = &herald::queues::shards::known(&mut conn.clone(), settings).await;
    let admin = herald::queues::admin(conn, settings, args.queue);
    match args.command {
        FailedCommand::List {
            json,
            limit,
            filter,
        } => {
            let (jobs, total) = admin.dead_jobs(&filter.filter(), 0, limit).await?;
            if json {
                for job in &jobs {
                    println!("{}", serde_json::to_string(job)?);
                }
                return Ok(ExitCode::SUCCESS);
            }
            println!("{} failed job(s) in {}", total, admin.name());
            for job in &jobs {
                let event = job.payload["event"]["name"].as_str().unwrap_or("-");
                let account = job.payload["accountId"].as_str().unwrap_or("-");
                println!(
                    "{}  {event}  account {account}  attempts {}  {}",
                    job.id,
                    job.attempts,
                    job.last_error.as_deref().unwrap_or("")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        FailedCommand::Groups { json, limit } => {
            let (groups, total) = admin.error_groups(limit).await?;
            if json {
                for group in &groups {
                    println!("{}", serde_json::to_string(group)?);
                }
                return Ok(ExitCode::SUCCESS);
            }
            println!("{total} error group(s) in {}", admin.name());
            for group in &groups {
                println!("{}  {:>7}  {}", group.id, group.count, group.error);
            }
            Ok(ExitCode::SUCCESS)
        }
        FailedCommand::Retry { ids, all, filter } => {
            act(
                &admin,
                settings,
                BulkAction::Retry,
                ids,
                all,
                filter.filter(),
            )
            .await
        }
        FailedCommand::Discard { ids, all, filter } => {
            act(
                &admin,
                settings,
                BulkAction::Discard,
                ids,
                all,
                filter.filter(),
            )
            .await
        }
    }
}

/// Retries or discards the jobs `ids` name, or (with `all` or a filter)
/// those a bulk operation selects, recorded in the audit trail first.
async fn act(
    admin: &QueueAdmin,
    settings: &Settings,
    action: BulkAction,
    ids: Vec<String>,
    all: bool,
    filter: DeadFilter,
) -> anyhow::Result<ExitCode> {
    let (name, done) = match action {
        BulkAction::Retry => ("retry", "retried"),
        BulkAction::Discard => ("discard", "discarded"),
    };
    if all || !filter.is_empty() {
        let target = serde_json::json!({ "queue": admin.name(), "filter": filter });
        let progress = audited(settings, &format!("{name}_bulk"), target, || async {
            let progress = bulk(admin, action, filter).await?;
            let count = progress.done;
            Ok((progress, count))
        })
        .await?;
        println!("{done} {}", progress.done);
        return Ok(ExitCode::SUCCESS);
    }
    anyhow::ensure!(!ids.is_empty(), "give job ids, --all, or a filter");
    let target = serde_json::json!({ "queue": admin.name(), "ids": ids });
    let count = audited(settings, name, target, || async {
        let count = match action {
            BulkAction::Retry => {
                let retried = admin.retry(&ids).await?;
                for id in ids.iter().filter(|id| !retried.contains(id)) {
                    eprintln!("not a failed job of {}: {id}", admin.name());
                }
                retried.len() as u64
            }
            BulkAction::Discard => admin.discard(&ids).await.context("discard")?,
        };
        Ok((count, count))
    })
    .await?;
    println!("{done} {count}");
    Ok(if count as usize == ids.len() {
        ExitCode::SUCCESS
    } else {
        eprintln!("{} id(s) were not failed jobs", ids.len() - count as usize);
        ExitCode::FAILURE
    })
}

/// Runs a bulk operation, printing its progress to stderr every second.
async fn bulk(
    admin: &QueueAdmin,
    action: BulkAction,
    filter: DeadFilter,
) -> anyhow::Result<BulkProgress> {
    let progress = admin.begin_bulk(action, filter).await?;
    eprintln!(
        "operation {}: {} failed job(s) selected",
        progress.id, progress.total
    );
    let id = progress.id.clone();
    let run = admin.run_bulk(progress);
    tokio::pin!(run);
    let mut ticks = tokio::time::interval(std::time::Duration::from_secs(1));
    ticks.tick().await;
    loop {
        tokio::select! {
            finished = &mut run => return Ok(finished?),
            _ = ticks.tick() => {
                if let Ok(Some(now)) = admin.bulk(&id).await {
                    eprintln!("operation {id}: {} of {}", now.done, now.total);
                }
            }
        }
    }
}
