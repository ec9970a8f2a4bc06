//! The Redis half of [`super::RedisQueue`]: apalis's `Persistence` trait,
//! implemented with the scripts in `lua/`.
//!
//! apalis's `Persisted` drives these calls: `register` once, `heartbeat`
//! on the heartbeat interval, `fetch_next` whenever the worker wants work,
//! `handle_events` with batched acknowledgements (and the [`Handoff`]s they
//! carry), `reenqueue_abandoned` on
//! shutdown for leased jobs that never started, `push_tasks` to enqueue.

use std::{
    collections::{HashMap, HashSet},
    str::FromStr,
    sync::{Arc, LazyLock},
    time::Duration,
};

use apalis_core::{
    backend::persistence::{Persistence, TaskEvent},
    task::{builder::TaskBuilder, metadata::MetadataStore, status::Status, task_id::TaskId, Task},
    worker::context::WorkerContext,
};
use redis::{aio::ConnectionManager, Script};
use serde_json::Value;

use super::{
    doorbell::Doorbell, handoff::Handoff, now_secs, retry::Outcome, QueueConfig, QueueError,
    COMPLETE_CHUNK, HISTORY_LEN, PROMOTE_LIMIT, PUSH_CHUNK, RECOVER_LIMIT,
};

static FETCH: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/fetch.lua")));
static COMPLETE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/complete.lua")));
static RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/release.lua")));
static RECOVER: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/recover.lua")));
static PUSH: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/push.lua")));

/// Most recover calls one heartbeat makes (each moves up to
/// [`RECOVER_LIMIT`] jobs); the next heartbeat continues.
const RECOVER_CALLS_PER_HEARTBEAT: usize = 50;

/// Connection and configuration of one queue.
#[derive(Debug, Clone)]
pub struct QueuePersistence {
    pub(super) conn: ConnectionManager,
    pub(super) config: Arc<QueueConfig>,
    /// Rung after every enqueue onto this queue.
    pub(super) doorbell: Doorbell,
    /// Where this queue's jobs hand their successors ([`Handoff`]), and
    /// that queue's doorbell.
    pub(super) downstream: Option<(Arc<QueueConfig>, Doorbell)>,
}

/// One job for the enqueue script.
struct NewJob {
    id: String,
    payload: Vec<u8>,
    /// Unix seconds; 0 (or any time not after now) means due at once.
    run_at: u64,
    idempotency_key: String,
    metadata: Vec<(String, String)>,
}

impl NewJob {
    /// The fields every job's metadata hash starts with.
    fn metadata(
        attempts: usize,
        max_attempts: usize,
        idempotency_key: &str,
        now: f64,
    ) -> Vec<(String, String)> {
        vec![
            ("attempts".into(), attempts.to_string()),
            ("max_attempts".into(), max_attempts.to_string()),
            ("status".into(), "Pending".into()),
            ("idempotency_key".into(), idempotency_key.to_owned()),
            ("enqueued_at".into(), format!("{now:.3}")),
        ]
    }
}

/// Enqueues `jobs` on the queue `config` describes, in bounded script calls.
async fn enqueue(
    conn: &mut ConnectionManager,
    config: &QueueConfig,
    jobs: &[NewJob],
    now: f64,
) -> Result<(), QueueError> {
    let ttl = config.dedup_ttl.map(|d| d.as_secs()).unwrap_or(0);
    for chunk in jobs.chunks(PUSH_CHUNK) {
        let mut call = PUSH.prepare_invoke();
        call.key(config.data_key())
            .key(config.active_key())
            .key(config.scheduled_key())
            .arg(format!("{now:.3}"))
            .arg(config.meta_prefix())
            .arg(config.idempotency_prefix())
            .arg(ttl);
        for job in chunk {
            call.arg(&job.id)
                .arg(&job.payload)
                .arg(job.run_at)
                .arg(&job.idempotency_key)
                .arg(job.metadata.len());
            for (field, value) in &job.metadata {
                call.arg(field).arg(value);
            }
        }
        call.invoke_async::<(u64, u64, u64)>(conn)
            .await
            .map_err(|source| QueueError::Command {
                operation: "enqueue",
                queue: config.name.clone(),
                source,
            })?;
    }
    Ok(())
}

