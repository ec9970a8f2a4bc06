//! The operator's view of a queue: counts and one job's record here; dead
//! jobs, their filters and error groups in `dead.rs`; what an operator
//! changes (retry, discard, pause, resume) in `act.rs`, and the bulk
//! retries and discards that report progress in `bulk.rs`.
//!
//! Each of those reads or changes one shard's keys ([`ShardAdmin`]); a
//! queue spread over several shards is shown and changed as one by
//! [`QueueAdmin`] (`shards.rs`), which asks every shard and merges the
//! answers.
//!
//! Everything reads or changes the keys the workers use, through scripts
//! where a change must be atomic (a job is never both retried and
//! discarded, nor retried twice).

mod act;
mod bulk;
mod dead;
mod history;
mod listing;
mod shards;

pub use bulk::{BulkAction, BulkProgress, BulkState};
pub use dead::{DeadFilter, ErrorGroup};
pub use history::{Minute, HISTORY_MINUTES, LATENCY_BOUNDS_MS};
pub use listing::{JobState, ListedJob};
pub use shards::QueueAdmin;

use std::collections::HashMap;

use herald_jobs::RedisConnection;
use serde::Serialize;
use serde_json::Value;

use super::{now_secs, MinuteStat, QueueConfig, QueueError, TrimReason};

/// Counts of a queue's jobs per state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QueueStats {
    /// Full queue name.
    pub queue: String,
    /// Ready to run: in the queue list, or in the scheduled set with their
    /// time come (see [`ShardAdmin::stats`]).
    pub pending: u64,
    /// Waiting for a time still ahead (retries, delayed jobs).
    pub scheduled: u64,
    /// Leased to a worker (running or about to).
    pub running: u64,
    /// Jobs that ever succeeded (a counter: finished jobs themselves are
    /// removed after `retention.done_secs`).
    pub done: u64,
    /// Dead: failed for good, waiting for an operator.
    pub failed: u64,
    /// Dead jobs removed because they were older than
    /// `retention.dead_days`, for good.
    pub trimmed_by_age: u64,
    /// Dead jobs removed because the dead set held more than
    /// `retention.dead_max`, for good.
    pub trimmed_by_cap: u64,
    /// Jobs that succeeded in the last five minutes.
    pub done_last_5_min: u64,
    /// Jobs that failed for good in the last five minutes.
    pub failed_last_5_min: u64,
    /// Workers heart-beating on this queue.
    pub workers: u64,
    /// Paused by an operator: workers lease none of its jobs.
    pub paused: bool,
}

/// A dead job as the failed list shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadJob {
    /// Job id.
    pub id: String,
    /// The job's JSON payload.
    pub payload: Value,
    /// Runs made.
    pub attempts: u64,
    /// The last run's error.
    pub last_error: Option<String>,
    /// The id of its error group ([`ErrorGroup::id`]), if it has one.
    pub error_group: Option<String>,
    /// When it failed for good (Unix seconds).
    pub failed_at: Option<f64>,
    /// When it was enqueued (Unix seconds), if recorded.
    pub enqueued_at: Option<f64>,
    /// `Failed` (out of attempts) or `Killed` (refused as permanent).
    pub status: String,
}

/// Everything known about one job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobDetail {
    /// Job id.
    pub id: String,
    /// Where it is: pending, scheduled, running, done, failed or unknown.
    pub state: String,
    /// The JSON payload.
    pub payload: Value,
    /// The metadata hash.
    pub meta: HashMap<String, String>,
    /// Runs after a failure, oldest first.
    pub history: Vec<Value>,
}

/// What [`ShardAdmin::job`] reads in one pipeline: payload, metadata,
/// history, and membership of dead, done, scheduled and the queue.
type JobKeys = (
    Option<Vec<u8>>,
    HashMap<String, String>,
    Vec<String>,
    Option<f64>,
    Option<f64>,
    Option<f64>,
    Option<u64>,
);

/// Operator access to one shard of a queue (the whole queue when it has
/// one shard).
#[derive(Debug, Clone)]
struct ShardAdmin {
    conn: RedisConnection,
    config: QueueConfig,
}

/// The `Err` text of a stored result (`{"Err": "..."}`), if any.
fn error_of(result: Option<&String>) -> Option<String> {
    let value: Value = serde_json::from_str(result?).ok()?;
    value.get("Err")?.as_str().map(str::to_owned)
}

/// A number from a job's metadata (0 if absent or not a number).
fn meta_number(meta: &HashMap<String, String>, field: &str) -> u64 {
    meta.get(field).and_then(|a| a.parse().ok()).unwrap_or(0)
}

/// A time from a job's metadata (Unix seconds), if recorded.
fn meta_time(meta: &HashMap<String, String>, field: &str) -> Option<f64> {
    meta.get(field).and_then(|a| a.parse().ok())
}

/// The next pipeline answer as a count (0 if absent).
fn next_count(values: &mut impl Iterator<Item = redis::Value>) -> u64 {
    values
        .next()
        .and_then(|v| redis::from_redis_value::<u64>(v).ok())
        .unwrap_or(0)
}

/// The next pipeline answer (an MGET of counters) summed.
fn next_sum(values: &mut impl Iterator<Item = redis::Value>) -> u64 {
    values
        .next()
        .and_then(|v| redis::from_redis_value::<Vec<Option<u64>>>(v).ok())
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .sum()
}

fn parse_payload(bytes: Option<Vec<u8>>) -> Value {
    match bytes {
        Some(bytes) => serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned())),
        None => Value::Null,
    }
}

impl ShardAdmin {
    /// Admin access to the shard `config` describes.
    fn new(conn: RedisConnection, config: QueueConfig) -> Self {
        Self { conn, config }
    }

