//! Herald's three queues (`send_message`, `push`, `export`) and how the
//! settings configure each: the domain side of the [`crate::queue`] layer,
//! which knows none of this.
//!
//! The worker builds its backends here; the dashboard, the operations
//! endpoints and `herald failed` build their [`crate::queue::admin`] views
//! from the same configuration, so every process agrees on each queue's
//! keys, retry policy and limits.

use herald_jobs::QueueName;
use redis::aio::ConnectionManager;

use crate::{
    config::Settings,
    push::delivery::DeliveryLog,
    queue::{QueueConfig, RedisQueue, RetryPolicy},
};

/// The configuration of `queue` from the settings.
///
/// What sets the queues apart: each has its own attempt limit; the push
/// queue alone remembers enqueue idempotency keys for
/// `worker.push_dedup_ttl` (the other queues' keys are the producers'
/// business and kept as long as the job), and looks up each fetched job's
/// delivery receipt ([`DeliveryLog::fetch_lookup`]).
pub fn config(settings: &Settings, queue: QueueName) -> QueueConfig {
    let worker = &settings.worker;
    let max_attempts = match queue {
        QueueName::SendMessage => worker.send_message_max_attempts,
        QueueName::Push => worker.push_max_attempts,
        QueueName::Export => worker.export_max_attempts,
    };
    let mut config = QueueConfig::new(settings.redis.namespace.queue(queue));
    config.batch_size = worker.fetch_batch_size;
    config.heartbeat_interval = worker.heartbeat_interval;
    config.missed_heartbeats = worker.missed_heartbeats as u32;
    config.retry = RetryPolicy {
        base: worker.retry_base,
        cap: worker.retry_cap,
        max_attempts,
    };
    config.max_payload_bytes = worker.max_payload_bytes;
    if queue == QueueName::Push {
        config.dedup_ttl = Some(worker.push_dedup_ttl);
        config.fetch_lookup = Some(DeliveryLog::fetch_lookup(&config));
    }
    config
}

/// The backend for jobs of type `T` on `queue`.
pub fn storage<T>(conn: ConnectionManager, settings: &Settings, queue: QueueName) -> RedisQueue<T> {
    RedisQueue::new(conn, config(settings, queue))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn only_the_push_queue_dedups_and_looks_receipts_up() {
        let settings = Settings::load_from(&HashMap::new()).expect("defaults load");
        let push = config(&settings, QueueName::Push);
        assert_eq!(push.fetch_lookup.as_deref(), Some("herald:push:delivered"));
        assert_eq!(push.dedup_ttl, Some(settings.worker.push_dedup_ttl));
        for queue in [QueueName::SendMessage, QueueName::Export] {
            let other = config(&settings, queue);
            assert_eq!(other.fetch_lookup, None);
            assert_eq!(other.dedup_ttl, None);
        }
        assert_eq!(
            config(&settings, QueueName::Export).retry.max_attempts,
            settings.worker.export_max_attempts
        );
    }
}