impl QueuePersistence {
    fn command_error(
        &self,
        operation: &'static str,
    ) -> impl Fn(redis::RedisError) -> QueueError + '_ {
        move |source| QueueError::Command {
            operation,
            queue: self.config.name.clone(),
            source,
        }
    }

    fn protocol_error(&self, detail: impl Into<String>) -> QueueError {
        QueueError::Protocol {
            queue: self.config.name.clone(),
            detail: detail.into(),
        }
    }

    /// Hands back the jobs of workers that stopped heart-beating, in bounded
    /// calls. Returns how many jobs went back to the queue.
    ///
    /// Nothing is recovered while Redis has been up for less than the
    /// heartbeat timeout: after a restart every worker's last heartbeat is
    /// as old as the outage, and live workers need one timeout to beat
    /// again before their jobs could be taken for orphans.
    pub(super) async fn recover_orphans(&mut self, caller: &str) -> Result<u64, QueueError> {
        let uptime = self.uptime().await?;
        if uptime < self.config.orphan_after() {
            tracing::debug!(queue = %self.config.name, uptime_secs = uptime.as_secs(), "Redis restarted recently; not recovering orphans yet");
            return Ok(0);
        }
        let deadline = now_secs() - self.config.orphan_after().as_secs_f64();
        let mut total = 0;
        for _ in 0..RECOVER_CALLS_PER_HEARTBEAT {
            let (moved, more): (u64, u8) = RECOVER
                .key(self.config.workers_key())
                .key(self.config.active_key())
                .arg(format!("{deadline:.3}"))
                .arg(self.config.inflight_prefix())
                .arg(self.config.meta_prefix())
                .arg(RECOVER_LIMIT)
                .arg(caller)
                .invoke_async(&mut self.conn)
                .await
                .map_err(self.command_error("recover orphaned jobs"))?;
            total += moved;
            if more == 0 {
                break;
            }
        }
        if total > 0 {
            tracing::warn!(queue = %self.config.name, jobs = total, "re-queued jobs of workers that stopped heart-beating");
        }
        Ok(total)
    }

    /// How long the Redis server has been running (`INFO server`).
    async fn uptime(&mut self) -> Result<Duration, QueueError> {
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut self.conn)
            .await
            .map_err(self.command_error("read server uptime"))?;
        info.lines()
            .find_map(|line| line.strip_prefix("uptime_in_seconds:"))
            .and_then(|value| value.trim().parse().ok())
            .map(Duration::from_secs)
            .ok_or_else(|| self.protocol_error("INFO server has no uptime_in_seconds"))
    }

    async fn beat(&mut self, worker: &WorkerContext) -> Result<(), QueueError> {
        redis::cmd("ZADD")
            .arg(self.config.workers_key())
            .arg(format!("{:.3}", now_secs()))
            .arg(worker.name())
            .query_async::<()>(&mut self.conn)
            .await
            .map_err(self.command_error("heartbeat"))
    }

    /// Turns the fetch script's answer into apalis tasks.
    fn parse_fetched(
        &self,
        answer: Vec<redis::Value>,
        worker: &str,
    ) -> Result<Vec<Task<Vec<u8>>>, QueueError> {
        let [ids, payloads, metas]: [redis::Value; 3] = answer
            .try_into()
            .map_err(|_| self.protocol_error("fetch did not return 3 values"))?;
        let ids: Vec<String> = redis::from_redis_value(ids)
            .map_err(|e| self.protocol_error(format!("fetch ids: {e}")))?;
        let payloads: Vec<Vec<u8>> = redis::from_redis_value(payloads)
            .map_err(|e| self.protocol_error(format!("fetch payloads: {e}")))?;
        let metas: Vec<Vec<String>> = redis::from_redis_value(metas)
            .map_err(|e| self.protocol_error(format!("fetch metadata: {e}")))?;
        if ids.len() != payloads.len() || ids.len() != metas.len() {
            return Err(self.protocol_error("fetch returned lists of different lengths"));
        }
        let mut tasks = Vec::with_capacity(ids.len());
        for ((id, payload), flat) in ids.into_iter().zip(payloads).zip(metas) {
            let mut meta: HashMap<String, String> = flat
                .chunks_exact(2)
                .map(|pair| (pair[0].clone(), pair[1].clone()))
                .collect();
            let number = |meta: &mut HashMap<String, String>, field: &str| {
                meta.remove(field)
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0)
            };
            let attempts = number(&mut meta, "attempts");
            let max_attempts = match number(&mut meta, "max_attempts") {
                0 => self.config.retry.max_attempts,
                n => n,
            };
            meta.remove("status");
            let idempotency_key = meta.remove("idempotency_key").filter(|k| !k.is_empty());
            let task_id = TaskId::from_str(&id).unwrap_or_else(|_| TaskId::from_string(&id));
            let mut builder = TaskBuilder::new(payload)
                .task_id(task_id)
                .attempt(attempts)
                .max_attempts(max_attempts)
                .status(Status::Running)
                .lock_by(Some(worker.to_owned()))
                .with_metadata(MetadataStore::from_map(meta));
            if let Some(key) = idempotency_key {
                builder = builder.idempotency_key(key);
            }
            tasks.push(builder.build());
        }
        Ok(tasks)
    }
}

