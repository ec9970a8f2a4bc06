//! [`JobMetricsLayer`]: counts and times every job run of a worker.
//!
//! A tower layer stacked on each apalis worker, so handlers stay free of
//! metrics code. It sits inside the concurrency limits (the worker's and
//! the permits its queue's shards share): the time measured is the
//! handler's, not the wait for a free slot.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use apalis_core::task::Task;
use tower::{Layer, Service};

use super::metrics::Metrics;

/// Records `herald_jobs_done_total`, `herald_jobs_failed_total`,
/// `herald_jobs_deferred_total` (runs whose error deferred the job without
/// spending an attempt, [`crate::queue::retry::Defer`]: not failures) and
/// `herald_job_duration_seconds` for one queue.
#[derive(Debug, Clone)]
pub struct JobMetricsLayer {
    metrics: Metrics,
    queue: &'static str,
}

impl JobMetricsLayer {
    /// A layer recording into `metrics` under the label `queue`.
    pub fn new(metrics: Metrics, queue: &'static str) -> Self {
        Self { metrics, queue }
    }
}

impl<S> Layer<S> for JobMetricsLayer {
    type Service = JobMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        JobMetricsService {
            inner,
            metrics: self.metrics.clone(),
            queue: self.queue,
        }
    }
}

/// The service [`JobMetricsLayer`] wraps a worker's handler in.
#[derive(Debug, Clone)]
pub struct JobMetricsService<S> {
    inner: S,
    metrics: Metrics,
    queue: &'static str,
}

/// An error as the metrics see it: `Box<dyn Error>`, which may say the
/// job was deferred.
type JobError = dyn std::error::Error + Send + Sync + 'static;

impl<S, Args> Service<Task<Args>> for JobMetricsService<S>
where
    S: Service<Task<Args>>,
    S::Error: AsRef<JobError>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Timed<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, task: Task<Args>) -> Self::Future {
        Timed {
            inner: self.inner.call(task),
            start: Instant::now(),
            metrics: self.metrics.clone(),
            queue: self.queue,
        }
    }
}

pin_project_lite::pin_project! {
    /// A job run's future that records its outcome and duration when it ends.
    pub struct Timed<F> {
        #[pin]
        inner: F,
        start: Instant,
        metrics: Metrics,
        queue: &'static str,
    }
}

impl<F, T, E> Future for Timed<F>
where
    F: Future<Output = Result<T, E>>,
    E: AsRef<JobError>,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        let elapsed = this.start.elapsed();
        match &result {
            Err(e) if crate::queue::retry::Defer::find(e.as_ref()).is_some() => {
                this.metrics.job_deferred(this.queue, elapsed)
            }
            _ => this
                .metrics
                .job_finished(this.queue, result.is_ok(), elapsed),
        }
        Poll::Ready(result)
    }
}
