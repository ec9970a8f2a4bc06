//! Redis memory over a long run: what Herald leaves behind per message.
//!
//! The run has a `redis-server` of its own (nothing else writes to it), so
//! the growth of its `used_memory` from before the worker started to after
//! retention is what Herald keeps per message, as Redis counts it: keys,
//! values, expiry entries, hash-table slots and allocator rounding.
//!
//! A worker (in this process, `herald worker`'s code) runs with a short
//! `retention.done_secs` and a one-second heartbeat, so retention happens
//! within the run. `messages` messages are enqueued through the
//! `herald-jobs` producer in rounds of [`ROUND`], each round waiting until
//! the worker has caught up to within one round, as a steady producer
//! would. Every second the run samples `used_memory` and the bytes held
//! under the run's namespace (`MEMORY USAGE` of each key, which leaves out
//! the keyspace's own entries and the expiry table). Once every message is
//! stored and pushed, it waits for the retention to forget the finished
//! jobs and reports what is left per message: the `used_memory` growth,
//! and by kind of key what the re-run window keeps (the push queue's
//! claims and delivery receipts, which expire with it) and anything else
//! (which would grow without bound). The run uses its own database and
//! sandbox and removes them afterwards.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use herald::{
    config::Settings,
    store::{self, MESSAGE_COLLECTION},
    worker,
};
use herald_jobs::RedisConnection;
use herald_jobs::{AccountId, Namespace, Producer, SendMessage};
use mongodb::bson::doc;

use crate::queue::BenchError;

/// Messages enqueued per round.
pub const ROUND: u64 = 10_000;

/// The soak's workload.
#[derive(Debug, Clone, Copy)]
pub struct SoakWorkload {
    /// Messages in all.
    pub messages: u64,
    /// `retention.done_secs` for the run.
    pub done_secs: u64,
}

/// One memory sample.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Seconds since the first enqueue.
    pub at: f64,
    /// Messages pushed so far.
    pub pushed: u64,
    /// Redis `used_memory`, the whole server.
    pub used_memory: u64,
    /// Bytes under the run's namespace.
    pub namespace_bytes: u64,
    /// Keys under the run's namespace.
    pub namespace_keys: u64,
}

/// What the soak measured.
#[derive(Debug, Clone)]
pub struct SoakReport {
    /// The workload run.
    pub workload: SoakWorkload,
    /// Samples, one a second.
    pub samples: Vec<Sample>,
    /// Seconds from the first enqueue until everything was pushed.
    pub drained_secs: f64,
    /// Seconds from then until retention had forgotten the finished jobs.
    pub retention_secs: f64,
    /// What is left under the namespace after retention: kind of key →
    /// (keys, bytes).
    pub left: BTreeMap<String, (u64, u64)>,
    /// The private server's `used_memory` before the worker started and
    /// after retention.
    pub used_memory_before: u64,
    /// See `used_memory_before`.
    pub used_memory_after: u64,
    /// Documents stored (one per message expected).
    pub stored: u64,
    /// Pushes accepted (one per message expected).
    pub pushed: u64,
}

impl SoakReport {
    /// How much the private server's `used_memory` grew per message, from
    /// before the worker started to after retention: the target's figure.
    pub fn used_memory_per_message(&self) -> f64 {
        self.used_memory_after
            .saturating_sub(self.used_memory_before) as f64
            / self.workload.messages.max(1) as f64
    }

    /// Bytes left per message of the kinds the re-run window keeps, by
    /// `MEMORY USAGE`.
    pub fn window_bytes_per_message(&self) -> f64 {
        self.bytes_of(is_window_kind) as f64 / self.workload.messages.max(1) as f64
    }

    /// Bytes left per message of every other kind (finished jobs' keys;
    /// should be none).
    pub fn other_bytes_per_message(&self) -> f64 {
        self.bytes_of(|kind| !is_window_kind(kind)) as f64 / self.workload.messages.max(1) as f64
    }

