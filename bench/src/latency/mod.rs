//! Herald's latency at light load, measured from outside with the real
//! processes: `herald web` and `herald worker` run as child processes of
//! the benchmark (the `herald` binary next to `herald-bench`), configured
//! through `HERALD_*` variables with a Redis namespace, a Mongo database,
//! an export directory and a recording push stand-in of the run's own. In
//! this order:
//!
//! 1. readiness: `herald web` answers `/healthz`, and one message sent
//!    each way (untimed) has reached the stand-in;
//! 2. the floor ([`floor`]): sequential triples of one Redis round trip,
//!    one MongoDB `insert_one` and one push to a stand-in;
//! 3. light load: messages at a fixed rate, each sent by its own task at
//!    its time, over `POST /v1/messages` (an API token bound to the
//!    account) and then through `Producer::enqueue_message`; a message's
//!    latency runs from just before its call to its `new_message` event
//!    reaching the stand-in;
//! 4. under load: the maximum rate (messages enqueued at once, divided by
//!    the time until the last event arrives), then half that rate for a
//!    few seconds through the producer;
//! 5. export start ([`export_start`]): a small export from the producer's
//!    call to its `export_finish` event, against a raw read of the same
//!    documents written to a file and synced;
//! 6. idle ([`idle`]): a worker against a private `redis-server`, its CPU
//!    time and the server's command count over a quiet spell.
//!
//! The run removes its namespace, database and directory afterwards.

mod export_start;
mod floor;
mod idle;
pub(crate) mod process;
mod send;
pub mod stalls;

use std::time::{Duration, Instant};

use herald::{config::Settings, store};
use herald_jobs::{AccountId, Producer};
use mongodb::Database;

pub use self::{export_start::ExportStart, idle::Idle};
use self::{
    process::{spawn_herald, web_ready, Spawned, WebAddress},
    send::{arrivals, messages, paced, Path},
};
use crate::{
    pipeline::{percentile, private_settings, recorder::Recorder},
    queue::BenchError,
    report::Target,
    Row,
};

/// The workload's size.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Messages per light-load path, and floor triples.
    pub messages: u64,
    /// Messages per second at light load.
    pub rate: f64,
    /// Messages enqueued at once to find the maximum rate.
    pub max_rate_messages: u64,
    /// How long messages are sent at half the maximum rate.
    pub under_load: Duration,
    /// Documents in the export.
    pub export_rows: u64,
    /// Trials of the export and its baseline; the medians count.
    pub export_trials: usize,
    /// How long the idle worker runs before it is watched.
    pub settle: Duration,
    /// How long the idle worker is watched.
    pub idle: Duration,
}

impl Default for Workload {
    fn default() -> Self {
        Self {
            messages: 500,
            rate: 50.0,
            max_rate_messages: 5_000,
            under_load: Duration::from_secs(5),
            export_rows: 1_000,
            export_trials: 5,
            settle: Duration::from_secs(5),
            idle: Duration::from_secs(60),
        }
    }
}

impl Workload {
    /// Seconds, not minutes: for checking the command works, not for figures.
    pub fn smoke() -> Self {
        Self {
            messages: 40,
            rate: 50.0,
            max_rate_messages: 200,
            under_load: Duration::from_secs(1),
            export_rows: 1_000,
            export_trials: 1,
            settle: Duration::from_secs(1),
            idle: Duration::from_secs(3),
        }
    }
}

/// A series of latencies: the median, the 99th percentile and the largest.
#[derive(Debug, Clone)]
pub struct Latencies {
    /// What was measured.
    pub name: String,
    /// How many.
    pub count: u64,
    /// From the first to the last measurement's start.
    pub elapsed: Duration,
    /// Median.
    pub p50: Duration,
    /// 99th percentile (nearest rank).
    pub p99: Duration,
    /// Largest.
    pub max: Duration,
    /// The machine's stalls while the series ran, when measured
    /// ([`stalls`]).
    pub stalls: Option<stalls::Stalls>,
}

