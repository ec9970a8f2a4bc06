//! `herald enqueue ...`: put jobs on queues from the command line.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use herald::config::Settings;
use herald_jobs::{AccountId, MessageId, MessageStatus, Producer, SendMessage, UserId};

#[derive(Debug, Subcommand)]
pub enum EnqueueCommand {
    /// Enqueue a send_message job; prints the message id.
    Message(MessageArgs),
    /// Enqueue an export job; prints its key (--follow shows its progress).
    Export(super::export::EnqueueExportArgs),
}

#[derive(Debug, Args)]
pub struct MessageArgs {
    /// Account the message belongs to (24-hex ObjectId).
    #[arg(long, value_name = "HEX")]
    account: AccountId,
    /// Title (not blank).
    #[arg(long)]
    title: String,
    /// Content; may hold HTML.
    #[arg(long)]
    content: String,
    /// warning, error or success.
    #[arg(long, default_value = "success", value_parser = parse_status)]
    status: MessageStatus,
    /// Address the message to one user instead of the whole account.
    #[arg(long, value_name = "HEX")]
    to_user: Option<UserId>,
    /// Mark the message as sent by this user instead of the system.
    #[arg(long, value_name = "HEX")]
    sender_user: Option<UserId>,
    /// Use this message id instead of a new one (re-enqueueing is deduplicated).
    #[arg(long, value_name = "HEX")]
    message_id: Option<MessageId>,
    /// Store and push it at this time (RFC 3339, e.g. 2026-12-24T09:00:00Z)
    /// instead of at once; at most message.max_schedule_days ahead.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    send_at: Option<chrono::DateTime<chrono::Utc>>,
}

fn parse_time(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|at| at.with_timezone(&chrono::Utc))
        .map_err(|_| format!("'{s}' is not an RFC 3339 time like 2026-12-24T09:00:00Z"))
}

fn parse_status(s: &str) -> Result<MessageStatus, String> {
    s.parse()
}

pub async fn run(command: EnqueueCommand, settings: &Settings) -> anyhow::Result<ExitCode> {
    match command {
        EnqueueCommand::Export(args) => super::export::enqueue(args, settings).await,
        EnqueueCommand::Message(args) => {
            let mut job =
                SendMessage::new(args.account, args.title, args.content).status(args.status);
            if let Some(user) = args.to_user {
                job = job.to_user(user);
            }
            if let Some(user) = args.sender_user {
                job = job.sent_by_user(user);
            }
            if let Some(id) = args.message_id {
                job = job.with_message_id(id);
            }
            if let Some(at) = args.send_at {
                job = job.send_at(at);
            }
            let mut producer = Producer::connect(&settings.redis.url, &settings.redis.namespace)
                .await?
                .with_limits(settings.message);
            let id = producer
                .enqueue_message(job)
                .await
                .context("message not enqueued")?;
            println!("{id}");
            Ok(ExitCode::SUCCESS)
        }
    }
}
