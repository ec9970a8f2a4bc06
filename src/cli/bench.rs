//! `herald bench ...`: benchmark commands.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use herald::{
    bench::{self, queue::Workload},
    config::Settings,
    queue,
};

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// No-op jobs per second: Herald's queue layer against plain apalis-redis.
    Queue(QueueArgs),
    /// A backlog enqueued with no worker running, drained end to end
    /// (MongoDB and a local push sandbox); checks nothing is stored or pushed twice.
    Backlog(BacklogArgs),
}

#[derive(Debug, Args)]
pub struct BacklogArgs {
    /// send_message jobs in the backlog.
    #[arg(long, default_value_t = 100_000)]
    jobs: u64,
    /// Start the worker first, so the jobs arrive while it runs.
    #[arg(long)]
    live: bool,
}

#[derive(Debug, Args)]
pub struct QueueArgs {
    /// No-op jobs per workload.
    #[arg(long, default_value_t = 50_000)]
    jobs: u64,
    /// Jobs enqueued per round (kept below 8,000, where apalis-redis wedges).
    #[arg(long, default_value_t = 5_000)]
    round: u64,
    /// Herald's fetch batch size (default: worker.fetch_batch_size).
    #[arg(long)]
    batch: Option<usize>,
    /// Herald's concurrency (default: worker.concurrency).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Measure only Herald's queue (for profiling; no baseline, no ratio).
    #[arg(long)]
    herald_only: bool,
}

pub async fn run(command: BenchCommand, settings: &Settings) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::Backlog(args) => {
            let report = bench::backlog::run(settings, args.jobs, args.live)
                .await
                .context("backlog benchmark")?;
            bench::print_table(
                &format!(
                    "{} send_message jobs enqueued {}, one worker process",
                    args.jobs,
                    if args.live {
                        "while the worker runs"
                    } else {
                        "with no worker running"
                    }
                ),
                &[report.enqueue, report.drain],
            );
            println!(
                "verified: {} documents stored, {} pushes accepted for {} distinct messages",
                report.stored, report.pushed_total, report.pushed_distinct
            );
            let ok = report.stored == args.jobs
                && report.pushed_total == report.pushed_distinct
                && report.pushed_distinct as u64 == args.jobs;
            if !ok {
                eprintln!("error: something was lost or duplicated");
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Queue(args) => {
            anyhow::ensure!(
                args.round > 0 && args.round < 8_000,
                "--round must be 1..7999"
            );
            let conn = queue::connect(settings).await?;
            let workload = Workload {
                jobs: args.jobs,
                round: args.round,
            };
            let batch = args.batch.unwrap_or(settings.worker.fetch_batch_size);
            let concurrency = args.concurrency.unwrap_or(settings.worker.concurrency);
            let mut rows = Vec::new();
            if !args.herald_only {
                rows.push(
                    bench::queue::apalis_redis_baseline(conn.clone(), workload, 10)
                        .await
                        .context("apalis-redis baseline")?,
                );
                rows.push(
                    bench::queue::apalis_redis_baseline(conn.clone(), workload, 100)
                        .await
                        .context("apalis-redis, batch 100")?,
                );
            }
            rows.extend([
                bench::queue::herald_queue(conn.clone(), workload, batch, concurrency)
                    .await
                    .context("herald queue")?,
                bench::queue::herald_queue(conn.clone(), workload, 100, 100)
                    .await
                    .context("herald queue, batch 100")?,
            ]);
            bench::print_table(
                &format!(
                    "No-op jobs, one worker, {} jobs in rounds of {} (ratio: to the first row)",
                    workload.jobs, workload.round
                ),
                &rows,
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
