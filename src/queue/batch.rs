//! Group commit for jobs that enqueue jobs: one script call for many.
//!
//! A running `send_message` job schedules its push before it ends. Done one
//! by one, that is one Redis round trip per message; [`BatchedSink`] lets
//! every job running at the same time share one. Each caller hands over its
//! task and waits for its own answer; one task takes everything handed over
//! while its previous call was in flight (at most [`super::PUSH_CHUNK`], one
//! script call) and enqueues it with `push_all`. There is no timer: a lone
//! task goes out at once. Each task keeps its idempotency key, which the
//! enqueue script checks per task, so a batch changes nothing about
//! duplicates; a failed call fails every caller in it, and their jobs are
//! retried like any job whose enqueue failed.

use apalis_core::{
    backend::{finalize::Durable, TaskSink},
    task::Task,
};
use tokio::sync::{mpsc, oneshot};

use super::{RedisQueue, PUSH_CHUNK};

/// Why a task could not be enqueued.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EnqueueError {
    /// Redis refused or failed the call that carried the task.
    #[error("enqueue into {queue} failed: {reason}")]
    Failed {
        /// Full queue name.
        queue: String,
        /// What went wrong.
        reason: String,
    },
    /// The batching task has stopped (the worker is shutting down).
    #[error("the enqueue batcher of {queue} has stopped")]
    Stopped {
        /// Full queue name.
        queue: String,
    },
}

type Reply = oneshot::Sender<Result<(), EnqueueError>>;

/// Enqueues tasks onto one queue in shared calls; cheap to clone. The
/// batching task ends when the last clone is dropped.
pub struct BatchedSink<Args> {
    queue: String,
    pending: mpsc::Sender<(Task<Args>, Reply)>,
}

impl<Args> Clone for BatchedSink<Args> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
            pending: self.pending.clone(),
        }
    }
}

impl<Args> std::fmt::Debug for BatchedSink<Args> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchedSink")
            .field("queue", &self.queue)
            .finish()
    }
}

impl<Args> BatchedSink<Args>
where
    Args: Send + 'static,
    RedisQueue<Args>: TaskSink<Args, Durable> + Send + 'static,
{
    /// Starts the batching task for `queue` on the current Tokio runtime.
    pub fn spawn(queue: RedisQueue<Args>) -> Self {
        let name = queue.queue_config().name.clone();
        let (pending, receiver) = mpsc::channel(PUSH_CHUNK * 4);
        tokio::spawn(run(queue, receiver));
        Self {
            queue: name,
            pending,
        }
    }

    /// Enqueues `task`, sharing the round trip with tasks handed over
    /// meanwhile; returns once Redis has it.
    pub async fn push_task(&self, task: Task<Args>) -> Result<(), EnqueueError> {
        let stopped = || EnqueueError::Stopped {
            queue: self.queue.clone(),
        };
        let (reply, answer) = oneshot::channel();
        self.pending
            .send((task, reply))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run<Args>(mut queue: RedisQueue<Args>, mut pending: mpsc::Receiver<(Task<Args>, Reply)>)
where
    Args: Send + 'static,
    RedisQueue<Args>: TaskSink<Args, Durable>,
{
    let mut batch = Vec::with_capacity(PUSH_CHUNK);
    while pending.recv_many(&mut batch, PUSH_CHUNK).await > 0 {
        let (tasks, replies): (Vec<_>, Vec<_>) = std::mem::take(&mut batch).into_iter().unzip();
        let result = queue
            .push_all(futures::stream::iter(tasks))
            .await
            .map_err(|e| EnqueueError::Failed {
                queue: queue.queue_config().name.clone(),
                reason: e.to_string(),
            });
        for reply in replies {
            // A caller that stopped waiting (its run was cut off) needs no answer.
            let _ = reply.send(result.clone());
        }
    }
}
