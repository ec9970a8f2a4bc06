//! Enqueuing: new jobs (from a producer's `TaskSink`, or a finished job's
//! hand-offs) written by the enqueue script herald-jobs shares with every
//! producer ([`herald_jobs::enqueue`]).

use apalis_core::task::Task;
use herald_jobs::enqueue::Enqueued;
pub(super) use herald_jobs::enqueue::NewJob;
use herald_jobs::RedisConnection;

use super::{now_secs, persistence::QueuePersistence, QueueConfig, QueueError};

/// Enqueues `jobs` on the queue `config` describes, in bounded script
/// calls; ready jobs put a wake token on the queue's wake list.
pub(super) async fn enqueue(
    conn: &mut RedisConnection,
    config: &QueueConfig,
    jobs: &[NewJob],
    now: f64,
) -> Result<Enqueued, QueueError> {
    herald_jobs::enqueue::enqueue(conn, &config.name, config.dedup_ttl, jobs, now)
        .await
        .map_err(|source| QueueError::Command {
            operation: "enqueue",
            queue: config.name.clone(),
            source,
        })
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