    fn bytes_of(&self, keep: impl Fn(&str) -> bool) -> u64 {
        self.left
            .iter()
            .filter(|(kind, _)| keep(kind))
            .map(|(_, (_, bytes))| bytes)
            .sum()
    }
}

/// Kinds of keys that live for the re-run window only.
fn is_window_kind(kind: &str) -> bool {
    kind.ends_with(":idempotency")
}

/// The kind of a key of the namespace `prefix` (`NAMESPACE:`): the queue
/// and what it is, with the hash tag's braces, ids and minutes dropped
/// (`push:idempotency`, `send_message:stats`).
fn kind_of(key: &str, prefix: &str) -> String {
    let untagged = key.replacen(['{', '}'], "", 2);
    let rest = untagged.strip_prefix(prefix).unwrap_or(&untagged);
    let mut parts = rest.split(':');
    let queue = parts.next().unwrap_or_default();
    match parts.next() {
        Some(what) => format!("{queue}:{what}"),
        None => queue.to_owned(),
    }
}

/// Runs the soak with `settings` (Redis, MongoDB, worker tuning).
pub async fn run(settings: &Settings, workload: SoakWorkload) -> Result<SoakReport, BenchError> {
    let suffix = mongodb::bson::oid::ObjectId::new().to_hex();
    let mut settings = settings.clone();
    settings.redis.namespace = Namespace::parse(&format!("herald-soak-{suffix}"))
        .map_err(|e| BenchError::Enqueue(e.to_string()))?;
    settings.mongodb.database = format!("herald_soak_{suffix}");
    settings.retention.done = Duration::from_secs(workload.done_secs.max(1));
    settings.worker.heartbeat_interval = Duration::from_secs(1);
    settings.worker.ops_bind = None;

    let (server, url) = crate::latency::process::private_redis().await?;
    settings.redis.url = url;
    let (sandbox_url, sandbox_task) = super::backlog::private_sandbox(&mut settings).await?;

    let result = async {
        let database = store::connect(&settings.mongodb).await?;
        let mut conn = herald::queue::connect(settings.redis.url.as_str()).await?;
        let result = soak(&settings, &database, &mut conn, &sandbox_url, workload).await;
        let _ = database.drop().await;
        result
    }
    .await;
    sandbox_task.abort();
    server.stop().await;
    result
}

