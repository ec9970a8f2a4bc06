//! Herald's three queues (`send_message`, `push`, `export`) and how the
//! settings configure each: the domain side of the [`crate::queue`] layer,
//! which knows none of this.
//!
//! The worker builds its backends here; the dashboard, the operations
//! endpoints and `herald failed` build their [`crate::queue::admin`] views
//! from the same configuration, so every process agrees on each queue's
//! keys, retry policy and limits.

pub mod shards;

use std::time::Duration;

use herald_jobs::QueueName;
use herald_jobs::RedisConnection;

use crate::{
    config::Settings,
    push::delivery::DeliveryLog,
    queue::{admin::QueueAdmin, DeadLabel, QueueConfig, RedisQueue, Retention, RetryPolicy},
};

/// What [`rerun_window`] allows for the time a job that must run again
/// waits in its queue (behind a backlog, or for a worker to start).
pub const QUEUE_WAIT_MARGIN: Duration = Duration::from_secs(3600);

/// When failed jobs of `queue` run again.
fn retry_policy(settings: &Settings, queue: QueueName) -> RetryPolicy {
    let worker = &settings.worker;
    RetryPolicy {
        base: worker.retry_base,
        cap: worker.retry_cap,
        max_attempts: settings.queues.of(queue).max_attempts,
    }
}

/// How long after a message's first run one of its jobs can still run
/// again: the `send_message` job (whose re-run would hand the push off
/// again) and then its push (whose re-run would send it again). That is
/// both retry schedules at their longest (a push's retries each at the cap,
/// which a provider's `Retry-After` may ask for), one heartbeat timeout for
/// every run (a worker that died mid-run is noticed that late), and
/// [`QUEUE_WAIT_MARGIN`]. The push queue's idempotency keys and delivery
/// receipts are kept exactly this long: they matter only while a re-run
/// can come. With the default settings it is 2 hours 14 minutes.
pub fn rerun_window(settings: &Settings) -> Duration {
    let worker = &settings.worker;
    let send = retry_policy(settings, QueueName::SendMessage);
    let push = retry_policy(settings, QueueName::Push);
    let runs = (send.max_attempts + push.max_attempts) as u32;
    let heartbeat_timeout = worker.heartbeat_interval * (worker.missed_heartbeats.max(1) as u32);
    // A provider may ask a push to wait up to the cap before any retry
    // (`Retry-After`, see `queue::retry::NotBefore`), so every push retry
    // counts at the cap.
    let push_span = push.cap * (push.max_attempts.saturating_sub(1) as u32);
    send.longest_retry_span() + push_span + heartbeat_timeout * runs + QUEUE_WAIT_MARGIN
}

/// What the failed list of `queue` filters by: every job names its account
/// (`accountId`), and a push job its event (`event.name`).
pub fn dead_labels(queue: QueueName) -> Vec<DeadLabel> {
    let account = DeadLabel::new("account", "/accountId");
    match queue {
        QueueName::Push => vec![DeadLabel::new("event", "/event/name"), account],
        QueueName::SendMessage | QueueName::Export => vec![account],
    }
}

/// The configuration of `queue` from the settings: its first shard, the
/// whole queue when `redis.queue_shards` is 1.
pub fn config(settings: &Settings, queue: QueueName) -> QueueConfig {
    shard_config(settings, queue, 0)
}

/// The configuration of each shard of `queue`, shard 0 first
/// (`redis.queue_shards` of them).
pub fn shard_configs(settings: &Settings, queue: QueueName) -> Vec<QueueConfig> {
    (0..settings.redis.queue_shards.max(1))
        .map(|shard| shard_config(settings, queue, shard))
        .collect()
}

/// Operator access to `queue`, all its shards as one.
pub fn admin(conn: RedisConnection, settings: &Settings, queue: QueueName) -> QueueAdmin {
    let mut shards = shard_configs(settings, queue).into_iter();
    let first = shards
        .next()
        .unwrap_or_else(|| shard_config(settings, queue, 0));
    QueueAdmin::sharded(conn, first, shards)
}