/// One acknowledgement, ready for the complete script.
struct Ack {
    id: String,
    outcome: Outcome,
    status: &'static str,
    attempts: usize,
    result: String,
    history: String,
}

impl QueuePersistence {
    /// The acknowledgement of `result`. A successful result that hands jobs
    /// off has them appended to `handed_off` and records only their ids; a
    /// hand-off that cannot be honoured fails the job instead, so its
    /// successor is never dropped silently.
    fn ack(
        &self,
        result: &apalis_core::backend::TaskResult<Value>,
        now: f64,
        handed_off: &mut Vec<NewJob>,
    ) -> Ack {
        let recorded = match &result.result {
            Ok(value) => self.take_handoff(value, now, handed_off),
            Err(_) => None,
        };
        let recorded = recorded.as_ref().unwrap_or(&result.result);
        let succeeded = recorded.is_ok();
        let aborted = matches!(result.status, Status::Killed);
        let outcome =
            self.config
                .retry
                .outcome(succeeded, aborted, result.attempt, fastrand::f64());
        let status = match (outcome, aborted) {
            (Outcome::Done, _) => "Done",
            (Outcome::Retry(_), _) => "Pending",
            (Outcome::Dead, true) => "Killed",
            (Outcome::Dead, false) => "Failed",
        };
        // Successful first runs need no history: the metadata says it all.
        let history = match recorded.as_ref() {
            Ok(_) if result.attempt <= 1 => String::new(),
            outcome => serde_json::json!({
                "attempt": result.attempt,
                "at": now,
                "status": status,
                "error": outcome.as_ref().err(),
            })
            .to_string(),
        };
        Ack {
            id: result.task_id.to_string(),
            outcome,
            status,
            attempts: result.attempt,
            result: serde_json::to_string(recorded).unwrap_or_else(|_| "null".into()),
            history,
        }
    }

    /// Moves the jobs `value` hands off into `handed_off`; returns what to
    /// record instead of `value`, or `None` when it hands nothing off.
    fn take_handoff(
        &self,
        value: &Value,
        now: f64,
        handed_off: &mut Vec<NewJob>,
    ) -> Option<Result<Value, String>> {
        let handoff = match Handoff::in_result(value)? {
            Ok(handoff) => handoff,
            Err(e) => return Some(Err(format!("the job's hand-off is malformed: {e}"))),
        };
        let Some((downstream, _)) = &self.downstream else {
            return Some(Err(format!(
                "the job handed off {} job(s) but {} has no downstream queue",
                handoff.handoff.len(),
                self.config.name
            )));
        };
        // All of the job's hand-offs or none of them.
        let mut jobs = Vec::with_capacity(handoff.handoff.len());
        for job in &handoff.handoff {
            let payload = match serde_json::to_vec(&job.payload) {
                Ok(payload) => payload,
                Err(e) => return Some(Err(format!("the job's hand-off is malformed: {e}"))),
            };
            jobs.push(NewJob {
                id: job.id.clone(),
                payload,
                run_at: 0,
                idempotency_key: job.idempotency_key.clone(),
                metadata: NewJob::metadata(
                    0,
                    downstream.retry.max_attempts,
                    &job.idempotency_key,
                    now,
                ),
            });
        }
        handed_off.extend(jobs);
        Some(Ok(handoff.summary(&downstream.name)))
    }

