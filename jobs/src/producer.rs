//! Enqueueing jobs from a Rust program.
//!
//! [`Producer`] validates a job with the same rules the worker applies, then
//! writes it with the queue's own enqueue script ([`crate::enqueue`]): a
//! job due now goes straight to the ready list, and an idle worker blocked
//! on the queue's wake list starts it at once.
//!
//! A producer that retries an enqueue after a network hiccup may put the
//! same message (the same `messageId`) on the queue twice. That is safe:
//! the worker stores a message once by its `_id` and pushes its event once
//! (the push queue's idempotency key `new_message:<messageId>`, kept for
//! the re-run window), so the second job finds both done and does nothing
//! new. Nothing is kept in Redis per message for this, which is what keeps
//! Redis's memory bounded under millions of messages a day.
//! [`Producer::with_enqueue_dedup`] adds an enqueue idempotency key per
//! message (`message:<messageId>`, about 100 bytes of Redis each for one
//! to two times its TTL, see [`crate::claims`]) for producers that would
//! rather not create the second job.
//!
//! A queue may be spread over several shards (`redis.queue_shards` of the
//! workers, who write the count to `{NAMESPACE}:queue_shards`). The
//! producer reads that count, again at most every [`SHARD_COUNT_REFRESH`],
//! and puts each job on the shard of its account ([`crate::queue::shard_of`]),
//! so one account's jobs keep one queue and their order.

