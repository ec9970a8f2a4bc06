//! [`AckLayer`]: tells a worker's backend that a job finished, and how.
//!
//! The layer wraps the job's service. When a job's future completes, the
//! layer sends one [`TaskEvent::Complete`] (its id, attempt, final status
//! and JSON-encoded result or error text) to the [`super::driver`] of the
//! worker that leased it, which records it in Redis with the next
//! acknowledgement batch. Sending never waits: the channel is unbounded,
//! and what bounds it is the number of jobs the worker has leased.
//!
//! The event is sent before the job's future resolves, so by the time the
//! worker sees a job finish, its event is already waiting to be drained.

use std::task::{Context, Poll};

use apalis_core::{
    backend::{persistence::TaskEvent, TaskResult},
    error::BoxDynError,
    task::Task,
};
use futures::{future::BoxFuture, FutureExt};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc::UnboundedSender;
use tower::{Layer, Service};

/// Where finished jobs are reported.
pub(super) type FinishedSender = UnboundedSender<TaskEvent<Value>>;

/// Reports every finished job to the worker's backend; see the module docs.
#[derive(Debug, Clone)]
pub struct AckLayer {
    finished: FinishedSender,
}

impl AckLayer {
    pub(super) fn new(finished: FinishedSender) -> Self {
        Self { finished }
    }
}

impl<S> Layer<S> for AckLayer {
    type Service = AckService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AckService {
            inner,
            finished: self.finished.clone(),
        }
    }
}

/// The service [`AckLayer`] builds around a job's service.
#[derive(Debug, Clone)]
pub struct AckService<S> {
    inner: S,
    finished: FinishedSender,
}

impl<S, Args> Service<Task<Args>> for AckService<S>
where
    S: Service<Task<Args>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxDynError>,
    S::Response: Serialize + Send,
    Args: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxDynError;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, task: Task<Args>) -> Self::Future {
        let ctx = task.ctx().clone();
        let job = self.inner.call(task);
        let finished = self.finished.clone();
        async move {
            let outcome = job.await.map_err(Into::into);
            match ctx.task_id() {
                Some(task_id) => {
                    let result = match &outcome {
                        Ok(response) => encode(response),
                        Err(error) => Err(error.to_string()),
                    };
                    let event = TaskEvent::Complete(TaskResult {
                        task_id: task_id.clone(),
                        attempt: ctx.attempt(),
                        status: ctx.status(),
                        result,
                    });
                    // A closed channel means the worker stopped; its lease
                    // runs out and the job runs again elsewhere.
                    if finished.send(event).is_err() {
                        tracing::warn!(job_id = %task_id, "job finished after its worker stopped; it will run again");
                    }
                }
                None => tracing::error!("a job without an id finished; it cannot be acknowledged"),
            }
            outcome
        }
        .boxed()
    }
}

/// The job's response as recorded, or why it could not be encoded.
fn encode<T: Serialize>(response: &T) -> Result<Value, String> {
    serde_json::to_value(response).map_err(|e| format!("the job's result is not JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_recorded_as_json_and_unencodable_ones_as_errors() {
        assert_eq!(
            encode(&serde_json::json!({"a": 1})),
            Ok(serde_json::json!({"a": 1}))
        );
        let mut not_json = std::collections::HashMap::new();
        not_json.insert((1, 2), "tuple keys are not JSON object keys");
        let err = encode(&not_json).unwrap_err();
        assert!(err.starts_with("the job's result is not JSON"), "{err}");
    }
}
