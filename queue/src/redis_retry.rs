//! Trying a failed Redis call again: the pause before each try
//! ([`retry_pause`], shared by every retried Redis call of the worker:
//! the queue driver and the delivery receipts' writer), a per-call
//! [`Backoff`], and the one-line-per-outage log ([`RedisHealth`]).

use std::{
    future::Future,
    pin::Pin,
    task::Context,
    time::{Duration, Instant},
};

use tokio::time::Sleep;

use super::QueueError;

/// Pause before a failed Redis call is tried the first time again; it
/// doubles with each failure in a row, up to [`RETRY_MAX`].
pub const RETRY_FIRST: Duration = Duration::from_millis(50);

/// Longest pause between two tries of a failed Redis call: also the
/// longest a worker waits to notice that Redis is back.
pub const RETRY_MAX: Duration = Duration::from_secs(1);

/// The pause before a Redis call that failed `failures` times in a row is
/// tried again: [`RETRY_FIRST`], doubling, at most [`RETRY_MAX`]. Every
/// retry of a Redis call in the worker uses it.
pub fn retry_pause(failures: u32) -> Duration {
    RETRY_FIRST
        .saturating_mul(1 << failures.min(16))
        .min(RETRY_MAX)
}

/// When one kind of Redis call that failed may be tried again.
#[derive(Default)]
pub(super) struct Backoff {
    failures: u32,
    wait: Option<Pin<Box<Sleep>>>,
}

impl Backoff {
    /// Records a failure and returns the pause before the next try.
    pub(super) fn next_pause(&mut self) -> Duration {
        let pause = retry_pause(self.failures);
        self.failures = self.failures.saturating_add(1);
        pause
    }

    /// Records a failure and starts the pause before the next try.
    pub(super) fn failed(&mut self, cx: &mut Context<'_>) {
        let pause = self.next_pause();
        self.wait = Some(Box::pin(tokio::time::sleep(pause)));
        // Polled once so that the end of the pause wakes the worker.
        let _ = self.ready(cx);
    }

    pub(super) fn succeeded(&mut self) {
        self.failures = 0;
        self.wait = None;
    }

    /// Whether the call may be tried now; if not, the end of the pause
    /// wakes the worker.
    pub(super) fn ready(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(sleep) = &mut self.wait else {
            return true;
        };
        if sleep.as_mut().poll(cx).is_pending() {
            return false;
        }
        self.wait = None;
        true
    }
}

/// Whether Redis is answering this worker, for the logs: one `warn` when
/// calls start failing, one `info` when they succeed again.
#[derive(Default)]
pub(super) struct RedisHealth {
    failing_since: Option<Instant>,
}

impl RedisHealth {
    pub(super) fn failed(
        &mut self,
        queue: &str,
        worker: &str,
        operation: &'static str,
        error: &QueueError,
    ) {
        if self.failing_since.is_none() {
            self.failing_since = Some(Instant::now());
            tracing::warn!(
                queue,
                worker,
                operation,
                %error,
                "Redis call failed; trying again until Redis answers (leased and finished jobs are kept)"
            );
        } else {
            tracing::debug!(queue, worker, operation, %error, "Redis call failed again");
        }
    }

    pub(super) fn answered(&mut self, queue: &str, worker: &str) {
        if let Some(since) = self.failing_since.take() {
            tracing::info!(
                queue,
                worker,
                unavailable_ms = since.elapsed().as_millis() as u64,
                "Redis answers again; resuming"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_redis_call_waits_longer_each_time_up_to_a_second() {
        let pauses: Vec<u128> = (0..8).map(|n| retry_pause(n).as_millis()).collect();
        assert_eq!(pauses, [50, 100, 200, 400, 800, 1000, 1000, 1000]);
        assert_eq!(retry_pause(u32::MAX), RETRY_MAX);
    }
}
