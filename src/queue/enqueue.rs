//! Enqueuing: new jobs (from a producer's `TaskSink`, or a finished job's
//! hand-offs) written by the enqueue script, in bounded calls.

use std::sync::LazyLock;

use apalis_core::task::Task;
use redis::{aio::ConnectionManager, Script};

use super::{now_secs, persistence::QueuePersistence, QueueConfig, QueueError, PUSH_CHUNK};

static PUSH: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/push.lua")));

/// One job for the enqueue script.
pub(super) struct NewJob {
    pub(super) id: String,
    pub(super) payload: Vec<u8>,
    /// Unix seconds; 0 (or any time not after now) means due at once.
    pub(super) run_at: u64,
    pub(super) idempotency_key: String,
    pub(super) metadata: Vec<(String, String)>,
}

impl NewJob {
    /// The fields every job's metadata hash starts with.
    pub(super) fn metadata(
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
pub(super) async fn enqueue(
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
    /// Enqueues `tasks` (a producer's jobs) and wakes this process's worker
    /// of the queue.
    pub(super) async fn push_tasks(&mut self, tasks: Vec<Task<Vec<u8>>>) -> Result<(), QueueError> {
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
