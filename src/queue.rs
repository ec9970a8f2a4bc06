//! Redis queues: connecting and configuring apalis-redis storages.
//!
//! Every storage Herald opens goes through [`storage`], so the producer side
//! (enqueueing) and the worker side (fetching) agree on key names, and the
//! worker's batch size and heartbeat settings apply to every queue.

use apalis_redis::{Config, ConnectionManager, RedisStorage};
use herald_jobs::QueueName;

use crate::config::Settings;

/// Why Redis could not be used.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The server could not be reached.
    #[error("cannot reach Redis at {url}: {source}")]
    Connect {
        /// The URL tried, without credentials.
        url: String,
        /// The driver's error.
        #[source]
        source: redis::RedisError,
    },
    /// Enqueueing a job failed.
    #[error("enqueueing into {queue} failed: {reason}")]
    Enqueue {
        /// Full queue name.
        queue: String,
        /// What apalis-redis reported.
        reason: String,
    },
}

/// Opens a managed (auto-reconnecting) connection and checks it with PING.
pub async fn connect(settings: &Settings) -> Result<ConnectionManager, QueueError> {
    let connect_error = |source| QueueError::Connect {
        url: herald_jobs::producer::redact_url(&settings.redis.url),
        source,
    };
    let client = redis::Client::open(settings.redis.url.as_str()).map_err(connect_error)?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(std::time::Duration::from_secs(5)))
        .set_number_of_retries(2);
    let mut conn = client
        .get_connection_manager_with_config(config)
        .await
        .map_err(connect_error)?;
    redis::cmd("PING")
        .query_async::<String>(&mut conn)
        .await
        .map_err(connect_error)?;
    Ok(conn)
}

/// The apalis-redis configuration of `queue` under the configured namespace.
pub fn queue_config(settings: &Settings, queue: QueueName) -> Config {
    let mut config = Config::default()
        .queue(settings.redis.namespace.queue(queue))
        .batch_size(settings.worker.fetch_batch_size)
        .heartbeat_interval(settings.worker.heartbeat_interval)
        .missed_heartbeats(settings.worker.missed_heartbeats);
    if queue == QueueName::Push {
        config = config.idempotency_ttl(Some(settings.worker.push_dedup_ttl));
    }
    config
}

/// A storage for jobs of type `T` on `queue`.
pub fn storage<T>(
    conn: ConnectionManager,
    settings: &Settings,
    queue: QueueName,
) -> RedisStorage<T> {
    RedisStorage::new(conn).with_config(queue_config(settings, queue))
}