    /// Gives the jobs `ids`, leased to `worker` but never started, back to
    /// the head of the queue in their order. Returns how many went back.
    pub(super) async fn release_ids(
        &mut self,
        ids: &[String],
        worker: &WorkerContext,
    ) -> Result<u64, QueueError> {
        let mut released = 0;
        for chunk in ids.chunks(PUSH_CHUNK) {
            let mut call = RELEASE.prepare_invoke();
            call.key(self.config.inflight_key(worker.name()))
                .key(self.config.active_key())
                .arg(self.config.meta_prefix());
            for id in chunk {
                call.arg(id);
            }
            released += call
                .invoke_async::<u64>(&mut self.conn)
                .await
                .map_err(self.command_error("release leases"))?;
        }
        Ok(released)
    }

    /// Hands back every job leased to `worker` in Redis that `held` does
    /// not list: jobs a fetch leased whose answer was lost with the
    /// connection. Returns how many went back.
    pub(super) async fn reconcile(
        &mut self,
        held: &HashSet<String>,
        worker: &WorkerContext,
    ) -> Result<u64, QueueError> {
        let leased: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.config.inflight_key(worker.name()))
            .query_async(&mut self.conn)
            .await
            .map_err(self.command_error("read leases"))?;
        let unknown: Vec<String> = leased.into_iter().filter(|id| !held.contains(id)).collect();
        if unknown.is_empty() {
            return Ok(0);
        }
        self.release_ids(&unknown, worker).await
    }

    /// Records finished jobs: enqueues their hand-offs, then their outcomes,
    /// in bounded calls. Safe to call again with the same events after a
    /// failure (`retrying`): hand-offs are enqueued under idempotency keys,
    /// and a job an earlier try already recorded is not recorded twice.
    pub(super) async fn acknowledge(
        &mut self,
        events: &[TaskEvent<Value>],
        worker: &WorkerContext,
        retrying: bool,
    ) -> Result<(), QueueError> {
        let now = now_secs();
        let mut handed_off = Vec::new();
        let acks: Vec<Ack> = events
            .iter()
            .filter_map(|event| match event {
                TaskEvent::Complete(result) => Some(self.ack(result, now, &mut handed_off)),
                _ => None,
            })
            .collect();
        // Successors first: a job is recorded done only once they are queued.
        if let (Some((downstream, doorbell)), false) = (&self.downstream, handed_off.is_empty()) {
            enqueue(&mut self.conn, downstream, &handed_off, now).await?;
            doorbell.ring();
        }
        for chunk in acks.chunks(COMPLETE_CHUNK) {
            let mut call = COMPLETE.prepare_invoke();
            call.key(self.config.inflight_key(worker.name()))
                .key(self.config.done_key())
                .key(self.config.dead_key())
                .key(self.config.scheduled_key())
                .arg(format!("{now:.3}"))
                .arg(self.config.meta_prefix())
                .arg(self.config.history_prefix())
                .arg(HISTORY_LEN)
                .arg(self.config.stats_prefix());
            for ack in chunk {
                let outcome = match ack.outcome {
                    Outcome::Done => "done",
                    Outcome::Retry(_) => "retry",
                    Outcome::Dead => "dead",
                };
                let retry_at = match ack.outcome {
                    Outcome::Retry(delay) => now + delay.as_secs_f64(),
                    _ => 0.0,
                };
                call.arg(&ack.id)
                    .arg(outcome)
                    .arg(ack.status)
                    .arg(ack.attempts)
                    .arg(&ack.result)
                    .arg(format!("{retry_at:.3}"))
                    .arg(&ack.history);
            }
            let (_recorded, lost): (u64, u64) = call
                .invoke_async(&mut self.conn)
                .await
                .map_err(self.command_error("acknowledge"))?;
            if lost > 0 && retrying {
                tracing::info!(
                    queue = %self.config.name,
                    worker = worker.name(),
                    jobs = lost,
                    "already recorded by the try whose answer was lost (or handed to another worker meanwhile)"
                );
            } else if lost > 0 {
                tracing::warn!(
                    queue = %self.config.name,
                    worker = worker.name(),
                    jobs = lost,
                    "results ignored: these jobs were handed to another worker while this one was presumed dead"
                );
            }
        }
        Ok(())
    }
}

