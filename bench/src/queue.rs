//! No-op job throughput: Herald's queue layer against plain apalis-redis.
//!
//! The workload is fixed: `jobs` no-op jobs, enqueued in rounds of `round`
//! jobs while no worker runs; then one worker drains the round, and the clock
//! runs from the worker's start until Redis records the round's last job as
//! done. Rounds stay below 8,000 jobs because plain apalis-redis cannot take
//! more jobs due at once (see `herald::queue`). Enqueueing is not timed.

use std::time::{Duration, Instant};

use apalis::prelude::{
    BackendExt, BoxDynError, ParallelizeExt, TaskSink, WorkerBuilder, WorkerBuilderExt, WorkerError,
};
use apalis_redis::RedisStorage;
use herald::queue::{QueueConfig, QueueError, RedisQueue};
use herald_jobs::RedisConnection;
use serde_json::Value;

use crate::Row;

/// The workload's size.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// Jobs in all.
    pub jobs: u64,
    /// Jobs per round (below 8,000).
    pub round: u64,
}

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Redis failed.
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Herald's queue failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// Enqueueing failed.
    #[error("enqueue failed: {0}")]
    Enqueue(String),
    /// A worker failed.
    #[error("worker failed: {0}")]
    Worker(#[from] WorkerError),
    /// Jobs did not finish in time.
    #[error("{0} did not finish within 10 minutes")]
    Stuck(String),
    /// MongoDB could not be reached or set up.
    #[error(transparent)]
    Store(#[from] herald::store::StoreError),
    /// A MongoDB command failed.
    #[error("MongoDB: {0}")]
    Mongo(#[from] mongodb::error::Error),
    /// A socket, file or child process failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A measurement's result is wrong (lost, duplicated or unreadable).
    #[error("{0}")]
    Invalid(String),
}

async fn noop(_job: Value) -> Result<(), BoxDynError> {
    Ok(())
}

fn namespace(label: &str) -> String {
    format!(
        "herald-bench-{label}-{}",
        mongodb::bson::oid::ObjectId::new().to_hex()
    )
}

/// Jobs in `queue`'s done set: a sorted set in Herald's layout, a plain
/// set in apalis-redis's.
async fn done_count(conn: &mut RedisConnection, queue: &str) -> Result<u64, redis::RedisError> {
    let key = format!("{queue}:done");
    let kind: String = redis::cmd("TYPE").arg(&key).query_async(conn).await?;
    // "none" until the first job is done: count nothing then, since the key
    // may be created (as either type) before a second command could run.
    let count = match kind.as_str() {
        "zset" => "ZCARD",
        "set" => "SCARD",
        _ => return Ok(0),
    };
    redis::cmd(count).arg(&key).query_async(conn).await
}

async fn wait_done(conn: &mut RedisConnection, queue: &str, target: u64) -> Result<(), BenchError> {
    let start = Instant::now();
    while done_count(conn, queue).await? < target {
        if start.elapsed() > Duration::from_secs(600) {
            return Err(BenchError::Stuck(queue.to_owned()));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

/// Deletes every key matching `pattern` (on every primary of a cluster),
/// scanning rather than using KEYS so a large keyspace never blocks the
/// server.
pub(crate) async fn cleanup(
    conn: &mut RedisConnection,
    pattern: &str,
) -> Result<(), redis::RedisError> {
    let keys = conn.scan_match(pattern).await?;
    for chunk in keys.chunks(1000) {
        redis::cmd("UNLINK")
            .arg(chunk)
            .query_async::<()>(conn)
            .await?;
    }
    Ok(())
}

fn payloads(n: u64) -> Vec<Value> {
    (0..n).map(|i| serde_json::json!({ "n": i })).collect()
}

/// A worker running in the background and the switch that stops it.
type Running = (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), WorkerError>>,
);

/// A signal future for `run_until`, completed through the returned sender.
fn stop_switch() -> (
    tokio::sync::oneshot::Sender<()>,
    impl std::future::Future<Output = Result<(), WorkerError>> + Send + 'static,
) {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    (tx, async move {
        let _ = rx.await;
        Ok(())
    })
}

/// The fixed workload on `queue`: per round, `enqueue(n)` with no worker
/// running, then `start(round)` a worker, timed until the round is done.
async fn timed_rounds<E, EF, S>(
    conn: &RedisConnection,
    queue: &str,
    workload: Workload,
    mut enqueue: E,
    mut start: S,
) -> Result<(u64, Duration), BenchError>
where
    E: FnMut(u64) -> EF,
    EF: std::future::Future<Output = Result<(), BenchError>>,
    S: FnMut(u64) -> Running,
{
    let mut control = conn.clone();
    let mut elapsed = Duration::ZERO;
    let mut done = 0;
    while done < workload.jobs {
        let n = workload.round.min(workload.jobs - done);
        enqueue(n).await?;
        let clock = Instant::now();
        let (stop, running) = start(done);
        wait_done(&mut control, queue, done + n).await?;
        elapsed += clock.elapsed();
        let _ = stop.send(());
        let _ = running.await;
        done += n;
    }
    cleanup(&mut control, &format!("{queue}*")).await?;
    Ok((done, elapsed))
}

/// Plain apalis-redis with its defaults (batch `batch`; 10 is its default).
pub async fn apalis_redis_baseline(
    conn: RedisConnection,
    workload: Workload,
    batch: usize,
) -> Result<Row, BenchError> {
    // apalis-redis keeps its own, untagged layout, on one server only.
    let RedisConnection::Single(manager) = conn.clone() else {
        return Err(BenchError::Invalid(
            "plain apalis-redis runs on one Redis server, not a cluster".to_owned(),
        ));
    };
    let ns = namespace("apalis");
    let queue = format!("{ns}:noop");
    let config = apalis_redis::Config::default()
        .queue(&queue)
        .batch_size(batch);
    let enqueue = |n: u64| {
        let mut producer = RedisStorage::<Value>::new(manager.clone()).with_config(config.clone());
        async move {
            for chunk in payloads(n).chunks(1000) {
                producer
                    .push_bulk(chunk.to_vec())
                    .await
                    .map_err(|e| BenchError::Enqueue(e.to_string()))?;
            }
            Ok(())
        }
    };
    let start = |round: u64| {
        let backend = RedisStorage::<Value>::new(manager.clone()).with_config(config.clone());
        let worker = WorkerBuilder::new(format!("bench-apalis-{round}"))
            .backend(backend)
            .build(noop);
        let (stop, signal) = stop_switch();
        (stop, tokio::spawn(worker.run_until(signal)))
    };
    let (count, elapsed) = timed_rounds(&conn, &queue, workload, enqueue, start).await?;
    Ok(Row {
        name: format!("plain apalis-redis 1.0, batch {batch}"),
        count,
        elapsed,
    })
}

/// Herald's queue layer, with the worker setup `herald worker` uses
/// (concurrency limit, tasks spawned on the runtime).
pub async fn herald_queue(
    conn: RedisConnection,
    workload: Workload,
    batch: usize,
    concurrency: usize,
) -> Result<Row, BenchError> {
    let ns = namespace("herald");
    // Hash-tagged, as Herald names its queues, so it runs on a cluster too.
    let queue = format!("{{{ns}:noop}}");
    let mut config = QueueConfig::new(&queue);
    config.batch_size = batch;
    let enqueue = |n: u64| {
        let mut producer = RedisQueue::<Value>::new(conn.clone(), config.clone());
        async move {
            producer
                .push_bulk(payloads(n))
                .await
                .map_err(|e| BenchError::Enqueue(e.to_string()))
        }
    };
    let start = |round: u64| {
        let backend = RedisQueue::<Value>::new(conn.clone(), config.clone())
            .poll_with_interval(Duration::from_millis(100));
        let worker = WorkerBuilder::new(format!("bench-herald-{round}"))
            .backend(backend)
            .concurrency(concurrency)
            .parallelize(tokio::spawn)
            .build(noop);
        let (stop, signal) = stop_switch();
        (stop, tokio::spawn(worker.run_until(signal)))
    };
    let (count, elapsed) = timed_rounds(&conn, &queue, workload, enqueue, start).await?;
    Ok(Row {
        name: format!("herald queue, batch {batch}, concurrency {concurrency}"),
        count,
        elapsed,
    })
}
