//! `herald-bench`'s arguments: one subcommand per workload, with the
//! options and defaults of each.

use clap::{Args, Parser, Subcommand};
use std::time::Duration;

use herald_bench::{inbox, latency, pipeline};

/// Herald's benchmark: fixed workloads, each measured against a baseline in
/// the same run.
///
/// Configuration comes from config/default.toml, config/$HERALD_ENV.toml and
/// HERALD_* environment variables, as for `herald`.
#[derive(Debug, Parser)]
#[command(name = "herald-bench", version, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: BenchCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// The fixed workload: no-op jobs, messages end to end, exports, the
    /// write concern, a user's unread count and latency, each against its
    /// baseline in the same run; one table and the targets.
    All(AllArgs),
    /// Latency at light load, from outside: `herald web` and `herald
    /// worker` as processes, against the floor of sequential Redis, MongoDB
    /// and push round trips; the export's start and an idle worker's cost.
    Latency(LatencyArgs),
    /// Messages end to end at several concurrencies, against the raw MongoDB
    /// insert rate and the raw push stand-in rate.
    Pipeline(PipelineArgs),
    /// Export rows per second and peak memory against a raw cursor scan.
    Export(ExportArgs),
    /// (internal) The export benchmark's baseline: scan one export's query
    /// in this process and print rows, seconds and peak memory as JSON.
    #[command(hide = true)]
    ExportScan {
        /// The export job, as JSON.
        #[arg(long)]
        job: String,
    },
    /// (internal) The export benchmark's worker: what `herald worker` runs
    /// (`herald::worker::run` until SIGTERM/SIGINT, logs as configured), in
    /// a process of this binary, so it allocates as `herald` does.
    #[command(hide = true)]
    Worker,
    /// No-op jobs per second: Herald's queue layer against plain apalis-redis.
    Queue(QueueArgs),
    /// What the MongoDB write concern costs: raw inserts and Herald end to
    /// end with the configured write concern and with w:1 without the
    /// journal, alternating.
    WriteConcern(WriteConcernArgs),
    /// A backlog enqueued with no worker running, drained end to end
    /// (MongoDB and a local push sandbox); checks nothing is stored or pushed twice.
    Backlog(BacklogArgs),
    /// A user's unread count with 100,000 messages (never read, then read
    /// up to date) against one `count` command over as many index keys,
    /// alternating; checks every count.
    Inbox(InboxArgs),
    /// Redis memory over a long run: used_memory sampled every second, and
    /// the bytes per message left once retention has run.
    Soak(SoakArgs),
    /// The failed list's API with 100,000 dead jobs: page, filter and group
    /// times against `/healthz` in the same run.
    FailedList(FailedListArgs),
    /// What Redis Cluster costs per job on this machine: no-op jobs and
    /// messages end to end on the configured Redis server and on a local
    /// cluster, alternating.
    Cluster(ClusterArgs),
    /// What the shared rate limit costs a push: pushes to a local stand-in
    /// without a limiter, with max_requests_per_sec 0, and with a limit
    /// never reached (with and without an account share), alternating.
    RateLimit(RateLimitArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ClusterArgs {
    /// The cluster to compare with the configured server.
    #[arg(
        long,
        env = "HERALD_BENCH_CLUSTER_URL",
        default_value = "redis+cluster://127.0.0.1:7100,127.0.0.1:7101,127.0.0.1:7102"
    )]
    pub(crate) cluster_url: String,
    /// A few hundred jobs: checks that every part runs, measures nothing.
    #[arg(long)]
    pub(crate) smoke: bool,
}