impl Latencies {
    /// The series of `values` (in any order).
    pub fn of(name: String, elapsed: Duration, mut values: Vec<Duration>) -> Self {
        values.sort_unstable();
        Self {
            name,
            count: values.len() as u64,
            elapsed,
            p50: percentile(&values, 0.50),
            p99: percentile(&values, 0.99),
            max: values.last().copied().unwrap_or_default(),
            stalls: None,
        }
    }

    /// Count and elapsed time as a table row.
    pub fn row(&self) -> Row {
        Row {
            name: self.name.clone(),
            count: self.count,
            elapsed: self.elapsed,
        }
    }
}

/// What one latency run measured.
#[derive(Debug, Clone)]
pub struct Measured {
    /// The floor's triples at the light load's rate: what the targets
    /// compare with.
    pub floor: Latencies,
    /// The floor's triples back to back, for information.
    pub floor_hot: Latencies,
    /// Light load over `POST /v1/messages`.
    pub http: Latencies,
    /// Light load through the producer.
    pub producer: Latencies,
    /// Messages enqueued at once, and the time until the last event.
    pub max_rate: Row,
    /// Through the producer at half the maximum rate (no target).
    pub under_load: Latencies,
    /// The export from enqueue to `export_finish`, and its baseline.
    pub export: ExportStart,
    /// The idle worker.
    pub idle: Idle,
}

impl Measured {
    /// The latency targets, evaluated on this run.
    pub fn targets(&self) -> Vec<Target> {
        let floor = self.floor.p50.as_secs_f64().max(1e-9);
        let mut targets = Vec::new();
        for (path, series) in [("HTTP", &self.http), ("producer", &self.producer)] {
            targets.push(Target::single(
                format!("light load, {path}: p50 <= 3 x the floor's p50"),
                series.p50.as_secs_f64() / floor,
                3.0,
                true,
            ));
            let mut p99 = Target::single(
                format!(
                    "light load, {path}: p99 <= 10 x the floor's p50 (max {:.1} ms)",
                    series.max.as_secs_f64() * 1000.0
                ),
                series.p99.as_secs_f64() / floor,
                10.0,
                true,
            );
            // A stall of the machine longer than the allowance delays a
            // run of messages past it, whatever Herald does (see `stalls`).
            if let Some(seen) = series.stalls {
                if seen.longest.as_secs_f64() > 10.0 * floor {
                    p99.noise = Some(format!(
                        "the machine stalled for {:.0} ms during the series ({} stalls of 5 ms or more), longer than the {:.1} ms allowed",
                        seen.longest.as_secs_f64() * 1000.0,
                        seen.count,
                        10.0 * floor * 1000.0
                    ));
                }
            }
            targets.push(p99);
        }
        targets.push(Target::single(
            format!(
                "export start, {} rows: enqueue to export_finish <= 3 x raw read and sync",
                self.export.rows
            ),
            self.export.ratio(),
            3.0,
            true,
        ));
        targets.push(Target::single(
            "idle worker: CPU, percent of one core".to_owned(),
            self.idle.cpu_percent,
            1.0,
            true,
        ));
        targets.push(Target::single(
            "idle worker: Redis commands sent per second".to_owned(),
            self.idle.sent_per_sec(),
            5.0,
            true,
        ));
        targets
    }
}

/// Runs the whole workload against the services of `settings`.
pub async fn run(settings: &Settings, workload: &Workload) -> Result<Measured, BenchError> {
    let binary = process::herald_binary()?;
    let mut settings = private_settings(settings, "latency")?;
    // The namespace is herald-bench-latency-<unique>: a name of the run's own.
    settings.export.dir = std::env::temp_dir().join(settings.redis.namespace.as_str());
    let recorder = Recorder::spawn(&settings).await?;
    settings.tuisongbao.url = recorder.url()?;
    let database = store::connect(&settings.mongodb).await?;
    let result = measure(&binary, &settings, workload, &recorder, &database).await;
    recorder.stop();
    let _ = database.drop().await;
    let _ = std::fs::remove_dir_all(&settings.export.dir);
    let mut conn = herald::queue::connect(settings.redis.url.as_str()).await?;
    crate::queue::cleanup(&mut conn, &settings.redis.namespace.key_pattern()).await?;
    result
}

