//! The Redis half of [`super::RedisQueue`]: one queue's connection and
//! configuration, and the worker-side calls over the scripts in `lua/`.
//!
//! The [`super::driver`] makes these calls: `register` once (it upgrades the
//! key layout of an earlier version), `heartbeat`
//! on the heartbeat interval (it carries the orphan recovery and the
//! retention), `fetch_next`
//! whenever the worker wants work, `release_ids` for leased jobs that never
//! started, `reconcile` after a fetch whose answer was lost. Enqueuing is in
//! [`super::enqueue`], acknowledging in [`super::acknowledge`].

use std::{
    collections::{HashMap, HashSet},
    str::FromStr,
    sync::{Arc, LazyLock},
    time::Duration,
};

use apalis_core::{
    task::{builder::TaskBuilder, metadata::MetadataStore, status::Status, task_id::TaskId, Task},
    worker::context::WorkerContext,
};
use herald_jobs::RedisConnection;
use redis::Script;

use super::{
    doorbell::Doorbell, now_secs, QueueConfig, QueueError, PROMOTE_LIMIT, PUSH_CHUNK, RECOVER_LIMIT,
};

static FETCH: LazyLock<Script> =
    LazyLock::new(|| herald_jobs::claims::with_claims(include_str!("lua/fetch.lua")));
static RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/release.lua")));
static RECOVER: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/recover.lua")));

/// Most recover calls one heartbeat makes (each moves up to
/// [`RECOVER_LIMIT`] jobs); the next heartbeat continues.
const RECOVER_CALLS_PER_HEARTBEAT: usize = 50;

/// What one fetch leased, and when the queue's next scheduled job is due.
pub(super) struct Fetched {
    /// The leased jobs, oldest first.
    pub tasks: Vec<Task<Vec<u8>>>,
    /// Unix seconds at which the earliest scheduled job is due, if any.
    pub next_due: Option<f64>,
}

/// Connection and configuration of one queue.
#[derive(Debug, Clone)]
pub struct QueuePersistence {
    pub(super) conn: RedisConnection,
    pub(super) config: Arc<QueueConfig>,
    /// Rung after every enqueue onto this queue.
    pub(super) doorbell: Doorbell,
    /// Where this queue's jobs hand their successors
    /// ([`super::Handoff`]), and that queue's doorbell.
    pub(super) downstream: Option<(Arc<QueueConfig>, Doorbell)>,
    /// The Redis URL an idle worker opens its blocking connection to, to
    /// wait on the queue's wake list; without one it sleeps
    /// [`QueueConfig::idle_wait`] instead.
    pub(super) wake_url: Option<Arc<str>>,
}

impl QueuePersistence {
    pub(super) fn command_error(
        &self,
        operation: &'static str,
    ) -> impl Fn(redis::RedisError) -> QueueError + '_ {
        move |source| QueueError::Command {
            operation,
            queue: self.config.name.clone(),
            source,
        }
    }

    pub(super) fn protocol_error(&self, detail: impl Into<String>) -> QueueError {
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
                .key(self.config.wake_key())
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

    /// How long the Redis server holding the queue (on a cluster, the
    /// primary that owns its slot) has been running (`INFO server`).
    async fn uptime(&mut self) -> Result<Duration, QueueError> {
        let info = self
            .conn
            .info_for_key("server", &self.config.workers_key())
            .await
            .map_err(self.command_error("read server uptime"))?;
        info.lines()
            .find_map(|line| line.strip_prefix("uptime_in_seconds:"))
            .and_then(|value| value.trim().parse().ok())
            .map(Duration::from_secs)
            .ok_or_else(|| self.protocol_error("INFO server has no uptime_in_seconds"))
    }

    /// Announces `worker` (heartbeat and description), then hands back
    /// the jobs of workers that stopped heart-beating.
    pub(super) async fn register(&mut self, worker: &WorkerContext) -> Result<(), QueueError> {
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
        self.upgrade_layout().await?;
        self.recover_orphans(worker.name()).await?;
        Ok(())
    }

    /// Reports `worker` alive, then hands back orphaned jobs and applies
    /// the retention ([`super::retention`]).
    pub(super) async fn heartbeat(&mut self, worker: &WorkerContext) -> Result<(), QueueError> {
        // ZADD also re-registers a worker that was presumed dead (a long
        // pause): its old leases were handed out, and its late
        // acknowledgements are ignored by the complete script.
        self.beat(worker).await?;
        self.recover_orphans(worker.name()).await?;
        self.apply_retention(worker.name()).await?;
        Ok(())
    }

    /// Leases the next batch to `worker` (promoting due scheduled jobs
    /// first); with a [`QueueConfig::fetch_lookup`], each job carries what
    /// it found.
    pub(super) async fn fetch_next(
        &mut self,
        worker: &WorkerContext,
    ) -> Result<Fetched, QueueError> {
        let answer: Vec<redis::Value> = FETCH
            .key(self.config.workers_key())
            .key(self.config.active_key())
            .key(self.config.inflight_key(worker.name()))
            .key(self.config.data_key())
            .key(self.config.scheduled_key())
            .key(self.config.paused_key())
            .key(self.config.wake_key())
            .arg(format!("{:.3}", now_secs()))
            .arg(self.config.batch_size)
            .arg(worker.name())
            .arg(PROMOTE_LIMIT)
            .arg(self.config.meta_prefix())
            .arg(self.config.fetch_lookup.as_deref().unwrap_or(""))
            .invoke_async(&mut self.conn)
            .await
            .map_err(self.command_error("fetch"))?;
        self.parse_fetched(answer, worker.name())
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
    ) -> Result<Fetched, QueueError> {
        let [ids, payloads, metas, next_due]: [redis::Value; 4] = answer
            .try_into()
            .map_err(|_| self.protocol_error("fetch did not return 4 values"))?;
        let next_due: String = redis::from_redis_value(next_due)
            .map_err(|e| self.protocol_error(format!("fetch next due time: {e}")))?;
        let next_due = next_due.parse::<f64>().ok();
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
        Ok(Fetched { tasks, next_due })
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
                .key(self.config.wake_key())
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
}
