//! Enqueueing jobs from a Rust program.
//!
//! [`Producer`] validates a job with the same rules the worker applies, then
//! hands it to apalis-redis.
//!
//! A producer that retries an enqueue after a network hiccup may put the
//! same message (the same `messageId`) on the queue twice. That is safe:
//! the worker stores a message once by its `_id` and pushes its event once
//! (the push queue's idempotency key `new_message:<messageId>`, kept for
//! the re-run window), so the second job finds both done and does nothing
//! new. Nothing is kept in Redis per message for this, which is what keeps
//! Redis's memory bounded under millions of messages a day.
//! [`Producer::with_enqueue_dedup`] adds an enqueue idempotency key per
//! message (`message:<messageId>`, about 180 bytes of Redis each for its
//! lifetime) for producers that would rather not create the second job.

use std::time::Duration;

use apalis::prelude::{TaskBuilder, TaskSink};
use apalis_redis::{Config, ConnectionManager, RedisStorage};

use crate::{
    error::ValidationError,
    export::{Export, ExportLimits},
    ids::MessageId,
    message::{MessageLimits, SendMessage},
    queue::{Namespace, QueueName},
    redact::redact_url,
    task_order::next_task_id,
};

/// A lifetime for [`Producer::with_enqueue_dedup`]: a day.
pub const DEFAULT_ENQUEUE_DEDUP_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// Why a job could not be enqueued.
#[derive(Debug, thiserror::Error)]
pub enum ProducerError {
    /// The job failed validation; nothing was enqueued.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// One job of a bulk enqueue failed validation; nothing was enqueued.
    #[error("job {index} of the batch: {error}")]
    InvalidInBatch {
        /// Position of the job in the batch, from 0.
        index: usize,
        /// What is wrong with it.
        error: ValidationError,
    },
    /// Redis could not be reached or refused the connection.
    #[error("cannot connect to Redis at {url}: {source}")]
    Connect {
        /// The URL tried, without credentials.
        url: String,
        /// The driver's error.
        #[source]
        source: apalis_redis::RedisError,
    },
    /// Redis accepted the connection but the enqueue failed.
    #[error("enqueueing into {queue} failed: {reason}")]
    Enqueue {
        /// Full name of the queue.
        queue: String,
        /// What apalis-redis reported.
        reason: String,
    },
}

impl ProducerError {
    fn enqueue(queue: &str, error: impl std::fmt::Display) -> Self {
        Self::Enqueue {
            queue: queue.to_owned(),
            reason: error.to_string(),
        }
    }
}

/// A client that puts Herald jobs on their queues.
#[derive(Debug, Clone)]
pub struct Producer {
    messages: RedisStorage<SendMessage>,
    exports: RedisStorage<Export>,
    conn: ConnectionManager,
    queue: String,
    export_queue: String,
    limits: MessageLimits,
    /// Whether message jobs carry an enqueue idempotency key.
    dedup: bool,
}

impl Producer {
    /// Connects to Redis at `redis_url` (any `redis` crate URL, or
    /// `redis+sentinel://`, see [`crate::redis_url`]) and targets the queues
    /// of `namespace`.
    pub async fn connect(redis_url: &str, namespace: &Namespace) -> Result<Self, ProducerError> {
        // Also resolves `redis+sentinel://` URLs to the current master.
        let conn = crate::redis_url::connection_manager(redis_url, None)
            .await
            .map_err(|source| ProducerError::Connect {
                url: redact_url(redis_url),
                source,
            })?;
        Ok(Self::from_connection(conn, namespace))
    }

    /// Uses an existing connection manager (shared with the rest of an app).
    pub fn from_connection(conn: ConnectionManager, namespace: &Namespace) -> Self {
        let queue = namespace.queue(QueueName::SendMessage);
        let export_queue = namespace.queue(QueueName::Export);
        Self {
            messages: RedisStorage::new(conn.clone()).with_config(Config::default().queue(&queue)),
            exports: RedisStorage::new(conn.clone())
                .with_config(Config::default().queue(&export_queue)),
            conn,
            queue,
            export_queue,
            limits: MessageLimits::default(),
            dedup: false,
        }
    }