async fn measure(
    binary: &std::path::Path,
    settings: &Settings,
    workload: &Workload,
    recorder: &Recorder,
    database: &Database,
) -> Result<Measured, BenchError> {
    let mut herald = Herald::start(binary, settings, database, recorder).await?;
    let measured = herald.measure(settings, workload, recorder, database).await;
    herald.stop().await;
    let Running {
        floor,
        floor_hot,
        http,
        producer,
        max_rate,
        under_load,
        export,
    } = measured?;
    eprintln!(
        "latency: idle worker on a private redis-server, settling {} s, watched {} s",
        workload.settle.as_secs(),
        workload.idle.as_secs()
    );
    let idle = idle::measure(binary, settings, workload.settle, workload.idle).await?;
    Ok(Measured {
        floor,
        floor_hot,
        http,
        producer,
        max_rate,
        under_load,
        export,
        idle,
    })
}

/// How long the events of a part may take to arrive after its last send.
const PATIENCE: Duration = Duration::from_secs(120);

/// What the parts run with `herald web` and `herald worker` measure.
struct Running {
    floor: Latencies,
    floor_hot: Latencies,
    http: Latencies,
    producer: Latencies,
    max_rate: Row,
    under_load: Latencies,
    export: ExportStart,
}

/// `herald web` and `herald worker`, running, and the ways into them.
struct Herald {
    web: Spawned,
    worker: Spawned,
    account: AccountId,
    http: Path,
    producer: Producer,
}

impl Herald {
    /// Starts both processes and waits until each has done its job once.
    async fn start(
        binary: &std::path::Path,
        settings: &Settings,
        database: &Database,
        recorder: &Recorder,
    ) -> Result<Self, BenchError> {
        let address = WebAddress::new()?;
        let web = spawn_herald(binary, settings, "web", Some(&address))?;
        let worker = spawn_herald(binary, settings, "worker", None)?;
        let account = AccountId::from(mongodb::bson::oid::ObjectId::new());
        let tokens = store::ApiTokenStore::new(database);
        tokens.ensure_indexes().await?;
        let (_, token) = tokens
            .create(
                "herald-bench latency",
                herald::store::TokenScope::Account(account),
            )
            .await?;
        let http = reqwest::Client::new();
        let producer = Producer::connect(&settings.redis.url, &settings.redis.namespace)
            .await
            .map_err(|e| BenchError::Enqueue(e.to_string()))?
            .with_limits(settings.message);
        let mut herald = Self {
            web,
            worker,
            account,
            http: Path::Http {
                http: http.clone(),
                url: format!("{}/v1/messages", address.url),
                token,
            },
            producer,
        };
        web_ready(&mut herald.web, &http, &address.url).await?;
        herald.ready(recorder).await?;
        Ok(herald)
    }

    /// One untimed message each way, through to the stand-in: the worker is
    /// up and every connection is open.
    async fn ready(&mut self, recorder: &Recorder) -> Result<(), BenchError> {
        let producer = Path::Producer(Box::new(self.producer.clone()));
        for path in [self.http.clone(), producer] {
            let (sent, _) = paced(&path, messages(self.account, 1, "ready"), 1.0).await?;
            arrivals(&recorder.receipts, &sent, &mut self.worker, PATIENCE).await?;
        }
        Ok(())
    }

