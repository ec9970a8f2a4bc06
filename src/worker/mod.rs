//! The worker process: apalis workers for each queue, and their shutdown.
//!
//! Two steps, so that a caller (the CLI, a test) can tell "could not
//! start" from "stopped": [`Worker::build`] connects to Redis, MongoDB and
//! the push provider, creates the indexes, starts the operations listener
//! and builds one apalis worker per queue and shard ([`monitor`]);
//! [`Worker::run_until_stopped`] runs them until the shutdown future
//! completes. Shutdown stops fetching at once and gives running jobs up to
//! `worker.shutdown_timeout` to finish; a job cut off then is still leased in
//! Redis and is re-run elsewhere after the heartbeat timeout.
//!
//! - [`send_message`]: validate, store the document, hand its push on.
//! - [`push`]: deliver one event, classifying failures for the retry decision.
//! - [`monitor`]: the apalis workers (one per queue and shard) and their
//!   restart policy; [`shared_permits`]: one concurrency for a queue's
//!   shards.
//!
//! The worker also removes expired messages ([`crate::store::expiry`]) and,
//! with `export.keep_days` set, old exports ([`crate::export::retention`]),
//! one worker at a time ([`periodic`]).

pub mod monitor;
pub mod periodic;
pub mod push;
pub mod send_message;
pub mod shared_permits;

use std::{future::Future, sync::Arc, time::Duration};

use apalis::prelude::Monitor;
use herald_jobs::QueueName;
use mongodb::Database;
use tokio::{sync::oneshot, task::JoinHandle};
use tracing::info;