/// Operator access to every queue, by name, each with all its shards as
/// one: what the dashboard and the operations endpoints report on.
pub fn admins(conn: &RedisConnection, settings: &Settings) -> Vec<(&'static str, QueueAdmin)> {
    QueueName::ALL
        .iter()
        .map(|queue| (queue.as_str(), admin(conn.clone(), settings, *queue)))
        .collect()
}

/// The configuration of shard `shard` of `queue` from the settings.
///
/// What sets the queues apart: each has its own attempt limit; the push
/// queue alone remembers enqueue idempotency keys, for the
/// [`rerun_window`] (the other queues' keys are the producers' business),
/// and looks up each fetched job's delivery receipt
/// ([`DeliveryLog::fetch_lookup`]). Every queue keeps finished jobs as
/// `[retention]` says.
pub fn shard_config(settings: &Settings, queue: QueueName, shard: u16) -> QueueConfig {
    let worker = &settings.worker;
    let mut config = QueueConfig::new(settings.redis.namespace.queue_shard(queue, shard));
    config.batch_size = worker.fetch_batch_size;
    config.heartbeat_interval = worker.heartbeat_interval;
    config.missed_heartbeats = worker.missed_heartbeats as u32;
    config.retry = retry_policy(settings, queue);
    config.max_payload_bytes = worker.max_payload_bytes;
    config.idle_wait = worker.idle_wait;
    config.retention = Retention {
        done: settings.retention.done,
        dead: settings.retention.dead,
        dead_max: settings.retention.dead_max,
    };
    config.dead_labels = dead_labels(queue);
    if queue == QueueName::Push {
        config.dedup_ttl = Some(rerun_window(settings));
        config.fetch_lookup = Some(DeliveryLog::fetch_lookup(&config));
    }
    config
}

/// The backend for jobs of type `T` on `queue` (its first shard).
pub fn storage<T>(conn: RedisConnection, settings: &Settings, queue: QueueName) -> RedisQueue<T> {
    shard_storage(conn, settings, queue, 0)
}

/// The backend for jobs of type `T` on shard `shard` of `queue`.
pub fn shard_storage<T>(
    conn: RedisConnection,
    settings: &Settings,
    queue: QueueName,
    shard: u16,
) -> RedisQueue<T> {
    RedisQueue::new(conn, shard_config(settings, queue, shard))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn only_the_push_queue_dedups_and_looks_receipts_up() {
        let settings = Settings::load_from(&HashMap::new()).expect("defaults load");
        let push = config(&settings, QueueName::Push);
        assert_eq!(
            push.fetch_lookup.as_deref(),
            Some("{herald:push}:idempotency")
        );
        assert_eq!(push.dedup_ttl, Some(rerun_window(&settings)));
        for queue in [QueueName::SendMessage, QueueName::Export] {
            let other = config(&settings, queue);
            assert_eq!(other.fetch_lookup, None);
            assert_eq!(other.dedup_ttl, None);
        }
        assert_eq!(
            config(&settings, QueueName::Export).retry.max_attempts,
            settings.queues.export.max_attempts
        );
        assert_eq!(push.retention.dead_max, settings.retention.dead_max);
    }

    #[test]
    fn the_rerun_window_covers_both_retry_schedules_and_a_heartbeat_timeout_per_run() {
        let settings = Settings::load_from(&HashMap::new()).expect("defaults load");
        // send_message: 1 + 2 + ... + 256 s before runs 2 to 10 (511 s);
        // push: 300 s (the cap) before each of runs 2 to 12 (3,300 s); 22
        // runs of 30 s heartbeat timeout (660 s); an hour in queues.
        assert_eq!(
            rerun_window(&settings),
            Duration::from_secs(511 + 3_300 + 660 + 3_600)
        );
    }
}
