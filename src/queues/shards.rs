//! How many shards each queue is spread over, and who decides.
//!
//! `redis.queue_shards` spreads every queue over that many hash tags
//! (`herald_jobs::queue::shard_of` picks an account's shard). The workers
//! decide: at start a worker writes its setting to
//! `{NAMESPACE}:queue_shards` ([`claim`]), and producers read that key to
//! choose a shard, so a producer never writes to a shard no worker
//! consumes. Operators' views ([`known`]) show at least as many shards as
//! the key says, so a job on a shard is never hidden from the dashboard.
//!
//! Growing the count is safe while workers run: the new shards are empty
//! and every worker started with the new count consumes them. Shrinking is
//! refused while the shards that would go away still hold jobs (pending,
//! scheduled, running or dead); `docs/operations.md`, "Sharded queues", says how to
//! drain them first.

use herald_jobs::{Namespace, QueueName, RedisConnection};

use crate::{config::Settings, queues};

/// Why a worker would not take the configured shard count.
#[derive(Debug, thiserror::Error)]
pub enum ShardCountError {
    /// Redis could not be read or written.
    #[error("Redis {operation} for the queues' shard count failed: {source}")]
    Redis {
        /// What was being done.
        operation: &'static str,
        /// The driver's error.
        #[source]
        source: redis::RedisError,
    },
    /// The count would shrink while a shard that goes away holds jobs.
    #[error(
        "redis.queue_shards is {configured} but the queues have {stored} shards and shard \
         {shard} of {queue} still holds {jobs} jobs; start with queue_shards = {stored} until \
         shards {configured} and above are empty (docs/operations.md: \"Sharded queues\")"
    )]
    StillHoldsJobs {
        /// The count this worker was configured with.
        configured: u16,
        /// The count the workers wrote before.
        stored: u16,
        /// The queue whose shard holds jobs.
        queue: QueueName,
        /// The shard.
        shard: u16,
        /// Its jobs: pending, scheduled, leased and dead.
        jobs: u64,
    },
}

fn redis_error(operation: &'static str) -> impl Fn(redis::RedisError) -> ShardCountError {
    move |source| ShardCountError::Redis { operation, source }
}

/// The shard count the workers last wrote, if any.
pub async fn stored(
    conn: &mut RedisConnection,
    namespace: &Namespace,
) -> Result<Option<u16>, ShardCountError> {
    herald_jobs::producer::stored_shard_count(conn, namespace)
        .await
        .map_err(redis_error("read"))
}

/// Makes `settings.redis.queue_shards` the count producers use, after
/// checking that no shard it leaves out holds jobs. Called by a worker
/// before it takes any job.
pub async fn claim(conn: &mut RedisConnection, settings: &Settings) -> Result<(), ShardCountError> {
    let configured = settings.redis.queue_shards;
    let namespace = &settings.redis.namespace;
    if let Some(stored) = stored(conn, namespace).await? {
        for shard in configured..stored {
            for queue in QueueName::ALL {
                let jobs = jobs_on(conn, settings, queue, shard).await?;
                if jobs > 0 {
                    return Err(ShardCountError::StillHoldsJobs {
                        configured,
                        stored,
                        queue,
                        shard,
                        jobs,
                    });
                }
            }
        }
    }
    redis::cmd("SET")
        .arg(namespace.shard_count_key())
        .arg(configured)
        .query_async::<()>(conn)
        .await
        .map_err(redis_error("write"))
}

/// Every job shard `shard` of `queue` holds: pending, scheduled, leased
/// to a registered worker, and dead.
async fn jobs_on(
    conn: &mut RedisConnection,
    settings: &Settings,
    queue: QueueName,
    shard: u16,
) -> Result<u64, ShardCountError> {
    let config = queues::shard_config(settings, queue, shard);
    let (pending, scheduled, dead, workers): (u64, u64, u64, Vec<String>) = redis::pipe()
        .llen(config.active_key())
        .zcard(config.scheduled_key())
        .zcard(config.dead_key())
        .zrange(config.workers_key(), 0, -1)
        .query_async(conn)
        .await
        .map_err(redis_error("count a shard's jobs"))?;
    let mut leased = 0;
    for worker in workers {
        leased += redis::cmd("SCARD")
            .arg(config.inflight_key(&worker))
            .query_async::<u64>(conn)
            .await
            .map_err(redis_error("count a shard's jobs"))?;
    }
    Ok(pending + scheduled + dead + leased)
}

/// `settings` with `redis.queue_shards` raised to the count the workers
/// wrote, for the processes that show or change queues (the dashboard,
/// the API, the CLI): they then see every shard a worker consumes. When
/// Redis cannot be read the settings are kept as they are.
pub async fn known(conn: &mut RedisConnection, settings: &Settings) -> Settings {
    let mut settings = settings.clone();
    if let Ok(Some(stored)) = stored(conn, &settings.redis.namespace).await {
        settings.redis.queue_shards = settings.redis.queue_shards.max(stored);
    }
    settings
}
