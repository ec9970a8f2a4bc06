//! [`RedisQueue`]: the apalis backend over Herald's queue scripts.

use std::{
    marker::PhantomData,
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
};

use apalis_core::{
    backend::{finalize::Ephemeral, future::BoxSyncFuture, Backend, BackendConfig},
    task::Task,
    worker::context::WorkerContext,
};
use futures::{FutureExt, Sink};
use herald_jobs::RedisConnection;
use serde::{de::DeserializeOwned, Serialize};

use super::{
    ack::AckLayer, decode::decode, driver::WorkerDriver, persistence::QueuePersistence,
    QueueConfig, QueueError,
};

/// A Redis-backed apalis backend for jobs of type `Args` (JSON on the wire).
///
/// Give it to `WorkerBuilder::backend` to consume the queue (its
/// [`WorkerDriver`] fetches ahead and acknowledges behind the jobs), or
/// use it as a `TaskSink` to enqueue. Clones share the connection; each
/// clone used as a worker backend keeps its own fetch state.
///
/// The backend decodes each payload itself ([`super::decode`]): a job
/// whose bytes are not an `Args` never reaches apalis (where a decoding
/// error would stop the worker's fetch loop); it is recorded dead with the
/// reason, and the jobs leased beside it run.
pub struct RedisQueue<Args> {
    driver: WorkerDriver,
    sink: Enqueuer,
    deregister: Option<BoxSyncFuture<Result<(), QueueError>>>,
    _args: PhantomData<fn() -> Args>,
}

impl<Args> std::fmt::Debug for RedisQueue<Args> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue")
            .field("queue", &self.persistence().config.name)
            .finish()
    }
}

impl<Args> Clone for RedisQueue<Args> {
    fn clone(&self) -> Self {
        Self::with_persistence(self.persistence().clone())
    }
}

impl<Args> RedisQueue<Args> {
    /// A queue on `conn` configured by `config`.
    pub fn new(conn: RedisConnection, config: QueueConfig) -> Self {
        Self::with_persistence(QueuePersistence {
            conn,
            config: Arc::new(config),
            doorbell: super::Doorbell::default(),
            downstream: None,
            wake_url: None,
        })
    }

    fn with_persistence(persistence: QueuePersistence) -> Self {
        Self {
            driver: WorkerDriver::new(persistence.clone()),
            sink: Enqueuer::new(persistence),
            deregister: None,
            _args: PhantomData,
        }
    }

    fn persistence(&self) -> &QueuePersistence {
        self.driver.persistence()
    }

    /// This queue with `downstream` as the queue its jobs hand their
    /// successors to: a job that returns a [`super::Handoff`] has those
    /// jobs enqueued there by its acknowledgement, before it is recorded
    /// done, and `downstream`'s worker in this process is woken. Without
    /// it, a job that hands off fails.
    pub fn handing_off_to<D>(self, downstream: &RedisQueue<D>) -> Self {
        let mut persistence = self.persistence().clone();
        let downstream = downstream.persistence();
        persistence.downstream = Some((downstream.config.clone(), downstream.doorbell.clone()));
        Self::with_persistence(persistence)
    }

    /// This queue with its idle workers waiting on the queue's wake list
    /// over a connection of their own to `redis_url` (the URL `conn` was
    /// opened from), so a job enqueued by any process starts at once.
    /// Without it an idle worker looks again every
    /// [`QueueConfig::idle_wait`], or when this process enqueues.
    pub fn waking_on(self, redis_url: &str) -> Self {
        let mut persistence = self.persistence().clone();
        persistence.wake_url = Some(Arc::from(redis_url));
        Self::with_persistence(persistence)
    }

    /// A handle on the same queue for jobs of type `T` (same connection,
    /// configuration and doorbell), e.g. to enqueue typed jobs onto the
    /// queue a worker consumes as JSON.
    pub fn for_args<T>(&self) -> RedisQueue<T> {
        RedisQueue::with_persistence(self.persistence().clone())
    }

    /// The queue's configuration.
    pub fn queue_config(&self) -> &QueueConfig {
        &self.persistence().config
    }

    /// Hands back the jobs of workers that stopped heart-beating. Workers do
    /// this on every heartbeat; operators and tests can call it directly.
    pub async fn recover_orphans(&mut self) -> Result<u64, QueueError> {
        let mut persistence = self.persistence().clone();
        persistence.recover_orphans("").await
    }
}

