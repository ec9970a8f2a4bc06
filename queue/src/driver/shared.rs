//! [`Shared`]: what the driver's parts borrow from it during one poll.

use std::{collections::HashSet, future::Future};

use apalis_core::{backend::future::BoxSyncFuture, worker::context::WorkerContext};
use futures::FutureExt;

use crate::{persistence::QueuePersistence, redis_retry::RedisHealth, QueueConfig, QueueError};

/// The queue, the worker, and the state the driver's parts have in common,
/// borrowed for one poll.
pub(super) struct Shared<'a> {
    /// The queue's connection and configuration.
    pub persistence: &'a QueuePersistence,
    /// The worker being driven.
    pub worker: &'a WorkerContext,
    /// Whether Redis answers, for the logs.
    pub health: &'a mut RedisHealth,
    /// Ids leased to this worker and not yet acknowledged (leased, running
    /// or finished): what [`QueuePersistence::reconcile`] must not hand
    /// back. Fetches add to it, acknowledgements and releases take away.
    pub held: &'a mut HashSet<String>,
}

impl Shared<'_> {
    /// The queue's configuration.
    pub fn config(&self) -> &QueueConfig {
        &self.persistence.config
    }

    /// The queue's name, for the logs.
    pub fn queue(&self) -> &str {
        &self.persistence.config.name
    }

    /// Jobs leased per fetch (at least one).
    pub fn batch_size(&self) -> usize {
        self.persistence.config.batch_size.max(1)
    }

    /// Records that `operation` failed with `error`.
    pub fn failed(&mut self, operation: &'static str, error: &QueueError) {
        self.health.failed(
            &self.persistence.config.name,
            self.worker.name(),
            operation,
            error,
        );
    }

    /// Records that a call succeeded.
    pub fn answered(&mut self) {
        self.health
            .answered(&self.persistence.config.name, self.worker.name());
    }

    /// Starts `call` with its own clones of the persistence and the worker,
    /// so the future outlives this poll.
    pub fn start<T, F, Fut>(&self, call: F) -> BoxSyncFuture<T>
    where
        F: FnOnce(QueuePersistence, WorkerContext) -> Fut,
        Fut: Future<Output = T> + Send + 'static,
    {
        call(self.persistence.clone(), self.worker.clone())
            .boxed()
            .into()
    }
}