#[derive(Debug, Args)]
pub(crate) struct FailedListArgs {
    /// Dead jobs seeded.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) dead_jobs: usize,
    /// Exit with status 2 when a route's p99 is 100 ms or more.
    #[arg(long)]
    pub(crate) check: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RateLimitArgs {
    /// Pushes per measurement.
    #[arg(long, default_value_t = 2_000)]
    pub(crate) requests: u64,
    /// Pushes in flight at once.
    #[arg(long, default_value_t = 32)]
    pub(crate) concurrency: usize,
    /// Trials of each variant; the table shows the median.
    #[arg(long, default_value_t = 3)]
    pub(crate) trials: usize,
}

#[derive(Debug, Args)]
pub(crate) struct PipelineArgs {
    /// Messages per measurement (and raw operations per raw limit).
    #[arg(long, default_value_t = 10_000)]
    pub(crate) jobs: u64,
    /// Concurrencies to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    pub(crate) concurrency: Vec<usize>,
    /// Most messages outstanding (enqueued, not yet received) at once.
    #[arg(long, default_value_t = 1_000)]
    pub(crate) window: u64,
    /// Trials per concurrency; the table shows the trial with the median
    /// ratio and lists every trial's ratio, and the targets are judged on
    /// a 90% confidence interval of the trials' median (at least 5 trials;
    /// fewer are judged on the median alone).
    #[arg(long, default_value_t = 5)]
    pub(crate) trials: usize,
}

impl PipelineArgs {
    pub(crate) fn workload(&self) -> anyhow::Result<pipeline::Workload> {
        anyhow::ensure!(self.jobs > 0, "--jobs must be positive");
        anyhow::ensure!(self.trials > 0, "--trials must be positive");
        anyhow::ensure!(
            !self.concurrency.is_empty() && self.concurrency.iter().all(|&c| c > 0),
            "--concurrency must list positive numbers"
        );
        Ok(pipeline::Workload {
            jobs: self.jobs,
            concurrencies: self.concurrency.clone(),
            window: self.window,
            trials: self.trials,
        })
    }
}

#[derive(Debug, Args)]
pub(crate) struct WriteConcernArgs {
    /// Messages per measurement (and raw inserts).
    #[arg(
        id = "write_concern_jobs",
        long = "write-concern-jobs",
        value_name = "JOBS",
        default_value_t = 5_000
    )]
    pub(crate) jobs: u64,
    /// Concurrencies to measure, comma-separated.
    #[arg(
        id = "write_concern_concurrency",
        long = "write-concern-concurrency",
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "1,8"
    )]
    pub(crate) concurrency: Vec<usize>,
    /// Trials per concurrency and write concern; the table shows the median.
    #[arg(
        id = "write_concern_trials",
        long = "write-concern-trials",
        value_name = "TRIALS",
        default_value_t = 3
    )]
    pub(crate) trials: usize,
}

impl WriteConcernArgs {
    pub(crate) fn workload(&self) -> anyhow::Result<pipeline::Workload> {
        PipelineArgs {
            jobs: self.jobs,
            concurrency: self.concurrency.clone(),
            window: 1_000,
            trials: self.trials,
        }
        .workload()
    }
}

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// Source documents per export, comma-separated (smallest first).
    #[arg(long, value_delimiter = ',', default_value = "100000,1000000")]
    pub(crate) rows: Vec<u64>,
    /// Trials per size, each a scan and an export back to back; the table
    /// shows the trial with the median ratio, and the targets are judged
    /// on a 90% confidence interval of the trials' median (at least 5
    /// trials; fewer are judged on the median alone).
    #[arg(long, default_value_t = 5)]
    pub(crate) export_trials: usize,
    /// Where the exports write, comma-separated: `local` (a file, always
    /// measured) and `s3` (a multipart upload to s3s-fs on loopback, which
    /// `scripts/setup.sh` installs).
    #[arg(long, value_delimiter = ',', default_value = "local,s3")]
    pub(crate) export_storage: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct AllArgs {
    /// No-op jobs per workload.
    #[arg(long, default_value_t = 50_000)]
    pub(crate) noop_jobs: u64,
    #[command(flatten)]
    pub(crate) pipeline: PipelineArgs,
    #[command(flatten)]
    pub(crate) export: ExportArgs,
    #[command(flatten)]
    pub(crate) write_concern: WriteConcernArgs,
    /// Messages in the inbox of the unread-count part.
    #[arg(long, default_value_t = inbox::Workload::standard().messages)]
    pub(crate) inbox_messages: u64,
    /// Trials of each unread-count scenario.
    #[arg(long, default_value_t = inbox::Workload::standard().trials)]
    pub(crate) inbox_trials: usize,
    /// A tiny workload (seconds, not minutes) that exercises every part:
    /// for checking the command works, not for figures.
    #[arg(long)]
    pub(crate) smoke: bool,
    /// Exit with status 2 when a target is missed.
    #[arg(long)]
    pub(crate) check: bool,
}

#[derive(Debug, Args)]
pub(crate) struct InboxArgs {
    /// Messages the user sees (half to the whole account, half to them),
    /// and as many of each kind of noise (to a colleague, of another
    /// account).
    #[arg(long, default_value_t = inbox::Workload::standard().messages)]
    pub(crate) messages: u64,
    /// Trials of each scenario, the baseline and the unread count
    /// alternating; the table shows the median and the spread.
    #[arg(long, default_value_t = inbox::Workload::standard().trials)]
    pub(crate) trials: usize,
    /// A tiny workload (2,000 messages, one trial): for checking the
    /// command works, not for figures. Overrides the sizes above.
    #[arg(long)]
    pub(crate) smoke: bool,
    /// Exit with status 2 when the target is missed.
    #[arg(long)]
    pub(crate) check: bool,
}