use crate::{
    config::Settings,
    push::{delivery::DeliveryLog, rate_limit::RateLimiter, Provider},
    queue::{self, QueueError},
    queues,
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
    /// The configured shard count cannot be taken (see [`crate::queues::shards`]).
    #[error(transparent)]
    Shards(#[from] crate::queues::shards::ShardCountError),
    /// apalis reported a worker failure.
    #[error("worker failed: {0}")]
    Monitor(String),
    /// The operations listener (`worker.ops_bind`) could not start.
    #[error(transparent)]
    Ops(#[from] crate::ops::OpsBindError),
    /// The export storage (`export.storage`) cannot be set up.
    #[error(transparent)]
    Storage(#[from] crate::export::storage::StorageError),
    /// Sentinel named a new Redis master; the worker drained its jobs and
    /// stopped so that its supervisor restarts it on the new master.
    #[error("{0}; stopped to reconnect (restart the worker)")]
    MasterMoved(String),
}

/// How long a stopping worker waits for its last delivery receipts to
/// reach Redis once its jobs have drained. Short: the drain itself already
/// waited up to `worker.shutdown_timeout` for Redis, and the supervisor's
/// stop timeout must cover both (docs/operations.md: "Running under a supervisor").
const RECEIPT_FLUSH_PATIENCE: Duration = Duration::from_secs(5);

/// A worker process, built and ready to run.
pub struct Worker {
    monitor: Monitor,
    /// How long running jobs get once shutdown is asked for.
    grace: Duration,
    /// Watched for a Sentinel failover.
    redis_url: String,
    heartbeat_interval: Duration,
    /// Flushed once the jobs have drained (one per push shard).
    receipts: Vec<DeliveryLog>,
    /// The operations listener, stopped after the drain.
    ops: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
    /// The export retention task (`export.keep_days`) and the message
    /// expiry task, stopped after the drain.
    sweeps: Vec<JoinHandle<()>>,
    /// Moves jobs written in the earlier key layout (`queue::legacy`).
    legacy_watch: JoinHandle<()>,
    database: Database,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("grace", &self.grace)
            .finish_non_exhaustive()
    }
}

/// Runs the worker until `shutdown` completes, then drains running jobs:
/// [`Worker::build`] then [`Worker::run_until_stopped`].
pub async fn run<F>(settings: Settings, shutdown: F) -> Result<(), WorkerError>
where
    F: Future<Output = ()> + Send + 'static,
{
    Worker::build(settings)
        .await?
        .run_until_stopped(shutdown)
        .await
}

impl Worker {
    /// Connects to every service, prepares the database and builds the
    /// queues' workers; nothing is fetched until
    /// [`Worker::run_until_stopped`].
    pub async fn build(settings: Settings) -> Result<Self, WorkerError> {
        let redis = queue::connect(settings.redis.url.as_str()).await?;
        // Keys of an earlier release move to the hash-tagged layout before
        // any job is taken.
        queue::legacy::adopt_legacy_keys(&mut redis.clone(), &settings.redis.namespace).await?;
        // Producers pick a shard of the count written here; a count that
        // would leave jobs on shards no worker consumes is refused.
        crate::queues::shards::claim(&mut redis.clone(), &settings).await?;
        let database = store::connect(&settings.mongodb).await?;
        let messages = MessageStore::new(&database);
        let export_status = crate::export::status::ExportStatusStore::new(&database);
        export_status.ensure_indexes().await?;
        let adopted = export_status.adopt_unscoped().await?;
        if adopted > 0 {
            info!(
                records = adopted,
                "export records moved to their account-scoped ids"
            );
        }
        messages.ensure_indexes().await?;
        let metrics = crate::ops::Metrics::new();
        // One limiter per process; its turns are shared through Redis with
        // every other worker on the namespace.
        let limiter = RateLimiter::new(
            redis.clone(),
            &settings.redis.namespace,
            settings.push.rate_limit,
        );
        let pusher = Provider::from_settings(&settings, Some(metrics.clone()), limiter.clone())?;
        let ops = match settings.worker.ops_bind {
            Some(addr) => {
                let state = crate::ops::OpsState::new(
                    metrics.clone(),
                    redis.clone(),
                    queues::admins(&redis, &settings),
                    &settings,
                    Some(database.clone()),
                );
                let (stop, stopped) = oneshot::channel::<()>();
                let (bound, task) = crate::ops::spawn(addr, "worker.ops_bind", state, async move {
                    let _ = stopped.await;
                })
                .await?;
                info!(address = %bound, "operations endpoints listening (/healthz, /readyz, /metrics)");
                Some((stop, task))
            }
            None => None,
        };

        let storage = crate::export::storage::ConfiguredStorage::from_settings(&settings.export)?;
        let mut sweeps = vec![spawn_message_expiry(&settings, &database, redis.clone())];
        if let Some(keep) = settings.export.keep {
            sweeps.push(spawn_export_retention(
                &settings,
                &database,
                storage.clone(),
                keep,
                redis.clone(),
            ));
        }
        let store = MessageBatcher::spawn_observed(&database, {
            let metrics = metrics.clone();
            Box::new(move |documents, elapsed| metrics.message_batch_stored(documents, elapsed))
        })
        .keeping(settings.message_retention.keep);
        let redis_url = settings.redis.url.as_str();
        let mut shards = Vec::new();
        let mut receipts = Vec::new();
        for shard in 0..settings.redis.queue_shards {
            let name = |queue| settings.redis.namespace.queue_shard(queue, shard);
            // One push queue handle per shard for its push worker, the
            // hand-offs of its send_message jobs and its exports' events:
            // an enqueue through any of them wakes the push worker at once
            // (see `queue::doorbell`). An account's jobs stay on one shard
            // index through every queue.
            let push_queue = queues::shard_storage::<queue::RawArgs>(
                redis.clone(),
                &settings,
                QueueName::Push,
                shard,
            )
            .waking_on(redis_url);
            let delivered = DeliveryLog::new(
                redis.clone(),
                push_queue.queue_config(),
                queues::rerun_window(&settings),
            );
            receipts.push(delivered.clone());
            let handlers = monitor::Handlers {
                send_message: Arc::new(send_message::Deps {
                    store: store.clone(),
                    limits: settings.message,
                    users: settings.push.user_channels.clone(),
                    queue: name(QueueName::SendMessage),
                }),
                push: Arc::new(push::Deps {
                    pusher: pusher.clone(),
                    delivered,
                    limiter: limiter.clone(),
                    queue: name(QueueName::Push),
                }),
                export: Arc::new(crate::export::Deps {
                    database: database.clone(),
                    storage: storage.clone(),
                    status: crate::export::status::ExportStatusStore::new(&database),
                    push_queue: push_queue.for_args(),
                    pusher: pusher.clone(),
                    settings: settings.export.clone(),
                    queue: name(QueueName::Export),
                    max_attempts: settings.queues.export.max_attempts,
                    metrics: metrics.clone(),
                    slots: crate::export::AccountSlots::new(
                        redis.clone(),
                        &settings.redis.namespace,
                        settings.export.max_running_per_account,
                    ),
                }),
            };
            let backends = monitor::Backends {
                // A stored message's push is enqueued by its job's
                // acknowledgement.
                send_message: queues::shard_storage(
                    redis.clone(),
                    &settings,
                    QueueName::SendMessage,
                    shard,
                )
                .waking_on(redis_url)
                .handing_off_to(&push_queue),
                // A finished export's `export_finish` is enqueued by its
                // job's acknowledgement.
                export: queues::shard_storage(redis.clone(), &settings, QueueName::Export, shard)
                    .waking_on(redis_url)
                    .handing_off_to(&push_queue),
                push: push_queue,
            };
            shards.push(monitor::Shard { backends, handlers });
        }
        let monitor = monitor::build(shards, &settings, metrics);
        info!(
            namespace = %settings.redis.namespace,
            concurrency = settings.queues.send_message.concurrency,
            queue_shards = settings.redis.queue_shards,
            push_concurrency = settings.queues.push.concurrency,
            export_concurrency = settings.queues.export.concurrency,
            max_requests_per_sec = settings
                .push
                .rate_limit
                .map_or(0, |limit| limit.max_requests_per_sec.get()),
            "worker starting"
        );
        Ok(Self {
            monitor,
            grace: settings.worker.shutdown_timeout,
            redis_url: settings.redis.url.clone(),
            heartbeat_interval: settings.worker.heartbeat_interval,
            receipts,
            ops,
            sweeps,
            legacy_watch: queue::legacy::spawn_watch(
                redis.clone(),
                settings.redis.namespace.clone(),
                settings.worker.heartbeat_interval,
            ),
            database,
        })
    }

    /// Runs the queues' workers until `shutdown` completes (or Sentinel
    /// names a new Redis master), then drains running jobs, flushes the
    /// last delivery receipts and closes the connections.
    pub async fn run_until_stopped<F>(self, shutdown: F) -> Result<(), WorkerError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let grace = self.grace;
        let shutdown = async move {
            shutdown.await;
            info!(
                grace_secs = grace.as_secs(),
                "shutdown requested: no new jobs, finishing running ones"
            );
        };
        let (stop, mut moved_rx) = crate::queue::failover::shutdown_or_failover(
            shutdown,
            self.redis_url,
            self.heartbeat_interval,
        );
        let signal = async move {
            stop.await;
            Ok(())
        };
        let outcome = self.monitor.run_with_signal(signal).await;
        // Receipts of the last deliveries may still be on their way to Redis.
        futures::future::join_all(
            self.receipts
                .iter()
                .map(|receipts| receipts.flush(RECEIPT_FLUSH_PATIENCE)),
        )
        .await;
        // The probes answer until the jobs are drained, then stop with the worker.
        if let Some((stop, task)) = self.ops {
            let _ = stop.send(());
            let _ = task.await;
        }
        for sweep in self.sweeps {
            sweep.abort();
        }
        self.legacy_watch.abort();
        store::close(&self.database).await;
        outcome.map_err(|e| WorkerError::Monitor(e.to_string()))?;
        if let Ok(moved) = moved_rx.try_recv() {
            return Err(WorkerError::MasterMoved(moved));
        }
        info!("worker stopped");
        Ok(())
    }
}

/// Removes expired messages every `message.expiry_sweep_secs`, one worker
/// at a time.
fn spawn_message_expiry(
    settings: &Settings,
    database: &Database,
    redis: herald_jobs::RedisConnection,
) -> JoinHandle<()> {
    let expiry = store::MessageExpiry::new(database);
    periodic::spawn_taking_turns(
        "message expiry",
        settings.message_retention.sweep_every,
        redis,
        store::expiry::turn_key(&settings.redis.namespace),
        move || {
            let expiry = expiry.clone();
            async move {
                match expiry.sweep(mongodb::bson::DateTime::now()).await {
                    Ok(0) => {}
                    Ok(removed) => info!(removed, "expired messages removed"),
                    Err(error) => {
                        tracing::warn!(%error, "message expiry stopped; the next sweep goes on")
                    }
                }
            }
        },
    )
}

/// Removes exports older than `keep` every hour, one worker at a time.
fn spawn_export_retention(
    settings: &Settings,
    database: &Database,
    storage: crate::export::storage::ConfiguredStorage,
    keep: Duration,
    redis: herald_jobs::RedisConnection,
) -> JoinHandle<()> {
    let status = crate::export::status::ExportStatusStore::new(database);
    periodic::spawn_taking_turns(
        "export retention",
        crate::export::retention::SWEEP_EVERY,
        redis,
        crate::export::retention::turn_key(&settings.redis.namespace),
        move || {
            let (status, storage) = (status.clone(), storage.clone());
            async move {
                match crate::export::retention::sweep(&status, &storage, keep).await {
                    Ok(removed) => info!(
                        removed,
                        keep_days = keep.as_secs() / 86_400,
                        "export retention swept"
                    ),
                    Err(error) => tracing::warn!(
                        %error,
                        "export retention stopped; the next sweep goes on"
                    ),
                }
            }
        },
    )
}