async fn soak(
    settings: &Settings,
    database: &mongodb::Database,
    conn: &mut RedisConnection,
    sandbox_url: &str,
    workload: SoakWorkload,
) -> Result<SoakReport, BenchError> {
    let namespace = &settings.redis.namespace;
    let used_memory_before = used_memory(conn).await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker::run(settings.clone(), async move {
        let _ = stopped.await;
    }));
    let mut producer = Producer::connect(&settings.redis.url, &settings.redis.namespace)
        .await
        .map_err(|e| BenchError::Enqueue(e.to_string()))?;
    let account = AccountId::from(mongodb::bson::oid::ObjectId::new());
    let http = reqwest::Client::new();
    let start = Instant::now();
    let mut samples = Vec::new();
    let mut next_sample = Instant::now();
    let mut enqueued = 0;
    let pushed = loop {
        if running.is_finished() {
            return Err(BenchError::Stuck("the soak's worker stopped early".into()));
        }
        let pushed = super::backlog::accepted_pushes(&http, sandbox_url).await;
        if enqueued < workload.messages && pushed + ROUND >= enqueued {
            let round = ROUND.min(workload.messages - enqueued);
            let jobs: Vec<SendMessage> = (enqueued..enqueued + round)
                .map(|i| SendMessage::new(account, format!("soak {i}"), "x".repeat(200)))
                .collect();
            producer
                .enqueue_messages(jobs)
                .await
                .map_err(|e| BenchError::Enqueue(e.to_string()))?;
            enqueued += round;
        }
        if Instant::now() >= next_sample {
            samples.push(sample(conn, namespace, start, pushed).await?);
            next_sample += Duration::from_secs(1);
        }
        if pushed >= workload.messages {
            break pushed;
        }
        if start.elapsed() > Duration::from_secs(3600) {
            return Err(BenchError::Stuck(format!(
                "the soak ({pushed} of {} pushed)",
                workload.messages
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let drained_secs = start.elapsed().as_secs_f64();

    // Retention forgets the finished jobs `done_secs` after they finished,
    // on a heartbeat; wait until no job key is left.
    let settled = Instant::now();
    loop {
        let by_kind = namespace_usage(conn, namespace).await?;
        let jobs_left = by_kind
            .iter()
            .any(|(kind, _)| kind.ends_with(":data") || kind.ends_with(":done"));
        if Instant::now() >= next_sample {
            samples.push(sample(conn, namespace, start, pushed).await?);
            next_sample += Duration::from_secs(1);
        }
        if !jobs_left {
            break;
        }
        if settled.elapsed() > Duration::from_secs(workload.done_secs + 600) {
            return Err(BenchError::Stuck("the retention".into()));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let retention_secs = settled.elapsed().as_secs_f64();
    let _ = stop.send(());
    let _ = running.await;
    let left = namespace_usage(conn, namespace).await?;
    let used_memory_after = used_memory(conn).await?;
    let stored = database
        .collection::<mongodb::bson::Document>(MESSAGE_COLLECTION)
        .count_documents(doc! {})
        .await?;
    Ok(SoakReport {
        workload,
        samples,
        drained_secs,
        retention_secs,
        left,
        used_memory_before,
        used_memory_after,
        stored,
        pushed,
    })
}

async fn sample(
    conn: &mut RedisConnection,
    namespace: &Namespace,
    start: Instant,
    pushed: u64,
) -> Result<Sample, BenchError> {
    let usage = namespace_usage(conn, namespace).await?;
    Ok(Sample {
        at: start.elapsed().as_secs_f64(),
        pushed,
        used_memory: used_memory(conn).await?,
        namespace_keys: usage.values().map(|(keys, _)| keys).sum(),
        namespace_bytes: usage.values().map(|(_, bytes)| bytes).sum(),
    })
}

/// Redis's `used_memory`.
async fn used_memory(conn: &mut RedisConnection) -> Result<u64, BenchError> {
    let info: String = redis::cmd("INFO").arg("memory").query_async(conn).await?;
    info.lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .and_then(|value| value.trim().parse().ok())
        .ok_or_else(|| BenchError::Invalid("INFO memory has no used_memory".into()))
}

/// Keys and bytes of `namespace`, by kind of key (see [`kind_of`]).
async fn namespace_usage(
    conn: &mut RedisConnection,
    namespace: &Namespace,
) -> Result<BTreeMap<String, (u64, u64)>, BenchError> {
    let prefix = &format!("{namespace}:");
    let mut by_kind: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let keys = conn.scan_match(&namespace.key_pattern()).await?;
    for keys in keys.chunks(1000) {
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.cmd("MEMORY")
                .arg("USAGE")
                .arg(key)
                .arg("SAMPLES")
                .arg(0);
        }
        let sizes: Vec<Option<u64>> = pipe.query_async(conn).await?;
        for (key, size) in keys.iter().zip(sizes) {
            let entry = by_kind.entry(kind_of(key, prefix)).or_default();
            entry.0 += 1;
            entry.1 += size.unwrap_or(0);
        }
    }
    Ok(by_kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_grouped_by_queue_and_kind() {
        let prefix = "herald-soak-1:";
        assert_eq!(
            kind_of("{herald-soak-1:push}:idempotency:new_message:65a1", prefix),
            "push:idempotency"
        );
        assert_eq!(
            kind_of("{herald-soak-1:send_message}:stats:done:29000000", prefix),
            "send_message:stats"
        );
        assert!(is_window_kind("push:idempotency"));
        assert!(!is_window_kind("push:meta"));
    }
}
