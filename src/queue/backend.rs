//! [`RedisQueue`]: the apalis backend over Herald's queue scripts.

use std::{
    marker::PhantomData,
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
};

use apalis_codec::json::JsonCodec;
use apalis_core::{
    backend::{
        finalize::Durable,
        future::BoxSyncFuture,
        persistence::{Persisted, TaskPersistLayer},
        Backend, BackendConfig, WireFormatBackend,
    },
    task::Task,
    worker::context::WorkerContext,
};
use futures::{FutureExt, Sink};
use redis::aio::ConnectionManager;
use serde_json::Value;

use super::{persistence::QueuePersistence, QueueConfig, QueueError};

/// A Redis-backed apalis backend for jobs of type `Args` (JSON on the wire).
///
/// Give it to `WorkerBuilder::backend` to consume the queue, or use it as a
/// `TaskSink` to enqueue. Clones share the connection; each clone used as a
/// worker backend keeps its own fetch state.
pub struct RedisQueue<Args> {
    persist: Persisted<QueuePersistence>,
    codec: JsonCodec<Vec<u8>>,
    deregister: Option<BoxSyncFuture<Result<(), QueueError>>>,
    _args: PhantomData<fn() -> Args>,
}

impl<Args> std::fmt::Debug for RedisQueue<Args> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue")
            .field("queue", &self.persist.config.name)
            .finish()
    }
}

impl<Args> Clone for RedisQueue<Args> {
    fn clone(&self) -> Self {
        Self {
            persist: self.persist.clone(),
            codec: self.codec.clone(),
            deregister: None,
            _args: PhantomData,
        }
    }
}

impl<Args> RedisQueue<Args> {
    /// A queue on `conn` configured by `config`.
    pub fn new(conn: ConnectionManager, config: QueueConfig) -> Self {
        Self {
            persist: Persisted::new(QueuePersistence {
                conn,
                config: Arc::new(config),
                doorbell: super::Doorbell::default(),
                downstream: None,
            }),
            codec: JsonCodec::default(),
            deregister: None,
            _args: PhantomData,
        }
    }

    /// This queue with `downstream` as the queue its jobs hand their
    /// successors to: a job that returns a [`super::Handoff`] has those
    /// jobs enqueued there by its acknowledgement, before it is recorded
    /// done, and `downstream`'s worker in this process is woken. Without
    /// it, a job that hands off fails.
    pub fn handing_off_to<D>(self, downstream: &RedisQueue<D>) -> Self {
        let mut persistence = (*self.persist).clone();
        persistence.downstream = Some((
            downstream.persist.config.clone(),
            downstream.persist.doorbell.clone(),
        ));
        Self {
            persist: Persisted::new(persistence),
            codec: self.codec,
            deregister: None,
            _args: PhantomData,
        }
    }

    /// A handle on the same queue for jobs of type `T` (same connection,
    /// configuration and doorbell), e.g. to enqueue typed jobs onto the
    /// queue a worker consumes as JSON.
    pub fn for_args<T>(&self) -> RedisQueue<T> {
        RedisQueue {
            persist: self.persist.clone(),
            codec: self.codec.clone(),
            deregister: None,
            _args: PhantomData,
        }
    }

    /// The queue's configuration.
    pub fn queue_config(&self) -> &QueueConfig {
        &self.persist.config
    }

    /// Hands back the jobs of workers that stopped heart-beating. Workers do
    /// this on every heartbeat; operators and tests can call it directly.
    pub async fn recover_orphans(&mut self) -> Result<u64, QueueError> {
        let mut persistence = (*self.persist).clone();
        persistence.recover_orphans("").await
    }
}

impl<Args> Backend for RedisQueue<Args> {
    type Task = Task<Vec<u8>>;
    type Error = QueueError;

    fn poll_ready(
        &mut self,
        cx: &mut Context<'_>,
        worker: &WorkerContext,
    ) -> Poll<Result<(), Self::Error>> {
        let interval = self.persist.config.heartbeat_interval;
        self.persist.poll_ready(cx, worker, interval)
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        worker: &WorkerContext,
    ) -> Poll<Option<Result<Self::Task, Self::Error>>> {
        // An enqueue from this process rings this worker awake.
        self.persist.doorbell.register(cx.waker());
        self.persist.poll_next(cx, worker)
    }

    fn poll_close(
        &mut self,
        cx: &mut Context<'_>,
        worker: &WorkerContext,
    ) -> Poll<Result<(), Self::Error>> {
        if self.deregister.is_none() {
            // Give back unstarted jobs and flush acknowledgements first.
            ready!(self.persist.poll_close(cx, worker))?;
            let mut conn = self.persist.conn.clone();
            let config = self.persist.config.clone();
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

impl<Args> BackendConfig for RedisQueue<Args> {
    type Args = Args;
    type Id = ulid::Ulid;
    type Kind = Durable;
    type Config = QueueConfig;
    type Layer = TaskPersistLayer<JsonCodec<Value>, Value>;

    fn config(&self) -> &Self::Config {
        &self.persist.config
    }

    fn middleware(&mut self, _worker: &mut WorkerContext) -> Self::Layer {
        // Leases are taken by the fetch script itself, so no per-job lock
        // round trip; results are acknowledged in batches.
        self.persist
            .layer(
                JsonCodec::<Value>::default(),
                self.persist.config.batch_size,
            )
            .persist_results(true)
            .lock_tasks(false)
    }
}

impl<Args> WireFormatBackend for RedisQueue<Args> {
    type Codec = JsonCodec<Vec<u8>>;
    type Compact = Vec<u8>;

    fn codec(&self) -> &Self::Codec {
        &self.codec
    }
}

impl<Args> Sink<Task<Vec<u8>>> for RedisQueue<Args> {
    type Error = QueueError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Sink::poll_ready(Pin::new(&mut self.get_mut().persist), cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Task<Vec<u8>>) -> Result<(), Self::Error> {
        Sink::start_send(Pin::new(&mut self.get_mut().persist), item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Sink::poll_flush(Pin::new(&mut self.get_mut().persist), cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Sink::poll_close(Pin::new(&mut self.get_mut().persist), cx)
    }
}
