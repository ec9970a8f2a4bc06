//! [`AckLayer`]: tells a worker's backend that a job finished, and how.
//!
//! The layer wraps the job's service. When a job's future completes, the
//! layer sends one [`Finished`] (its id, attempt, final status, its result
//! as JSON or its error text, and its typed [`Handoff`], see
//! [`JobOutput`]) to the [`super::driver`] of the worker that leased it,
//! which records it in Redis with the next acknowledgement batch. Sending never waits: the channel is unbounded,
//! and what bounds it is the number of jobs the worker has leased.
//!
//! The event is sent before the job's future resolves, so by the time the
//! worker sees a job finish, its event is already waiting to be drained.
//!
//! A queue whose jobs hand off successors (see [`super::handoff`]) reports
//! them *in the order the worker started them*, which is the queue's order:
//! a job that finishes before an earlier one waits for the earlier one's
//! report to be sent before sending its own ([`StartOrder`]). Its work is
//! not held up, only its acknowledgement, so the successors reach the
//! downstream queue in the order of their predecessors (`docs/delivery.md`, "Delivery
//! guarantees").

use std::{
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use apalis_core::{
    error::BoxDynError,
    task::{status::Status, task_id::TaskId, Task},
};
use futures::{future::BoxFuture, FutureExt};
use serde_json::Value;
use tokio::sync::{mpsc::UnboundedSender, oneshot};
use tower::{Layer, Service};

use super::handoff::{Handoff, JobOutput};

/// A finished job, as its acknowledgement records it.
#[derive(Debug)]
pub(super) struct Finished {
    /// The job.
    pub task_id: TaskId,
    /// The run that finished (1 for the first).
    pub attempt: usize,
    /// apalis's verdict: `Killed` for an [`apalis::prelude::AbortError`].
    pub status: Status,
    /// What to record: the job's result, or its error text.
    pub result: Result<Value, String>,
    /// The successors a successful job hands off.
    pub handoff: Option<Handoff>,
    /// The shortest wait its error asked for ([`super::retry::NotBefore`]).
    pub not_before: Option<std::time::Duration>,
    /// Its error deferred it by this long, no attempt spent
    /// ([`super::retry::Defer`]).
    pub deferred: Option<std::time::Duration>,
    /// When it could first run, as its metadata says (Unix seconds: the
    /// time a scheduled job fell due, else its enqueue), for the latency
    /// the acknowledgement records; `None` when the fetch did not say.
    pub since: Option<String>,
}

impl Finished {
    /// The `since` of a job whose metadata is `metadata`: its `due_at`,
    /// else its `enqueued_at` (what the enqueue script wrote).
    pub fn since_of(metadata: &apalis_core::task::metadata::MetadataStore) -> Option<String> {
        metadata
            .get("due_at")
            .or_else(|| metadata.get("enqueued_at"))
            .map(str::to_owned)
    }
}

/// Where finished jobs are reported.
pub(super) type FinishedSender = UnboundedSender<Finished>;

/// Reports every finished job to the worker's backend; see the module docs.
#[derive(Debug, Clone)]
pub struct AckLayer {
    finished: FinishedSender,
    order: Option<StartOrder>,
}

impl AckLayer {
    /// Reports finished jobs to `finished`; with `in_start_order`, in the
    /// order they were started (see the module docs).
    pub(super) fn new(finished: FinishedSender, in_start_order: bool) -> Self {
        Self {
            finished,
            order: in_start_order.then(StartOrder::default),
        }
    }
}

/// The queue of turns that keeps reports in start order: each started job
/// takes the next turn and reports once the turn before it has ended.
/// Shared by every clone of a worker's service.
#[derive(Debug, Clone, Default)]
struct StartOrder {
    /// Ends when the most recently started job has reported.
    last: Arc<Mutex<Option<oneshot::Receiver<()>>>>,
}

impl StartOrder {
    /// The next turn. Must be taken when the job starts (in `call`), which
    /// apalis does in the order the backend yields jobs.
    fn take_turn(&self) -> Turn {
        let (ended, this) = oneshot::channel();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        Turn {
            previous: last.replace(this),
            _ended: ended,
        }
    }
}

/// A job's place in [`StartOrder`]; dropping it ends the turn, whether the
/// job reported or its future was dropped.
struct Turn {
    previous: Option<oneshot::Receiver<()>>,
    _ended: oneshot::Sender<()>,
}

impl Turn {
    /// Waits until the previous job's turn has ended.
    async fn wait_for_previous(&mut self) {
        if let Some(previous) = self.previous.take() {
            // An error means the sender was dropped: the turn ended.
            let _ = previous.await;
        }
    }
}

impl<S> Layer<S> for AckLayer {
    type Service = AckService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AckService {
            inner,
            finished: self.finished.clone(),
            order: self.order.clone(),
        }
    }
}

