//! `herald queue ...`: pause and resume a queue, and show its state.

use std::process::ExitCode;

use clap::Subcommand;
use herald::{config::Settings, queue};
use herald_jobs::QueueName;

use super::{audit::audited, failed::parse_queue};

/// What to do with a queue.
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Stop workers from starting the queue's jobs (every process); jobs
    /// running now finish, the others wait with no attempt spent.
    Pause {
        /// push, send_message or export.
        #[arg(value_parser = parse_queue)]
        queue: QueueName,
    },
    /// Let workers start the queue's jobs again.
    Resume {
        /// push, send_message or export.
        #[arg(value_parser = parse_queue)]
        queue: QueueName,
    },
    /// Print each queue's counts and whether it is paused, as JSON lines.
    Status,
}

/// Runs `command`; the exit code reports its outcome.
pub async fn run(command: QueueCommand, settings: &Settings) -> anyhow::Result<ExitCode> {
    let conn = queue::connect(settings.redis.url.as_str()).await?;
    // Every shard a worker consumes, even if this process's setting is lower.
    let settings = &herald::queues::shards::known(&mut conn.clone(), settings).await;
    let admin = |queue| herald::queues::admin(conn.clone(), settings, queue);
    match command {
        QueueCommand::Pause { queue } => {
            let target = serde_json::json!({ "queue": queue.as_str() });
            let changed = audited(settings, "pause", target, || async {
                Ok((admin(queue).pause().await?, 1))
            })
            .await?;
            println!(
                "{} {}",
                queue.as_str(),
                if changed {
                    "paused"
                } else {
                    "was already paused"
                }
            );
        }
        QueueCommand::Resume { queue } => {
            let target = serde_json::json!({ "queue": queue.as_str() });
            let changed = audited(settings, "resume", target, || async {
                Ok((admin(queue).resume().await?, 1))
            })
            .await?;
            println!(
                "{} {}",
                queue.as_str(),
                if changed { "resumed" } else { "was not paused" }
            );
        }
        QueueCommand::Status => {
            for queue in QueueName::ALL {
                println!("{}", serde_json::to_string(&admin(queue).stats().await?)?);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