impl Persistence for QueuePersistence {
    type Compact = Vec<u8>;
    type Response = Value;
    type Error = QueueError;

    async fn register(&mut self, worker: &WorkerContext) -> Result<(), QueueError> {
        self.beat(worker).await?;
        redis::cmd("HSET")
            .arg(self.config.worker_meta_key(worker.name()))
            .arg("backend")
            .arg("herald-redis")
            .arg("service")
            .arg(worker.get_service())
            .arg("started_at")
            .arg(format!("{:.3}", now_secs()))
            .query_async::<()>(&mut self.conn)
            .await
            .map_err(self.command_error("register worker"))?;
        self.recover_orphans(worker.name()).await?;
        Ok(())
    }

    async fn heartbeat(&mut self, worker: &WorkerContext) -> Result<(), QueueError> {
        // ZADD also re-registers a worker that was presumed dead (a long
        // pause): its old leases were handed out, and its late
        // acknowledgements are ignored by the complete script.
        self.beat(worker).await?;
        self.recover_orphans(worker.name()).await?;
        Ok(())
    }

    async fn fetch_next(
        &mut self,
        worker: &WorkerContext,
    ) -> Result<Vec<Task<Vec<u8>>>, QueueError> {
        let answer: Vec<redis::Value> = FETCH
            .key(self.config.workers_key())
            .key(self.config.active_key())
            .key(self.config.inflight_key(worker.name()))
            .key(self.config.data_key())
            .key(self.config.scheduled_key())
            .arg(format!("{:.3}", now_secs()))
            .arg(self.config.batch_size)
            .arg(worker.name())
            .arg(PROMOTE_LIMIT)
            .arg(self.config.meta_prefix())
            .arg(if self.config.receipts {
                self.config.delivered_prefix()
            } else {
                String::new()
            })
            .invoke_async(&mut self.conn)
            .await
            .map_err(self.command_error("fetch"))?;
        self.parse_fetched(answer, worker.name())
    }

    async fn reenqueue_abandoned(
        &mut self,
        tasks: Vec<Task<Vec<u8>>>,
        worker: &WorkerContext,
    ) -> Result<u64, QueueError> {
        let ids: Vec<String> = tasks
            .iter()
            .filter_map(|t| t.task_id().map(|id| id.to_string()))
            .collect();
        self.release_ids(&ids, worker).await
    }

    async fn handle_events(
        &mut self,
        events: Vec<TaskEvent<Value>>,
        worker: &WorkerContext,
    ) -> Result<(), QueueError> {
        self.acknowledge(&events, worker, false).await
    }

    async fn push_tasks(&mut self, tasks: Vec<Task<Vec<u8>>>) -> Result<(), QueueError> {
        let now = now_secs();
        let jobs: Vec<NewJob> = tasks
            .into_iter()
            .map(|task| {
                let idempotency_key = task.idempotency_key().unwrap_or("").to_owned();
                let max_attempts = task
                    .max_attempts()
                    .unwrap_or(self.config.retry.max_attempts);
                let mut metadata =
                    NewJob::metadata(task.attempt(), max_attempts, &idempotency_key, now);
                metadata.extend(task.metadata().iter().map(|(k, v)| (k.clone(), v.clone())));
                NewJob {
                    id: task
                        .task_id()
                        .map(|id| id.to_string())
                        .unwrap_or_else(|| ulid::Ulid::generate().to_string()),
                    run_at: task.run_at().unwrap_or(0),
                    payload: task.args,
                    idempotency_key,
                    metadata,
                }
            })
            .collect();
        enqueue(&mut self.conn, &self.config, &jobs, now).await?;
        self.doorbell.ring();
        Ok(())
    }
}