impl InboxArgs {
    pub(crate) fn workload(&self) -> anyhow::Result<inbox::Workload> {
        let workload = match self.smoke {
            true => inbox::Workload::smoke(),
            false => inbox::Workload {
                messages: self.messages,
                trials: self.trials,
            },
        };
        workload.check().map_err(anyhow::Error::msg)?;
        Ok(workload)
    }
}

#[derive(Debug, Args)]
pub(crate) struct BacklogArgs {
    /// send_message jobs in the backlog.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) jobs: u64,
    /// Start the worker first, so the jobs arrive while it runs.
    #[arg(long)]
    pub(crate) live: bool,
}

#[derive(Debug, Args)]
pub(crate) struct SoakArgs {
    /// Messages enqueued, end to end.
    #[arg(long, default_value_t = 200_000)]
    pub(crate) messages: u64,
    /// `retention.done_secs` for the run (short, so retention happens
    /// within it).
    #[arg(long, default_value_t = 5)]
    pub(crate) done_secs: u64,
    /// Exit with status 2 when a target is missed (at most 120 bytes of
    /// `used_memory` per message after retention, none of anything else).
    #[arg(long)]
    pub(crate) check: bool,
}

#[derive(Debug, Args)]
pub(crate) struct QueueArgs {
    /// No-op jobs per workload.
    #[arg(long, default_value_t = 50_000)]
    pub(crate) jobs: u64,
    /// Jobs enqueued per round (kept below 8,000, where apalis-redis wedges).
    #[arg(long, default_value_t = 5_000)]
    pub(crate) round: u64,
    /// Herald's fetch batch size (default: worker.fetch_batch_size).
    #[arg(long)]
    pub(crate) batch: Option<usize>,
    /// Herald's concurrency (default: queues.send_message.concurrency).
    #[arg(long)]
    pub(crate) concurrency: Option<usize>,
    /// Measure only Herald's queue (for profiling; no baseline, no ratio).
    #[arg(long)]
    pub(crate) herald_only: bool,
}

#[derive(Debug, Args)]
pub(crate) struct LatencyArgs {
    /// Messages per light-load path (HTTP and producer), and floor triples.
    #[arg(long, default_value_t = latency::Workload::default().messages)]
    pub(crate) messages: u64,
    /// Messages per second at light load.
    #[arg(long, default_value_t = latency::Workload::default().rate)]
    pub(crate) rate: f64,
    /// Messages enqueued at once to find the maximum rate.
    #[arg(long, default_value_t = latency::Workload::default().max_rate_messages)]
    pub(crate) max_rate_messages: u64,
    /// Seconds of sending at half the maximum rate.
    #[arg(long, default_value_t = latency::Workload::default().under_load.as_secs())]
    pub(crate) under_load_secs: u64,
    /// Trials of the export and of its baseline; the medians count.
    #[arg(long, default_value_t = latency::Workload::default().export_trials)]
    pub(crate) export_trials: usize,
    /// Seconds the idle worker is watched (after it settles for 5).
    #[arg(long, default_value_t = latency::Workload::default().idle.as_secs())]
    pub(crate) idle_secs: u64,
    /// A tiny workload (seconds): for checking the command works, not for
    /// figures. Overrides the sizes above.
    #[arg(long)]
    pub(crate) smoke: bool,
    /// Exit with status 2 when a target is missed.
    #[arg(long)]
    pub(crate) check: bool,
}

impl LatencyArgs {
    pub(crate) fn workload(&self) -> anyhow::Result<latency::Workload> {
        if self.smoke {
            return Ok(latency::Workload::smoke());
        }
        anyhow::ensure!(
            self.messages > 0 && self.max_rate_messages > 0,
            "--messages and --max-rate-messages must be positive"
        );
        anyhow::ensure!(
            self.rate.is_finite() && self.rate > 0.0,
            "--rate must be a positive number"
        );
        anyhow::ensure!(self.export_trials > 0, "--export-trials must be positive");
        anyhow::ensure!(
            self.under_load_secs > 0 && self.idle_secs > 0,
            "--under-load-secs and --idle-secs must be positive"
        );
        Ok(latency::Workload {
            messages: self.messages,
            rate: self.rate,
            max_rate_messages: self.max_rate_messages,
            under_load: Duration::from_secs(self.under_load_secs),
            export_trials: self.export_trials,
            idle: Duration::from_secs(self.idle_secs),
            ..latency::Workload::default()
        })
    }
}