    fn error(&self, operation: &'static str) -> impl Fn(redis::RedisError) -> QueueError + '_ {
        move |source| QueueError::Command {
            operation,
            queue: self.config.name.clone(),
            source,
        }
    }

    /// Counts per state and recent throughput.
    ///
    /// `pending` is every job ready to run: those in the queue list and
    /// those in the scheduled set whose time has come (where apalis-redis
    /// producers put every job); `scheduled` only those whose time is still
    /// ahead.
    pub async fn stats(&self) -> Result<QueueStats, QueueError> {
        let mut conn = self.conn.clone();
        let workers: Vec<String> = redis::cmd("ZRANGE")
            .arg(self.config.workers_key())
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .map_err(self.error("list workers"))?;
        let now = now_secs();
        let minute = (now / 60.0).floor() as u64;
        let mut pipe = redis::pipe();
        // Jobs in the scheduled set whose time has come (a retry, a delayed
        // job, or a job an apalis-redis producer of an earlier release
        // wrote) move to the queue list only when a worker fetches. Counted
        // as scheduled, a backlog with no worker would show as "scheduled"
        // and an alert on pending jobs would never fire.
        let now_arg = format!("{now:.3}");
        pipe.llen(self.config.active_key())
            .zcount(self.config.scheduled_key(), "-inf", &now_arg)
            .zcount(self.config.scheduled_key(), format!("({now_arg}"), "+inf")
            .get(self.config.done_total_key())
            .zcard(self.config.dead_key())
            .get(self.config.trimmed_key(TrimReason::Age))
            .get(self.config.trimmed_key(TrimReason::Cap))
            .exists(self.config.paused_key());
        for stat in [MinuteStat::Done, MinuteStat::Failed] {
            let keys: Vec<String> = (0..5)
                .map(|back| self.config.minute_key(stat, minute - back))
                .collect();
            pipe.mget(keys);
        }
        for worker in &workers {
            pipe.scard(self.config.inflight_key(worker));
        }
        let values: Vec<redis::Value> = pipe
            .query_async(&mut conn)
            .await
            .map_err(self.error("count jobs"))?;
        let mut values = values.into_iter();
        let queued = next_count(&mut values);
        let (due, scheduled) = (next_count(&mut values), next_count(&mut values));
        let pending = queued + due;
        let (done, failed) = (next_count(&mut values), next_count(&mut values));
        let trimmed_by_age = next_count(&mut values);
        let trimmed_by_cap = next_count(&mut values);
        let paused = next_count(&mut values) > 0;
        let done_last_5_min = next_sum(&mut values);
        let failed_last_5_min = next_sum(&mut values);
        let running = values
            .map(|v| redis::from_redis_value::<u64>(v).unwrap_or(0))
            .sum();
        Ok(QueueStats {
            queue: self.config.display_name().to_owned(),
            pending,
            scheduled,
            running,
            done,
            failed,
            trimmed_by_age,
            trimmed_by_cap,
            done_last_5_min,
            failed_last_5_min,
            workers: workers.len() as u64,
            paused,
        })
    }

    /// The payload (parsed) and metadata of each job of `ids`, in order,
    /// in one round trip.
    async fn read_records<'a>(
        &self,
        ids: impl Iterator<Item = &'a str>,
    ) -> Result<Vec<(Value, HashMap<String, String>)>, QueueError> {
        let mut pipe = redis::pipe();
        let mut count = 0;
        for id in ids {
            pipe.hget(self.config.data_key(), id)
                .hgetall(self.config.meta_key(id));
            count += 1;
        }
        if count == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let values: Vec<redis::Value> = pipe
            .query_async(&mut conn)
            .await
            .map_err(self.error("read jobs"))?;
        let mut values = values.into_iter();
        Ok((0..count)
            .map(|_| {
                let payload: Option<Vec<u8>> = values
                    .next()
                    .and_then(|v| redis::from_redis_value(v).ok())
                    .flatten();
                let meta: HashMap<String, String> = values
                    .next()
                    .and_then(|v| redis::from_redis_value(v).ok())
                    .unwrap_or_default();
                (parse_payload(payload), meta)
            })
            .collect())
    }

    /// One job's payload, metadata, history and state; `None` if unknown.
    pub async fn job(&self, id: &str) -> Result<Option<JobDetail>, QueueError> {
        let mut conn = self.conn.clone();
        let (payload, meta, history, dead, done, scheduled, pending): JobKeys = redis::pipe()
            .hget(self.config.data_key(), id)
            .hgetall(self.config.meta_key(id))
            .lrange(self.config.history_key(id), 0, -1)
            .zscore(self.config.dead_key(), id)
            .zscore(self.config.done_key(), id)
            .zscore(self.config.scheduled_key(), id)
            .cmd("LPOS")
            .arg(self.config.active_key())
            .arg(id)
            .query_async(&mut conn)
            .await
            .map_err(self.error("read job"))?;
        if payload.is_none() && meta.is_empty() {
            return Ok(None);
        }
        let state = if dead.is_some() {
            "failed"
        } else if done.is_some() {
            "done"
        } else if let Some(run_at) = scheduled {
            // Due (see `stats`): waiting for a worker, not for its time.
            if run_at <= now_secs() {
                "pending"
            } else {
                "scheduled"
            }
        } else if pending.is_some() {
            "pending"
        } else if meta.get("status").map(String::as_str) == Some("Running") || payload.is_some() {
            "running"
        } else {
            "unknown"
        };
        Ok(Some(JobDetail {
            id: id.to_owned(),
            state: state.to_owned(),
            payload: parse_payload(payload),
            meta,
            history: history
                .iter()
                .map(|h| serde_json::from_str(h).unwrap_or(Value::String(h.clone())))
                .collect(),
        }))
    }
}