use std::{
    sync::{
        atomic::{AtomicU16, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use crate::RedisConnection;
use serde::Serialize;

use crate::{
    enqueue::{enqueue, now_secs, NewJob},
    error::ValidationError,
    export::{CheckedExport, Export, ExportKey, ExportLimits, FilterPolicy, ValidExport},
    ids::{AccountId, MessageId},
    message::{MessageLimits, SendMessage, ValidMessage},
    queue::{shard_of, Namespace, QueueName, MAX_QUEUE_SHARDS},
    recall::Recall,
    redact::redact_url,
    task_order::next_task_id,
};

/// How long a producer uses the shard count it read before it reads
/// `{NAMESPACE}:queue_shards` again.
pub const SHARD_COUNT_REFRESH: Duration = Duration::from_secs(10);

/// A lifetime for [`Producer::with_enqueue_dedup`]: a day. A scheduled
/// message's key is kept that long after its `sendAt`.
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
        source: redis::RedisError,
    },
    /// Redis accepted the connection but the enqueue failed.
    #[error("enqueueing into {queue} failed: {source}")]
    Enqueue {
        /// Full name of the queue.
        queue: String,
        /// The driver's error.
        #[source]
        source: redis::RedisError,
    },
    /// A job could not be encoded as JSON.
    #[error("cannot encode a job for {queue}: {source}")]
    Encode {
        /// Full name of the queue.
        queue: String,
        /// The encoder's error.
        #[source]
        source: serde_json::Error,
    },
}

/// A client that puts Herald jobs on their queues.
#[derive(Debug, Clone)]
pub struct Producer {
    conn: RedisConnection,
    /// The URL `conn` was opened from, when the producer opened it: a
    /// `redis+sentinel://` URL lets it follow a failover.
    url: Option<String>,
    namespace: Namespace,
    /// The queues' shard count as last read, shared by the clones.
    shards: Arc<KnownShards>,
    limits: MessageLimits,
    /// How long message jobs' enqueue idempotency keys are remembered;
    /// `None`: message jobs carry no key.
    dedup: Option<Duration>,
}

impl Producer {
    /// Connects to Redis at `redis_url` (any `redis` crate URL, or
    /// `redis+sentinel://`, see [`crate::redis_url`]) and targets the queues
    /// of `namespace`.
    pub async fn connect(redis_url: &str, namespace: &Namespace) -> Result<Self, ProducerError> {
        // Also resolves `redis+sentinel://` URLs to the current master.
        let conn = RedisConnection::open(redis_url, crate::Patience::default())
            .await
            .map_err(|source| ProducerError::Connect {
                url: redact_url(redis_url),
                source,
            })?;
        let mut producer = Self::from_connection(conn, namespace);
        producer.url = Some(redis_url.to_owned());
        Ok(producer)
    }

    /// Uses an existing connection manager (shared with the rest of an
    /// app). Such a producer stays on the server `conn` talks to; one made
    /// by [`Producer::connect`] from a `redis+sentinel://` URL follows a
    /// failover.
    pub fn from_connection(conn: RedisConnection, namespace: &Namespace) -> Self {
        Self {
            conn,
            url: None,
            namespace: namespace.clone(),
            shards: Arc::new(KnownShards::default()),
            limits: MessageLimits::default(),
            dedup: None,
        }
    }

    /// Enqueues each message under the idempotency key `message:<messageId>`,
    /// remembered `ttl`: an enqueue of a message id already enqueued within
    /// that time adds no job. Costs about 100 bytes of Redis per message
    /// for one to two times `ttl` (see the module docs for why it is off
    /// by default).
    pub fn with_enqueue_dedup(mut self, ttl: Duration) -> Self {
        self.dedup = Some(ttl);
        self
    }

    /// The job for `valid`, with its idempotency key when enqueue
    /// deduplication is on. A scheduled message (`sendAt` ahead) is due
    /// then, under the job id its message id gives
    /// ([`MessageId::scheduled_job_id`]) so that it can be recalled.
    fn message_job(
        &self,
        queue: &str,
        valid: &ValidMessage,
        now: f64,
    ) -> Result<NewJob, ProducerError> {
        let key = match self.dedup {
            Some(_) => format!("message:{}", valid.id),
            None => String::new(),
        };
        let mut new = new_job(queue, &valid.to_job(), key, now)?;
        // Scheduled only when `sendAt` is ahead; due at the whole second
        // after it. A `sendAt` already past goes at once.
        let ahead = valid
            .send_at
            .is_some_and(|at| at.timestamp_millis() as f64 > now * 1000.0);
        if ahead {
            new.id = valid.id.scheduled_job_id();
            new.run_at = valid.due_at();
        }
        Ok(new)
    }

    /// The enqueue deduplication TTL for jobs due by `due` (Unix seconds):
    /// the producer's TTL counted from when they run, not from now.
    fn dedup_until(&self, due: u64, now: f64) -> Option<Duration> {
        self.dedup
            .map(|ttl| ttl + Duration::from_secs_f64((due as f64 - now).max(0.0)))
    }

    /// The full name of the shard of `queue` that `account`'s jobs go to,
    /// of the count the workers wrote (read again once
    /// [`SHARD_COUNT_REFRESH`] has passed).
    async fn queue_for(&mut self, queue: QueueName, account: &str) -> String {
        let shards = self.shard_count().await;
        self.namespace.queue_shard(queue, shard_of(account, shards))
    }

    /// How many shards the queues have: `{NAMESPACE}:queue_shards`, as
    /// the workers wrote it; 1 when no worker wrote it. A failed read keeps
    /// the count read before (the enqueue that follows reports Redis's
    /// state).
    async fn shard_count(&mut self) -> u16 {
        let now = crate::enqueue::now_secs();
        let read_at = self.shards.read_at_ms.load(Ordering::Relaxed) as f64 / 1000.0;
        if now - read_at < SHARD_COUNT_REFRESH.as_secs_f64() {
            return self.shards.count.load(Ordering::Relaxed).max(1);
        }
        if let Ok(stored) = stored_shard_count(&mut self.conn, &self.namespace).await {
            let count = stored.unwrap_or(1);
            self.shards.count.store(count, Ordering::Relaxed);
            self.shards
                .read_at_ms
                .store((now * 1000.0) as u64, Ordering::Relaxed);
        }
        self.shards.count.load(Ordering::Relaxed).max(1)
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
        self.enqueue_valid_message(&valid).await
    }

    /// Enqueues a message its caller validated already (an API that
    /// answered with every error of the body, say): the job is
    /// [`ValidMessage::to_job`], and nothing is checked again. Returns the
    /// message id.
    pub async fn enqueue_valid_message(
        &mut self,
        valid: &ValidMessage,
    ) -> Result<MessageId, ProducerError> {
        let queue = self
            .queue_for(QueueName::SendMessage, &valid.account.to_hex())
            .await;
        let now = now_secs();
        let new = self.message_job(&queue, valid, now)?;
        let ttl = self.dedup_until(new.run_at, now);
        self.write(queue, ttl, &[new]).await?;
        Ok(valid.id)
    }

    /// Recalls `account`'s scheduled message `id` (enqueued with `sendAt`)
    /// if its job has not started: then it is never stored nor pushed
    /// ([`Recall::Recalled`]). A job that started goes on ([`Recall::Started`]);
    /// [`Recall::Absent`] when the account has no scheduled message of
    /// this id on its queue (a message sent at once is never recallable).
    pub async fn recall_message(
        &mut self,
        account: AccountId,
        id: MessageId,
    ) -> Result<Recall, ProducerError> {
        let account_hex = account.to_hex();
        let queue = self.queue_for(QueueName::SendMessage, &account_hex).await;
        crate::recall::recall(&mut self.conn, &queue, &id.scheduled_job_id(), &account_hex)
            .await
            .map_err(|source| ProducerError::Enqueue { queue, source })
    }
}

impl Producer {
    /// Validates `job` (all but the worker's own limits: its collection
    /// allow-list, the operators its filters may use and its column cap; an
    /// export the worker refuses fails with `export_failed`) and enqueues
    /// it. Returns the export key.
    pub async fn enqueue_export(&mut self, job: Export) -> Result<ExportKey, ProducerError> {
        let limits = ExportLimits {
            filter: FilterPolicy::any_operator(),
            max_fields: usize::MAX,
            ..ExportLimits::new(
                [job.collection.clone()].into_iter().collect(),
                chrono_tz::UTC,
            )
        };
        let valid = job.validate(&limits)?;
        self.write_export(&job, &valid).await
    }

    /// Enqueues an export its caller validated already, with the worker's
    /// own limits (see [`Export::check_all`]); nothing is checked again.
    /// Returns the export key.
    pub async fn enqueue_checked_export(
        &mut self,
        checked: &CheckedExport,
    ) -> Result<ExportKey, ProducerError> {
        self.write_export(checked.job(), checked.valid()).await
    }

    /// Writes export `job`, whose typed parts are `valid`, to its
    /// account's shard.
    async fn write_export(
        &mut self,
        job: &Export,
        valid: &ValidExport,
    ) -> Result<ExportKey, ProducerError> {
        let queue = self
            .queue_for(QueueName::Export, &valid.account.to_hex())
            .await;
        let new = new_job(&queue, job, String::new(), now_secs())?;
        self.write(queue, None, &[new]).await?;
        Ok(valid.key.clone())
    }
}

impl Producer {
    /// Enqueues `job` as it is, on the shard of `queue` that `account`'s
    /// jobs go to, under the enqueue idempotency key `key` remembered for
    /// `ttl` (a second enqueue with the key adds nothing). Nothing is
    /// validated: this is for Herald's own processes, which hand the push
    /// queue events they built themselves.
    pub async fn enqueue_unchecked<T: Serialize>(
        &mut self,
        queue: QueueName,
        account: AccountId,
        job: &T,
        key: &str,
        ttl: Duration,
    ) -> Result<(), ProducerError> {
        let name = self.queue_for(queue, &account.to_hex()).await;
        let new = new_job(&name, job, key.to_owned(), now_secs())?;
        self.write(name, Some(ttl), &[new]).await
    }
}

/// Jobs sent to Redis per round trip by [`Producer::enqueue_messages`].
pub const BULK_CHUNK: usize = crate::enqueue::ENQUEUE_CHUNK;

impl Producer {
    /// Validates every job, then enqueues them all in chunks of
    /// [`BULK_CHUNK`] (one round trip each) — the way to broadcast to many
    /// users. If any job is invalid, nothing is enqueued. Returns the
    /// message ids in the order of `jobs`. On a sharded queue each
    /// account's jobs go to its shard, in the order of `jobs`.
    pub async fn enqueue_messages(
        &mut self,
        jobs: Vec<SendMessage>,
    ) -> Result<Vec<MessageId>, ProducerError> {
        let mut valid = Vec::with_capacity(jobs.len());
        let shards = self.shard_count().await;
        // Each shard's jobs in the order of `jobs`.
        let mut per_shard: Vec<Vec<usize>> = vec![Vec::new(); usize::from(shards)];
        for (index, job) in jobs.iter().enumerate() {
            let message = job
                .validate(&self.limits)
                .map_err(|error| ProducerError::InvalidInBatch { index, error })?;
            per_shard[usize::from(shard_of(&message.account.to_hex(), shards))].push(index);
            valid.push(message);
        }
        for (shard, members) in per_shard.iter().enumerate() {
            let queue = self
                .namespace
                .queue_shard(QueueName::SendMessage, shard as u16);
            for chunk in members.chunks(BULK_CHUNK) {
                let now = now_secs();
                let chunk = chunk
                    .iter()
                    .map(|&i| self.message_job(&queue, &valid[i], now))
                    .collect::<Result<Vec<_>, _>>()?;
                // Keys of scheduled messages are kept until their time.
                let last_due = chunk.iter().map(|job| job.run_at).max().unwrap_or(0);
                let ttl = self.dedup_until(last_due, now);
                self.write(queue.clone(), ttl, &chunk).await?;
            }
        }
        Ok(valid.into_iter().map(|message| message.id).collect())
    }
}

impl Producer {
    /// Writes `jobs` onto the queue `name` with the enqueue script,
    /// remembering their idempotency keys for `ttl`. If Redis answers
    /// as a replica, or cannot be reached, and the producer was opened from
    /// a `redis+sentinel://` URL, it asks the sentinels for the master,
    /// reconnects and writes once more (a retried write is safe, see the
    /// module docs).
    async fn write(
        &mut self,
        name: String,
        ttl: Option<Duration>,
        jobs: &[NewJob],
    ) -> Result<(), ProducerError> {
        let error = match enqueue(&mut self.conn, &name, ttl, jobs, now_secs()).await {
            Ok(_) => return Ok(()),
            Err(error) => error,
        };
        let failed = |source| ProducerError::Enqueue {
            queue: name.clone(),
            source,
        };
        let Some(url) = self
            .url
            .clone()
            .filter(|url| crate::redis_url::is_sentinel_url(url))
        else {
            return Err(failed(error));
        };
        if !master_may_have_moved(&error) {
            return Err(failed(error));
        }
        self.conn = RedisConnection::open(&url, crate::Patience::default())
            .await
            .map_err(|source| ProducerError::Connect {
                url: redact_url(&url),
                source,
            })?;
        enqueue(&mut self.conn, &name, ttl, jobs, now_secs())
            .await
            .map_err(failed)?;
        Ok(())
    }
}

/// The queues' shard count the workers of `namespace` last wrote
/// (`{NAMESPACE}:queue_shards`), if any; a value that is not a count of 1
/// to [`MAX_QUEUE_SHARDS`] reads as none.
pub async fn stored_shard_count(
    conn: &mut RedisConnection,
    namespace: &Namespace,
) -> redis::RedisResult<Option<u16>> {
    let value: Option<String> = redis::cmd("GET")
        .arg(namespace.shard_count_key())
        .query_async(conn)
        .await?;
    Ok(value
        .and_then(|v| v.parse::<u16>().ok())
        .filter(|n| (1..=MAX_QUEUE_SHARDS).contains(n)))
}

/// The shard count a producer read, and when (shared by its clones, so a
/// web server's per-request clones read it once per refresh, not once
/// each).
#[derive(Debug, Default)]
struct KnownShards {
    /// The count; 0 until first read.
    count: AtomicU16,
    /// When it was read, in Unix milliseconds; 0: never.
    read_at_ms: AtomicU64,
}

/// Whether `error` is what a client of a master that Sentinel replaced
/// sees: the old master, now a replica, refusing writes, or gone.
fn master_may_have_moved(error: &redis::RedisError) -> bool {
    error.code() == Some("READONLY")
        || error.is_io_error()
        || error.is_connection_refusal()
        || error.is_connection_dropped()
}

/// `job` as a new job of `queue` with the enqueue idempotency key `key`
/// ("" for none), due at once.
fn new_job<T: Serialize>(
    queue: &str,
    job: &T,
    key: String,
    now: f64,
) -> Result<NewJob, ProducerError> {
    let payload = serde_json::to_vec(job).map_err(|source| ProducerError::Encode {
        queue: queue.to_owned(),
        source,
    })?;
    Ok(NewJob {
        id: next_task_id().to_string(),
        payload,
        run_at: 0,
        metadata: NewJob::metadata(0, 0, &key, now),
        idempotency_key: key,
    })
}
