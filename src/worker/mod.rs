//! The worker process: apalis workers for each queue, and their shutdown.
//!
//! [`run`] connects to Redis, MongoDB and the push provider, creates the
//! indexes, then runs one apalis worker per queue until the shutdown future
//! completes. Shutdown stops fetching at once and gives running jobs up to
//! `worker.shutdown_timeout` to finish; a job cut off then is still leased in
//! Redis and is re-run elsewhere after the heartbeat timeout.
//!
//! - [`send_message`]: validate, store the document, hand its push on.
//! - [`push`]: deliver one event, classifying failures for the retry decision.

pub mod push;
pub mod send_message;

use std::{future::Future, sync::Arc};

use std::time::Duration;

use apalis::prelude::{BackendExt, Monitor, ParallelizeExt, WorkerBuilder, WorkerBuilderExt};
use herald_jobs::QueueName;
use tracing::info;

use crate::{
    config::Settings,
    push::{delivery::DeliveryLog, TuisongbaoClient},
    queue::{self, QueueError},
    store::{self, MessageBatcher, MessageStore, StoreError},
};

/// Why the worker could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// Redis is unusable.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// MongoDB is unusable.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The HTTP client for the push provider could not be built.
    #[error("cannot build the push client: {0}")]
    PushClient(#[from] reqwest::Error),
    /// apalis reported a worker failure.
    #[error("worker failed: {0}")]
    Monitor(String),
    /// The operations listener (`worker.ops_bind`) could not start.
    #[error(transparent)]
    Ops(#[from] crate::ops::OpsBindError),
    /// Sentinel named a new Redis master; the worker drained its jobs and
    /// stopped so that its supervisor restarts it on the new master.
    #[error("{0}; stopped to reconnect (restart the worker)")]
    MasterMoved(String),
}

/// How long a stopping worker waits for its last delivery receipts to
/// reach Redis once its jobs have drained. Short: the drain itself already
/// waited up to `worker.shutdown_timeout` for Redis, and the supervisor's
/// stop timeout must cover both (README: "Running under a supervisor").
const RECEIPT_FLUSH_PATIENCE: Duration = Duration::from_secs(5);

/// A name unique to this worker process and queue: host, pid and a random
/// suffix. apalis-redis leases jobs to a worker by name, so a restarted
/// process must not reuse its predecessor's name (its leases would never be
/// seen as orphaned).
fn worker_name(queue: QueueName) -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "herald".to_owned());
    let random = mongodb::bson::oid::ObjectId::new().to_hex();
    format!(
        "{host}-{}-{}-{}",
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

/// Runs the worker until `shutdown` completes, then drains running jobs.
pub async fn run<F>(settings: Settings, shutdown: F) -> Result<(), WorkerError>
where
    F: Future<Output = ()> + Send + 'static,
{
    let redis = queue::connect(&settings).await?;
    let database = store::connect(&settings.mongodb).await?;
    let messages = MessageStore::new(&database);
    crate::export::status::ExportStatusStore::new(&database)
        .ensure_indexes()
        .await?;
    messages.ensure_indexes().await?;
    let metrics = crate::ops::Metrics::new();
    let pusher = TuisongbaoClient::new(&settings.tuisongbao)?.with_metrics(metrics.clone());
    let (stop_ops, ops_stopped) = tokio::sync::oneshot::channel::<()>();
    let ops_task = match settings.worker.ops_bind {
        Some(addr) => {
            let state = crate::ops::OpsState::new(
                metrics.clone(),
                redis.clone(),
                &settings,
                Some(database.clone()),
            );
            let (bound, task) = crate::ops::spawn(addr, state, async move {
                let _ = ops_stopped.await;
            })
            .await?;
            info!(address = %bound, "operations endpoints listening (/healthz, /readyz, /metrics)");
            Some(task)
        }
        None => None,
    };

    // One push queue handle for the push worker, the hand-offs of
    // send_message and the exports' events: an enqueue through any of them
    // wakes the push worker at once (see `queue::doorbell`).
    let push_storage = queue::storage::<queue::RawArgs>(redis.clone(), &settings, QueueName::Push);
    let send_deps = Arc::new(send_message::Deps {
        store: MessageBatcher::spawn(&database),
        limits: settings.message,
        queue: settings.redis.namespace.queue(QueueName::SendMessage),
    });
    let push_deps = Arc::new(push::Deps {
        pusher: pusher.clone(),
        delivered: DeliveryLog::new(
            redis.clone(),
            &queue::QueueConfig::from_settings(&settings, QueueName::Push),
            settings.worker.push_dedup_ttl,
        ),
        queue: settings.redis.namespace.queue(QueueName::Push),
    });

    let receipts = push_deps.delivered.clone();

    let export_deps = Arc::new(crate::export::Deps {
        database: database.clone(),
        storage: crate::export::storage::LocalDirStorage::new(&settings.export.dir),
        status: crate::export::status::ExportStatusStore::new(&database),
        push_queue: push_storage.for_args(),
        pusher: pusher.clone(),
        settings: settings.export.clone(),
        queue: settings.redis.namespace.queue(QueueName::Export),
        max_attempts: settings.worker.export_max_attempts,
        metrics: metrics.clone(),
    });
    let export_storage =
        queue::storage::<serde_json::Value>(redis.clone(), &settings, QueueName::Export);
    let export_concurrency = settings.worker.export_concurrency;

    // A stored message's push is enqueued by its job's acknowledgement.
    let send_storage =
        queue::storage::<queue::RawArgs>(redis.clone(), &settings, QueueName::SendMessage)
            .handing_off_to(&push_storage);
    // An idle worker fetches again only when woken: on this interval, so a
    // job another process enqueues waits at most this long to be picked up,
    // or at once when this process enqueued it (the queue's doorbell).
    let poll_interval = settings.worker.poll_interval;
    let send_concurrency = settings.worker.concurrency;
    let push_concurrency = settings.worker.push_concurrency;
    let grace = settings.worker.shutdown_timeout;
    let (send_metrics, push_metrics, export_metrics) = (metrics.clone(), metrics.clone(), metrics);

    info!(
        namespace = %settings.redis.namespace,
        concurrency = send_concurrency,
        push_concurrency,
        "worker starting"
    );

    let monitor = Monitor::new()
        .register(move |_restarts| {
            WorkerBuilder::new(worker_name(QueueName::SendMessage))
                .backend(send_storage.clone().poll_with_interval(poll_interval))
                .data(send_deps.clone())
                .concurrency(send_concurrency)
                .layer(crate::ops::JobMetricsLayer::new(
                    send_metrics.clone(),
                    QueueName::SendMessage.as_str(),
                ))
                .parallelize(tokio::spawn)
                .build(send_message::handle)
        })
        .register(move |_restarts| {
            WorkerBuilder::new(worker_name(QueueName::Push))
                .backend(push_storage.clone().poll_with_interval(poll_interval))
                .data(push_deps.clone())
                .concurrency(push_concurrency)
                .layer(crate::ops::JobMetricsLayer::new(
                    push_metrics.clone(),
                    QueueName::Push.as_str(),
                ))
                .parallelize(tokio::spawn)
                .build(push::handle)
        })
        .register(move |_restarts| {
            WorkerBuilder::new(worker_name(QueueName::Export))
                .backend(export_storage.clone().poll_with_interval(poll_interval))
                .data(export_deps.clone())
                .concurrency(export_concurrency)
                .layer(crate::ops::JobMetricsLayer::new(
                    export_metrics.clone(),
                    QueueName::Export.as_str(),
                ))
                .parallelize(tokio::spawn)
                .build(
                    crate::export::handle::<
                        crate::export::storage::LocalDirStorage,
                        TuisongbaoClient,
                    >,
                )
        })
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
        .with_terminator(async move { tokio::time::sleep(grace).await });

    let failover = crate::queue::failover::master_changed(
        settings.redis.url.clone(),
        settings.worker.heartbeat_interval,
    );
    let (moved_tx, mut moved_rx) = tokio::sync::oneshot::channel::<String>();
    let signal = async move {
        tokio::select! {
            _ = shutdown => info!(
                grace_secs = grace.as_secs(),
                "shutdown requested: no new jobs, finishing running ones"
            ),
            moved = failover => {
                tracing::error!(reason = %moved, "Redis failover: no new jobs, finishing running ones, then exiting");
                let _ = moved_tx.send(moved);
            }
        }
        Ok(())
    };
    let outcome = monitor.run_with_signal(signal).await;
    // Receipts of the last deliveries may still be on their way to Redis.
    receipts.flush(RECEIPT_FLUSH_PATIENCE).await;
    // The probes answer until the jobs are drained, then stop with the worker.
    let _ = stop_ops.send(());
    if let Some(task) = ops_task {
        let _ = task.await;
    }
    store::close(&database).await;
    outcome.map_err(|e| WorkerError::Monitor(e.to_string()))?;
    if let Ok(moved) = moved_rx.try_recv() {
        return Err(WorkerError::MasterMoved(moved));
    }
    info!("worker stopped");
    Ok(())
}