    /// The floor, light load, under load and the export, in that order.
    async fn measure(
        &mut self,
        settings: &Settings,
        workload: &Workload,
        recorder: &Recorder,
        database: &Database,
    ) -> Result<Running, BenchError> {
        eprintln!(
            "latency: floor of {} sequential triples, then {} messages at {}/s each way",
            workload.messages, workload.messages, workload.rate
        );
        let floor_hot = floor::measure(settings, workload.messages, None).await?;
        let pace = Duration::from_secs_f64(1.0 / workload.rate.max(1.0));
        let floor = floor::measure(settings, workload.messages, Some(pace)).await?;
        let http = self
            .light(
                recorder,
                self.http.clone(),
                "HTTP POST /v1/messages",
                workload,
            )
            .await?;
        let producer = Path::Producer(Box::new(self.producer.clone()));
        let producer = self
            .light(recorder, producer, "Producer::enqueue_message", workload)
            .await?;
        let max_rate = self.max_rate(recorder, workload.max_rate_messages).await?;
        let under_load = self
            .under_load(recorder, max_rate.rate() / 2.0, workload.under_load)
            .await?;
        eprintln!(
            "latency: export of {} documents, {} trial(s)",
            workload.export_rows, workload.export_trials
        );
        let services = export_start::Services {
            database,
            producer: &mut self.producer,
            receipts: &recorder.receipts,
            worker: &mut self.worker,
        };
        let export = export_start::measure(
            settings,
            services,
            workload.export_rows,
            workload.export_trials,
        )
        .await?;
        Ok(Running {
            floor,
            floor_hot,
            http,
            producer,
            max_rate,
            under_load,
            export,
        })
    }

    /// `workload.messages` messages at `workload.rate` per second through `path`.
    async fn light(
        &mut self,
        recorder: &Recorder,
        path: Path,
        name: &str,
        workload: &Workload,
    ) -> Result<Latencies, BenchError> {
        let jobs = messages(self.account, workload.messages, name);
        let meter = stalls::StallMeter::start();
        let sent = paced(&path, jobs, workload.rate).await;
        let arrived = match sent {
            Ok((sent, span)) => arrivals(&recorder.receipts, &sent, &mut self.worker, PATIENCE)
                .await
                .map(|arrived| (arrived, span)),
            Err(e) => Err(e),
        };
        let seen = meter.stop();
        let (arrived, span) = arrived?;
        let mut series = Latencies::of(
            format!("{name}, {}/s", workload.rate),
            span,
            arrived.latencies,
        );
        series.stalls = Some(seen);
        Ok(series)
    }

    /// `count` messages enqueued at once (bulk, through the producer): the
    /// row's rate is the maximum rate.
    async fn max_rate(&mut self, recorder: &Recorder, count: u64) -> Result<Row, BenchError> {
        let jobs = messages(self.account, count, "max rate");
        let ids: Vec<String> = jobs.iter().map(|j| j.message_id.clone()).collect();
        let start = Instant::now();
        self.producer
            .enqueue_messages(jobs)
            .await
            .map_err(|e| BenchError::Enqueue(e.to_string()))?;
        let sent = ids.into_iter().map(|id| (id, start)).collect();
        let arrived = arrivals(&recorder.receipts, &sent, &mut self.worker, PATIENCE).await?;
        Ok(Row {
            name: format!("maximum rate: {count} enqueued at once"),
            count,
            elapsed: arrived.last.saturating_duration_since(start),
        })
    }

    /// Messages at `rate` per second through the producer for `spell`.
    async fn under_load(
        &mut self,
        recorder: &Recorder,
        rate: f64,
        spell: Duration,
    ) -> Result<Latencies, BenchError> {
        let count = (rate * spell.as_secs_f64()).ceil().max(1.0) as u64;
        let jobs = messages(self.account, count, "under load");
        let path = Path::Producer(Box::new(self.producer.clone()));
        let (sent, span) = paced(&path, jobs, rate).await?;
        let arrived = arrivals(&recorder.receipts, &sent, &mut self.worker, PATIENCE).await?;
        Ok(Latencies::of(
            format!("Producer::enqueue_message, {rate:.0}/s (half max)"),
            span,
            arrived.latencies,
        ))
    }

    /// Stops both processes.
    async fn stop(self) {
        self.web.stop().await;
        self.worker.stop().await;
    }
}
