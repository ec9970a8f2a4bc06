//! `herald-bench`'s commands: each runs its workloads and prints their
//! table; `all` also checks the targets.

use std::process::ExitCode;

use anyhow::Context;
use herald::{config::Settings, queue, shutdown, telemetry, worker};
use herald_bench::{self as bench, queue::Workload, report::Report};

use crate::args::{
    AllArgs, BenchCommand, ClusterArgs, ExportArgs, FailedListArgs, InboxArgs, LatencyArgs,
    SoakArgs,
};

/// Runs `command` with `settings`; the exit code reports its outcome.
pub(crate) async fn run(command: BenchCommand, settings: &Settings) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::All(args) => run_all(args, settings).await,
        BenchCommand::Pipeline(args) => {
            let workload = args.workload()?;
            let report = Report {
                pipeline: run_pipeline(settings, &workload).await?,
                ..Report::default()
            };
            print!("{}", report.render());
            Ok(verified(&report, workload.jobs))
        }
        BenchCommand::Latency(args) => run_latency_command(settings, &args).await,
        BenchCommand::Export(args) => {
            let report = Report {
                export: run_export(settings, &args).await?,
                ..Report::default()
            };
            print!("{}", report.render());
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::WriteConcern(args) => {
            let workload = args.workload()?;
            let report = Report {
                write_concern: run_write_concern(settings, &workload).await?,
                ..Report::default()
            };
            print!("{}", report.render());
            Ok(verified(&report, workload.jobs))
        }
        BenchCommand::ExportScan { job } => {
            let job: herald_jobs::Export =
                serde_json::from_str(&job).context("--job is not an export job")?;
            let report = bench::export::scan(settings, &job)
                .await
                .context("export scan")?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Worker => {
            // The benchmarks measure the work, not a span export.
            let _no_export = telemetry::init(&settings.log, None, "worker");
            worker::run(settings.clone(), shutdown::signal())
                .await
                .context("worker stopped with an error")?;
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Inbox(args) => run_inbox_command(settings, &args).await,
        BenchCommand::Soak(args) => run_soak(settings, &args).await,
        BenchCommand::FailedList(args) => run_failed_list(settings, &args).await,
        BenchCommand::Cluster(args) => run_cluster(settings, &args).await,
        BenchCommand::RateLimit(args) => {
            anyhow::ensure!(
                args.requests > 0 && args.concurrency > 0 && args.trials > 0,
                "--requests, --concurrency and --trials must be positive"
            );
            let rows =
                bench::rate_limit::run(settings, args.requests, args.concurrency, args.trials)
                    .await
                    .context("rate limit benchmark")?;
            bench::print_table(
                &format!(
                    "Pushes to a local stand-in, {} per measurement, median of {} alternating trials (ratio: to the first row)",
                    args.requests, args.trials
                ),
                &rows,
            );
            let alone =
                bench::rate_limit::limiter_alone(settings, args.requests * 500, args.concurrency)
                    .await
                    .context("rate limiter alone")?;
            bench::print_table(
                "The limiter alone, no HTTP (ratio: to the first row)",
                &alone,
            );
            for row in &alone {
                println!("{}: {:.3} µs per call", row.name, 1e6 / row.rate());
            }
            Ok(ExitCode::SUCCESS)
        }
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
            let conn = queue::connect(settings.redis.url.as_str()).await?;
            let workload = Workload {
                jobs: args.jobs,
                round: args.round,
            };
            let batch = args.batch.unwrap_or(settings.worker.fetch_batch_size);
            let concurrency = args
                .concurrency
                .unwrap_or(settings.queues.send_message.concurrency);
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

async fn run_pipeline(
    settings: &Settings,
    workload: &bench::pipeline::Workload,
) -> anyhow::Result<Vec<bench::pipeline::Measured>> {
    eprintln!(
        "messages end to end: {} per measurement at concurrency {:?}, {} trial(s) each",
        workload.jobs, workload.concurrencies, workload.trials
    );
    bench::pipeline::run(settings, workload)
        .await
        .context("end-to-end benchmark")
}

async fn run_write_concern(
    settings: &Settings,
    workload: &bench::pipeline::Workload,
) -> anyhow::Result<Vec<bench::write_concern::Measured>> {
    eprintln!(
        "write concern: {} against w:1 without the journal, {} messages per measurement at concurrency {:?}, {} trial(s) each",
        bench::write_concern::describe(settings),
        workload.jobs,
        workload.concurrencies,
        workload.trials
    );
    bench::write_concern::run(settings, workload)
        .await
        .context("write concern benchmark")
}

async fn run_export(
    settings: &Settings,
    args: &ExportArgs,
) -> anyhow::Result<Vec<bench::export::Measured>> {
    let rows = &args.rows;
    anyhow::ensure!(
        !rows.is_empty() && rows.iter().all(|&n| n > 0),
        "--rows must list positive numbers"
    );
    anyhow::ensure!(args.export_trials > 0, "--export-trials must be positive");
    anyhow::ensure!(
        args.export_storage
            .iter()
            .all(|s| s == "local" || s == "s3"),
        "--export-storage lists `local` and `s3` only"
    );
    let s3 = args.export_storage.iter().any(|s| s == "s3");
    eprintln!(
        "exports: seeding {rows:?} documents, {} trial(s) each",
        args.export_trials
    );
    bench::export::run(settings, rows, args.export_trials, s3)
        .await
        .context("export benchmark")
}

/// Exit status after the end-to-end parts: failure if anything was lost or
/// delivered twice.
fn verified(report: &Report, jobs: u64) -> ExitCode {
    for m in &report.write_concern {
        if !m.verified {
            eprintln!(
                "error: write concern, concurrency {}: a message was lost or delivered twice",
                m.concurrency
            );
            return ExitCode::FAILURE;
        }
    }
    for m in &report.pipeline {
        if !m.verified(jobs) {
            eprintln!(
                "error: concurrency {}: {} stored, {} pushes for {} distinct messages (expected {jobs} each)",
                m.concurrency, m.stored, m.pushed, m.pushed_distinct
            );
            return ExitCode::FAILURE;
        }
    }
    println!(
        "verified: every message stored once and pushed once at every concurrency ({jobs} each)"
    );
    ExitCode::SUCCESS
}

async fn run_all(mut args: AllArgs, settings: &Settings) -> anyhow::Result<ExitCode> {
    let mut round = 5_000;
    if args.smoke {
        args.noop_jobs = 1_000;
        round = 500;
        args.pipeline.jobs = 200;
        args.pipeline.concurrency = vec![1, 8];
        args.pipeline.window = 100;
        args.pipeline.trials = 1;
        args.export.rows = vec![1_000, 5_000];
        args.export.export_trials = 1;
        args.write_concern.jobs = 200;
        args.write_concern.trials = 1;
        args.inbox_messages = bench::inbox::Workload::smoke().messages;
        args.inbox_trials = bench::inbox::Workload::smoke().trials;
    }
    let inbox = bench::inbox::Workload {
        messages: args.inbox_messages,
        trials: args.inbox_trials,
    };
    inbox.check().map_err(anyhow::Error::msg)?;
    let workload = args.pipeline.workload()?;
    let conn = queue::connect(settings.redis.url.as_str()).await?;
    let noop = Workload {
        jobs: args.noop_jobs,
        round,
    };
    eprintln!("no-op jobs: {} per workload", noop.jobs);
    let mut report = Report {
        noop: vec![
            bench::queue::apalis_redis_baseline(conn.clone(), noop, 10)
                .await
                .context("apalis-redis baseline")?,
            bench::queue::herald_queue(
                conn,
                noop,
                settings.worker.fetch_batch_size,
                settings.queues.send_message.concurrency,
            )
            .await
            .context("herald queue")?,
        ],
        ..Report::default()
    };
    report.pipeline = run_pipeline(settings, &workload).await?;
    report.export = run_export(settings, &args.export).await?;
    report.write_concern = run_write_concern(settings, &args.write_concern.workload()?).await?;
    report.inbox = Some(run_inbox(settings, inbox).await?);
    let latency = match args.smoke {
        true => bench::latency::Workload::smoke(),
        false => bench::latency::Workload::default(),
    };
    report.latency = Some(run_latency(settings, &latency).await?);
    print!("{}", report.render());
    let status = verified(&report, workload.jobs);
    if status != ExitCode::SUCCESS {
        return Ok(status);
    }
    if args.check && report.targets().iter().any(|t| t.missed()) {
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_latency(
    settings: &Settings,
    workload: &bench::latency::Workload,
) -> anyhow::Result<bench::latency::Measured> {
    eprintln!(
        "latency: herald web and herald worker as processes; {} messages at {}/s each way, {} at once for the maximum rate, an export of {} documents ({} trial(s)), an idle worker watched {} s",
        workload.messages,
        workload.rate,
        workload.max_rate_messages,
        workload.export_rows,
        workload.export_trials,
        workload.idle.as_secs()
    );
    bench::latency::run(settings, workload)
        .await
        .context("latency benchmark")
}

/// Runs the latency benchmark and prints its table and targets.
async fn run_latency_command(settings: &Settings, args: &LatencyArgs) -> anyhow::Result<ExitCode> {
    let report = Report {
        latency: Some(run_latency(settings, &args.workload()?).await?),
        ..Report::default()
    };
    print!("{}", report.render());
    if args.check && report.targets().iter().any(|t| t.missed()) {
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_inbox(
    settings: &Settings,
    workload: bench::inbox::Workload,
) -> anyhow::Result<bench::inbox::Measured> {
    eprintln!(
        "unread count: {} messages in one user's inbox and {} of noise, {} trial(s) of each scenario",
        workload.messages,
        workload.messages * 2,
        workload.trials
    );
    bench::inbox::run(settings, workload)
        .await
        .context("unread-count benchmark")
}

/// Runs the unread-count benchmark and prints its table and target; a
/// wrong count fails the run.
async fn run_inbox_command(settings: &Settings, args: &InboxArgs) -> anyhow::Result<ExitCode> {
    let report = Report {
        inbox: Some(run_inbox(settings, args.workload()?).await?),
        ..Report::default()
    };
    print!("{}", report.render());
    if args.check && report.targets().iter().any(|t| t.missed()) {
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs the failed-list benchmark and prints its table.
async fn run_failed_list(settings: &Settings, args: &FailedListArgs) -> anyhow::Result<ExitCode> {
    let report = bench::failed_list::run(settings, args.dead_jobs)
        .await
        .context("failed-list benchmark")?;
    print!("{}", report.render());
    if args.check && !report.met() {
        eprintln!("a route's p99 is over the target");
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

/// The soak's target: at most this much `used_memory` growth per message
/// after retention.
const SOAK_TARGET_BYTES: f64 = 120.0;

/// Runs the soak and prints its samples and what was left.
async fn run_soak(settings: &Settings, args: &SoakArgs) -> anyhow::Result<ExitCode> {
    let workload = bench::soak::SoakWorkload {
        messages: args.messages,
        done_secs: args.done_secs,
    };
    let report = bench::soak::run(settings, workload)
        .await
        .context("soak benchmark")?;
    println!(
        "{} messages end to end, retention.done_secs {}: drained in {:.1} s, finished jobs forgotten {:.1} s later",
        args.messages, args.done_secs, report.drained_secs, report.retention_secs
    );
    println!(
        "{:>8} {:>9} {:>16} {:>16} {:>14}",
        "seconds", "pushed", "used_memory MiB", "namespace MiB", "namespace keys"
    );
    let every = (report.samples.len() / 30).max(1);
    for sample in report.samples.iter().step_by(every) {
        println!(
            "{:>8.0} {:>9} {:>16.1} {:>16.1} {:>14}",
            sample.at,
            sample.pushed,
            sample.used_memory as f64 / 1048576.0,
            sample.namespace_bytes as f64 / 1048576.0,
            sample.namespace_keys
        );
    }
    println!("left after retention, by kind of key:");
    for (kind, (keys, bytes)) in &report.left {
        println!(
            "  {kind:<28} {keys:>9} keys {:>12} bytes {:>8.1} bytes/message",
            bytes,
            *bytes as f64 / args.messages.max(1) as f64
        );
    }
    let window = report.window_bytes_per_message();
    let other = report.other_bytes_per_message();
    let grown = report.used_memory_per_message();
    println!(
        "Redis used_memory (a private server): {:.2} MiB before the worker started, {:.2} MiB after retention: {grown:.1} bytes per message",
        report.used_memory_before as f64 / 1048576.0,
        report.used_memory_after as f64 / 1048576.0
    );
    println!(
        "MEMORY USAGE of the keys left: {window:.1} bytes per message for the re-run window (expire with it), {other:.1} bytes of anything else"
    );
    println!(
        "verified: {} documents stored, {} pushes accepted",
        report.stored, report.pushed
    );
    let counted = report.stored == args.messages && report.pushed == args.messages;
    // Stats counters are per queue and per minute, not per message: a
    // finished job leaves less than a byte per message of them.
    let met = grown <= SOAK_TARGET_BYTES && other < 1.0;
    if !counted {
        println!("FAILED: messages lost or doubled");
        return Ok(ExitCode::FAILURE);
    }
    if args.check && !met {
        println!("target missed: at most {SOAK_TARGET_BYTES} bytes of used_memory per message after retention, under 1 byte by MEMORY USAGE of anything but the re-run window's claims");
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_cluster(settings: &Settings, args: &ClusterArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        !herald_jobs::redis_url::is_cluster_url(&settings.redis.url),
        "HERALD_REDIS_URL is the baseline and must name one server, not a cluster"
    );
    let workload = match args.smoke {
        true => bench::cluster::Workload::smoke(),
        false => bench::cluster::Workload::standard(),
    };
    eprintln!(
        "cluster: {} no-op jobs and {} messages end to end, {} trial(s) on each deployment",
        workload.noop.jobs, workload.e2e.jobs, workload.trials
    );
    let report = bench::cluster::run(settings, &args.cluster_url, &workload)
        .await
        .context("cluster benchmark")?;
    bench::print_table(
        "No-op jobs: one Redis server, then the cluster (ratio: to one server)",
        &report.noop,
    );
    let [cpu_server, cpu_cluster] = report.noop_redis_cpu_us;
    println!(
        "Redis CPU per no-op job on the primaries: one server {cpu_server:.1} µs, cluster {cpu_cluster:.1} µs ({:.2}x); the cluster's replicas {:.1} µs more",
        cpu_cluster / cpu_server.max(1e-9),
        report.noop_replica_cpu_us
    );
    let [server, cluster, sharded] = &report.e2e;
    bench::print_table(
        "Messages end to end: one Redis server, the cluster, the cluster with sharded queues (ratio: to one server)",
        &[server.row.clone(), cluster.row.clone(), sharded.row.clone()],
    );
    let [busiest_one, busiest_sharded] = report.busiest_primary_us;
    let [share_one, share_sharded] = report.busiest_primary_share;
    println!(
        "Redis CPU per message on the busiest primary: one shard {busiest_one:.1} µs ({:.0}% of the primaries'), {} shards {busiest_sharded:.1} µs ({:.0}%)",
        share_one * 100.0,
        bench::cluster::SHARDS,
        share_sharded * 100.0,
    );
    for timed in [server, cluster, sharded] {
        println!(
            "{}: p50 {:.1} ms, p99 {:.1} ms",
            timed.row.name,
            timed.p50.as_secs_f64() * 1e3,
            timed.p99.as_secs_f64() * 1e3
        );
    }
    if !report.verified {
        eprintln!("error: a message was lost or delivered twice");
        return Ok(ExitCode::FAILURE);
    }
    println!("verified: every message stored once and pushed once on every deployment");
    Ok(ExitCode::SUCCESS)
}