/// The service [`AckLayer`] builds around a job's service.
#[derive(Debug, Clone)]
pub struct AckService<S> {
    inner: S,
    finished: FinishedSender,
    order: Option<StartOrder>,
}

impl<S, Args> Service<Task<Args>> for AckService<S>
where
    S: Service<Task<Args>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxDynError>,
    S::Response: JobOutput,
    Args: Send + 'static,
{
    type Response = ();
    type Error = BoxDynError;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, task: Task<Args>) -> Self::Future {
        let ctx = task.ctx().clone();
        let since = Finished::since_of(ctx.metadata());
        let mut turn = self.order.as_ref().map(StartOrder::take_turn);
        let job = self.inner.call(task);
        let finished = self.finished.clone();
        async move {
            let outcome: Result<S::Response, BoxDynError> = job.await.map_err(Into::into);
            if let Some(turn) = turn.as_mut() {
                turn.wait_for_previous().await;
            }
            // apalis hands the response on to nothing that reads it; its
            // value is what the acknowledgement records.
            let (outcome, result, handoff, not_before, deferred) = match outcome {
                Ok(response) => {
                    let (value, handoff) = response.into_ack();
                    (Ok(()), Ok(value), handoff, None, None)
                }
                Err(error) => {
                    let text = error.to_string();
                    let not_before = super::retry::NotBefore::find(error.as_ref());
                    let deferred = super::retry::Defer::find(error.as_ref());
                    (Err(error), Err(text), None, not_before, deferred)
                }
            };
            match ctx.task_id() {
                Some(task_id) => {
                    let event = Finished {
                        task_id: task_id.clone(),
                        attempt: ctx.attempt(),
                        status: ctx.status(),
                        result,
                        handoff,
                        not_before,
                        deferred,
                        since,
                    };
                    // A closed channel means the worker stopped; its lease
                    // runs out and the job runs again elsewhere.
                    if finished.send(event).is_err() {
                        tracing::warn!(job_id = %task_id, "job finished after its worker stopped; it will run again");
                    }
                }
                None => tracing::error!("a job without an id finished; it cannot be acknowledged"),
            }
            // The next job may report now.
            drop(turn);
            outcome
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apalis_core::task::metadata::MetadataStore;

    #[test]
    fn a_job_could_first_run_when_it_fell_due_else_when_it_was_enqueued() {
        let metadata = |fields: &[(&str, &str)]| {
            MetadataStore::from_map(
                fields
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            )
        };
        let enqueued = metadata(&[("enqueued_at", "100.5"), ("attempts", "0")]);
        assert_eq!(Finished::since_of(&enqueued).as_deref(), Some("100.5"));
        let scheduled = metadata(&[("enqueued_at", "100.5"), ("due_at", "160")]);
        assert_eq!(Finished::since_of(&scheduled).as_deref(), Some("160"));
        assert_eq!(Finished::since_of(&metadata(&[])), None);
    }

    #[tokio::test]
    async fn a_turn_waits_for_the_one_before_it_and_no_longer() {
        let order = StartOrder::default();
        let first = order.take_turn();
        let mut second = order.take_turn();
        let mut third = order.take_turn();

        let waiting = tokio::spawn(async move {
            second.wait_for_previous().await;
            second
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "the second turn did not wait");
        drop(first);
        let second = waiting.await.expect("no panic");

        let waiting = tokio::spawn(async move { third.wait_for_previous().await });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "the third turn did not wait");
        // A turn whose job was dropped unfinished ends all the same.
        drop(second);
        waiting.await.expect("no panic");

        // The first turn of all has nothing to wait for.
        let mut alone = StartOrder::default().take_turn();
        alone.wait_for_previous().await;
    }
}