    /// Enqueues each message under the idempotency key `message:<messageId>`,
    /// remembered `ttl`: an enqueue of a message id already enqueued within
    /// that time adds no job. Costs about 180 bytes of Redis per message
    /// for `ttl` (see the module docs for why it is off by default).
    pub fn with_enqueue_dedup(mut self, ttl: Duration) -> Self {
        let config = Config::default()
            .queue(&self.queue)
            .idempotency_ttl(Some(ttl));
        self.messages = RedisStorage::new(self.conn.clone()).with_config(config);
        self.dedup = true;
        self
    }

    /// The task for message `id`, with its idempotency key when enqueue
    /// deduplication is on.
    fn message_task(&self, job: SendMessage, id: MessageId) -> apalis::prelude::Task<SendMessage> {
        let builder = TaskBuilder::new(job).task_id(next_task_id());
        if self.dedup {
            builder.idempotency_key(format!("message:{id}")).build()
        } else {
            builder.build()
        }
    }

    /// Applies the same limits the worker is configured with, so a job the
    /// worker would refuse is refused here, before it is enqueued.
    pub fn with_limits(mut self, limits: MessageLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Validates `job` and enqueues it. Returns the message id, which is the
    /// `_id` the document will have in MongoDB.
    pub async fn enqueue_message(&mut self, job: SendMessage) -> Result<MessageId, ProducerError> {
        let valid = job.validate(&self.limits)?;
        let task = self.message_task(job, valid.id);
        self.messages
            .push_task(task)
            .await
            .map_err(|e| ProducerError::enqueue(&self.queue, e))?;
        Ok(valid.id)
    }
}

impl Producer {
    /// Validates `job` (all but the collection allow-list, which is the
    /// worker's: an export of a collection it does not allow fails with
    /// `export_failed`) and enqueues it. Returns the export key.
    pub async fn enqueue_export(&mut self, job: Export) -> Result<String, ProducerError> {
        let limits = ExportLimits {
            collections: [job.collection.clone()].into_iter().collect(),
            default_time_zone: chrono_tz::UTC,
        };
        let valid = job.validate(&limits)?;
        let task = TaskBuilder::new(job).task_id(next_task_id()).build();
        self.exports
            .push_task(task)
            .await
            .map_err(|e| ProducerError::enqueue(&self.export_queue, e))?;
        Ok(valid.key)
    }
}

/// Jobs sent to Redis per round trip by [`Producer::enqueue_messages`].
pub const BULK_CHUNK: usize = 1_000;

impl Producer {
    /// Validates every job, then enqueues them all in chunks of
    /// [`BULK_CHUNK`] (one round trip each) — the way to broadcast to many
    /// users. If any job is invalid, nothing is enqueued. Returns the
    /// message ids in the order of `jobs`.
    pub async fn enqueue_messages(
        &mut self,
        jobs: Vec<SendMessage>,
    ) -> Result<Vec<MessageId>, ProducerError> {
        let mut ids = Vec::with_capacity(jobs.len());
        for (index, job) in jobs.iter().enumerate() {
            let valid = job
                .validate(&self.limits)
                .map_err(|error| ProducerError::InvalidInBatch { index, error })?;
            ids.push(valid.id);
        }
        let mut jobs = jobs.into_iter().zip(&ids);
        loop {
            let chunk: Vec<_> = jobs
                .by_ref()
                .take(BULK_CHUNK)
                .map(|(job, id)| self.message_task(job, *id))
                .collect();
            if chunk.is_empty() {
                break;
            }
            self.messages
                .push_all(futures::stream::iter(chunk))
                .await
                .map_err(|e| ProducerError::enqueue(&self.queue, e))?;
        }
        Ok(ids)
    }
}
