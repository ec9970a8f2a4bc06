//! `herald failed ...`: the failed-job operations, for scripts.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use herald::{
    config::Settings,
    queue::{self, admin::QueueAdmin},
};
use herald_jobs::QueueName;

#[derive(Debug, Args)]
pub struct FailedArgs {
    /// Queue: push, send_message or export.
    #[arg(long, global = true, default_value = "push", value_parser = parse_queue)]
    queue: QueueName,
    #[command(subcommand)]
    command: FailedCommand,
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
    },
    /// Send failed jobs back to the queue with a fresh attempt budget.
    Retry {
        /// Job ids.
        ids: Vec<String>,
        /// Retry every failed job of the queue.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
    /// Delete failed jobs for good.
    Discard {
        /// Job ids.
        #[arg(required = true)]
        ids: Vec<String>,
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
    let admin = QueueAdmin::new(conn, herald::queues::config(settings, args.queue));
    match args.command {
        FailedCommand::List { json, limit } => {
            let (jobs, total) = admin.dead_jobs(0, limit).await?;
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
        FailedCommand::Retry { ids, all } => {
            let count = if all {
                admin.retry_all().await?
            } else {
                anyhow::ensure!(!ids.is_empty(), "give job ids, or --all");
                let retried = admin.retry(&ids).await?;
                for id in ids.iter().filter(|id| !retried.contains(id)) {
                    eprintln!("not a failed job of {}: {id}", admin.name());
                }
                retried.len() as u64
            };
            println!("retried {count}");
            Ok(ExitCode::SUCCESS)
        }
        FailedCommand::Discard { ids } => {
            let count = admin.discard(&ids).await.context("discard")?;
            println!("discarded {count}");
            Ok(if count as usize == ids.len() {
                ExitCode::SUCCESS
            } else {
                eprintln!("{} id(s) were not failed jobs", ids.len() - count as usize);
                ExitCode::FAILURE
            })
        }
    }
}
