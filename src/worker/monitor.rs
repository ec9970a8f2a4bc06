//! The worker process's apalis workers: one per queue and shard, each
//! with its backend, its handler's dependencies and the job metrics layer,
//! under one [`Monitor`] that restarts a failed worker and bounds the
//! drain at shutdown.
//!
//! A queue's concurrency is also one semaphore its shards' workers share
//! ([`super::shared_permits`]): a job runs only with a permit, and permits
//! go to waiting jobs in turn, so the shards of a queue are consumed
//! fairly and the process runs at most `queues.<name>.concurrency` jobs of
//! the queue, however many shards it has.

use std::{sync::Arc, time::Duration};

use tokio::sync::Semaphore;

use super::shared_permits::SharedPermitsLayer;

use apalis::prelude::{Monitor, ParallelizeExt, WorkerBuilder, WorkerBuilderExt};
use herald_jobs::QueueName;

use super::{push, send_message};
use crate::{
    config::Settings,
    export::storage::ConfiguredStorage,
    ops::{JobMetricsLayer, Metrics},
    push::Provider,
    queue::{RawArgs, RedisQueue},
};

/// The backend of each queue.
#[derive(Debug)]
pub struct Backends {
    /// `send_message`, handing off to `push`.
    pub send_message: RedisQueue<RawArgs>,
    /// `push`.
    pub push: RedisQueue<RawArgs>,
    /// `export`.
    pub export: RedisQueue<serde_json::Value>,
}

/// One shard's backends and what its handlers need.
#[derive(Debug)]
pub struct Shard {
    /// The shard's backend of each queue.
    pub backends: Backends,
    /// Its handlers' dependencies.
    pub handlers: Handlers,
}

/// What each queue's handler needs.
#[derive(Debug)]
pub struct Handlers {
    /// For [`send_message::handle`].
    pub send_message: Arc<send_message::Deps>,
    /// For [`push::handle`].
    pub push: Arc<push::Deps<Provider>>,
    /// For [`crate::export::handle`].
    pub export: Arc<crate::export::Deps<ConfiguredStorage, Provider>>,
}

/// What every worker of one queue shares in this process: the queue's
/// options and its semaphore of `concurrency` permits.
struct Lane {
    queue: QueueName,
    concurrency: usize,
    permits: Arc<Semaphore>,
}

impl Lane {
    /// The lane of `queue`, sized by its `[queues.<name>]` table.
    fn new(settings: &Settings, queue: QueueName) -> Self {
        let concurrency = settings.queues.of(queue).concurrency;
        Self {
            queue,
            concurrency,
            permits: Arc::new(Semaphore::new(concurrency)),
        }
    }
}

/// Registers one queue shard's worker on `$lane` (a [`Lane`]): `$backend`
/// (which wakes itself when jobs arrive, see `queue::driver`), `$deps` as
/// its data, at most the lane's concurrency of jobs taken at once, counted
/// by the job metrics layer, each job spawned on the runtime and run while
/// it holds one of the lane's permits (shared by the queue's shards).
/// A macro, not a function: each queue's handler and backend give the
/// builder a different type.
macro_rules! queue_worker {
    ($monitor:expr, $lane:expr, $shard:expr, $backend:expr, $deps:expr, $metrics:expr, $handler:expr) => {{
        let (backend, deps, metrics, shard) = ($backend, $deps, $metrics.clone(), $shard);
        let (queue, concurrency, permits) = ($lane.queue, $lane.concurrency, $lane.permits.clone());
        $monitor.register(move |_restarts| {
            WorkerBuilder::new(worker_name(queue, shard))
                .backend(backend.clone())
                .data(deps.clone())
                .concurrency(concurrency)
                .parallelize(tokio::spawn)
                // Inside `parallelize`: the spawned job waits for its
                // permit, then is timed (the wait is not the job's).
                .layer(SharedPermitsLayer::new(permits.clone()))
                .layer(JobMetricsLayer::new(metrics.clone(), queue.as_str()))
                .build($handler)
        })
    }};
}

/// The monitor running one worker per queue and shard.
///
/// An idle worker fetches again as soon as a job is enqueued, by any
/// process (the queue's wake list, see `queue::driver::wakeup`), and at
/// the latest after `worker.idle_wait`.
pub fn build(shards: Vec<Shard>, settings: &Settings, metrics: Metrics) -> Monitor {
    let grace = settings.worker.shutdown_timeout;
    let send_lane = Lane::new(settings, QueueName::SendMessage);
    let push_lane = Lane::new(settings, QueueName::Push);
    let export_lane = Lane::new(settings, QueueName::Export);
    let mut monitor = Monitor::new();
    for (shard, Shard { backends, handlers }) in shards.into_iter().enumerate() {
        monitor = queue_worker!(
            monitor,
            send_lane,
            shard,
            backends.send_message,
            handlers.send_message,
            metrics,
            send_message::handle
        );
        monitor = queue_worker!(
            monitor,
            push_lane,
            shard,
            backends.push,
            handlers.push,
            metrics,
            push::handle::<Provider>
        );
        monitor = queue_worker!(
            monitor,
            export_lane,
            shard,
            backends.export,
            handlers.export,
            metrics,
            crate::export::handle::<ConfiguredStorage, Provider>
        );
    }
    monitor
        // Redis failures do not stop a worker (its backend tries again until
        // Redis answers, see `queue::driver`); anything that still does is
        // rebuilt, after a pause that grows with its restarts, instead of
        // being left stopped.
        .should_restart(|worker, error| {
            tracing::error!(worker = worker.name(), %error, "worker failed; restarting");
            pause_before_restart(worker.restarts());
            true
        })
        // Lazy: the grace period starts when shutdown is requested, not now.
        .with_terminator(async move { tokio::time::sleep(grace).await })
}

/// A name unique to this worker process, queue and shard: host, pid, a
/// random suffix, the queue, and the shard after the first. Jobs are
/// leased to a worker by name, so a restarted process must not reuse its
/// predecessor's name (its leases would never be seen as orphaned).
fn worker_name(queue: QueueName, shard: usize) -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "herald".to_owned());
    let random = mongodb::bson::oid::ObjectId::new().to_hex();
    let shard = match shard {
        0 => String::new(),
        k => format!("-{k}"),
    };
    format!(
        "{host}-{}-{}-{}{shard}",
        std::process::id(),
        &random[random.len() - 6..],
        queue.as_str()
    )
}

/// Waits before a failed worker is rebuilt: 200 ms per restart so far, at
/// most 5 s, so a failure that repeats does not become a busy loop.
///
/// apalis asks for the restart decision synchronously, so the pause blocks;
/// `block_in_place` hands this thread's other tasks to the rest of the pool.
fn pause_before_restart(restarts: usize) {
    let pause = Duration::from_millis(200 * (restarts as u64 + 1)).min(Duration::from_secs(5));
    let flavor = tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor());
    // A single-threaded runtime cannot give the thread away; restart at once.
    if let Ok(tokio::runtime::RuntimeFlavor::MultiThread) = flavor {
        tokio::task::block_in_place(|| std::thread::sleep(pause));
    }
}
