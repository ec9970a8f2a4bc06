//! [`SharedPermitsLayer`]: one pool of running-job permits for the workers
//! of a queue's shards.
//!
//! A queue spread over several shards has one apalis worker per shard, each
//! with its own concurrency limit (`queues.send_message.concurrency` and friends). This
//! layer bounds what they run together: a job, once taken from its shard,
//! waits for a permit of the queue's semaphore before its handler runs, and
//! gives it back when the handler returns.
//!
//! The permit is taken when the job is about to run, not when its worker
//! asks for the next job: a worker whose shard is empty then holds nothing,
//! and the busy shards' jobs use every permit. tokio's semaphore hands
//! permits out in the order they were asked for, so a job of a quiet shard
//! waits behind at most the jobs already waiting, at most the concurrency
//! of each other shard's worker, never behind a whole backlog.
//!
//! The layer goes inside apalis's `parallelize`, which spawns each job's
//! future: the future this layer returns is what is spawned, and the
//! handler's work (a lazy future) starts only once it holds the permit.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use tokio::sync::Semaphore;
use tower::{Layer, Service};

/// Adds a wait for a permit of a shared semaphore before each job runs.
#[derive(Debug, Clone)]
pub struct SharedPermitsLayer {
    permits: Arc<Semaphore>,
}

impl SharedPermitsLayer {
    /// Jobs of every service made by this layer (and its clones) run only
    /// while holding one of `permits`.
    pub fn new(permits: Arc<Semaphore>) -> Self {
        Self { permits }
    }
}

impl<S> Layer<S> for SharedPermitsLayer {
    type Service = SharedPermits<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SharedPermits {
            inner,
            permits: self.permits.clone(),
        }
    }
}

/// The service [`SharedPermitsLayer`] makes.
#[derive(Debug, Clone)]
pub struct SharedPermits<S> {
    inner: S,
    permits: Arc<Semaphore>,
}

impl<S, Request> Service<Request> for SharedPermits<S>
where
    S: Service<Request>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let permits = self.permits.clone();
        // Lazy: nothing of the job runs until this future is polled.
        let job = self.inner.call(request);
        Box::pin(async move {
            // The semaphore is never closed; were it, the job would run
            // without a permit rather than not at all.
            let _permit = permits.acquire_owned().await.ok();
            job.await
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tower::{service_fn, ServiceExt};

    use super::*;

    #[tokio::test]
    async fn services_sharing_the_permits_run_no_more_jobs_at_once_than_there_are_permits() {
        let permits = Arc::new(Semaphore::new(2));
        let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let job = {
            let (running, most) = (running.clone(), most.clone());
            service_fn(move |_: u32| {
                let (running, most) = (running.clone(), most.clone());
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    Ok::<_, std::convert::Infallible>(())
                }
            })
        };
        let layer = SharedPermitsLayer::new(permits);
        // Three "shards", four jobs each, all spawned at once.
        let mut tasks = Vec::new();
        for _ in 0..3 {
            let mut shard = layer.layer(job.clone());
            for n in 0..4 {
                let ready = shard.ready().await.expect("ready");
                tasks.push(tokio::spawn(ready.call(n)));
            }
        }
        for task in tasks {
            task.await.expect("joined").expect("ran");
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }
}