impl<Args: DeserializeOwned> Backend for RedisQueue<Args> {
    type Task = Task<Args>;
    type Error = QueueError;

    fn poll_ready(
        &mut self,
        cx: &mut Context<'_>,
        worker: &WorkerContext,
    ) -> Poll<Result<(), Self::Error>> {
        self.driver.poll_ready(cx, worker)
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        worker: &WorkerContext,
    ) -> Poll<Option<Result<Self::Task, Self::Error>>> {
        // An enqueue from this process rings this worker awake.
        self.persistence().doorbell.register(cx.waker());
        loop {
            let task = match ready!(self.driver.poll_next(cx, worker)) {
                Some(Ok(task)) => task,
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => return Poll::Ready(None),
            };
            let limit = self.persistence().config.max_payload_bytes;
            match decode::<Args>(&task.args, limit) {
                Ok(args) => return Poll::Ready(Some(Ok(task.map_args(|_| args)))),
                Err(reason) => self.driver.reject(task, reason),
            }
        }
    }

    fn poll_close(
        &mut self,
        cx: &mut Context<'_>,
        worker: &WorkerContext,
    ) -> Poll<Result<(), Self::Error>> {
        if self.deregister.is_none() {
            // Give back unstarted jobs and record finished ones first.
            ready!(self.driver.poll_close(cx, worker))?;
            let mut conn = self.persistence().conn.clone();
            let config = self.persistence().config.clone();
            let name = worker.name().to_owned();
            self.deregister = Some(
                async move {
                    redis::pipe()
                        .zrem(config.workers_key(), &name)
                        .del(config.worker_meta_key(&name))
                        .query_async::<()>(&mut conn)
                        .await
                        .map_err(|source| QueueError::Command {
                            operation: "deregister worker",
                            queue: config.name.clone(),
                            source,
                        })
                }
                .boxed()
                .into(),
            );
        }
        match self.deregister.as_mut() {
            Some(fut) => fut.poll_unpin(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl<Args: DeserializeOwned> BackendConfig for RedisQueue<Args> {
    type Args = Args;
    type Id = ulid::Ulid;
    // Decoded here, not by apalis (see the type's docs).
    type Kind = Ephemeral;
    type Config = QueueConfig;
    type Layer = AckLayer;

    fn config(&self) -> &Self::Config {
        &self.persistence().config
    }

    fn middleware(&mut self, _worker: &mut WorkerContext) -> Self::Layer {
        // Leases are taken by the fetch script itself, so no per-job lock
        // round trip; finished jobs are acknowledged in batches.
        self.driver.ack_layer()
    }
}

impl<Args: Serialize> Sink<Task<Args>> for RedisQueue<Args> {
    type Error = QueueError;

    fn poll_ready(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn start_send(self: Pin<&mut Self>, item: Task<Args>) -> Result<(), Self::Error> {
        let this = self.get_mut();
        let payload = serde_json::to_vec(&item.args).map_err(|source| QueueError::Encode {
            queue: this.persistence().config.name.clone(),
            source,
        })?;
        this.sink.buffered.push(item.map_args(|_| payload));
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.get_mut().sink.poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.get_mut().sink.poll_flush(cx)
    }
}

/// The enqueue side: jobs sent to the sink wait here until a flush
/// enqueues them all with one script call per [`super::PUSH_CHUNK`].
struct Enqueuer {
    persistence: QueuePersistence,
    buffered: Vec<Task<Vec<u8>>>,
    flush: Option<BoxSyncFuture<Result<(), QueueError>>>,
}

impl Enqueuer {
    fn new(persistence: QueuePersistence) -> Self {
        Self {
            persistence,
            buffered: Vec::new(),
            flush: None,
        }
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), QueueError>> {
        loop {
            if let Some(fut) = &mut self.flush {
                ready!(fut.poll_unpin(cx))?;
                self.flush = None;
            }
            if self.buffered.is_empty() {
                return Poll::Ready(Ok(()));
            }
            let mut persistence = self.persistence.clone();
            let jobs = std::mem::take(&mut self.buffered);
            self.flush = Some(
                async move { persistence.push_tasks(jobs).await }
                    .boxed()
                    .into(),
            );
        }
    }
}
