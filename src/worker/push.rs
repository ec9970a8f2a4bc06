//! The `push` handler: deliver one event to the provider.
//!
//! A job whose idempotency key has a delivery receipt (its fetch said so,
//! see [`crate::push::delivery`]) succeeds without sending again.
//!
//! The event is checked against the provider's limits first: a bad channel
//! name or oversized `data` fails the job for good without a request. An
//! event naming more channels than one request may carry is sent as one
//! request per slice of channels, and each accepted slice gets a receipt of
//! its own (`KEY#channels:START-END`, indexes into the job's channel list),
//! so a re-run sends only the slices not yet accepted. The job's own
//! receipt is written once every slice is.
//!
//! Under a shared rate limit (`push.max_requests_per_sec`) the job first
//! asks whether its account is within its share of the limit
//! ([`RateLimiter::admit_account`]), and each request waits for its turn
//! inside the provider client. A job held back by either is *deferred*
//! ([`Defer`]): scheduled again a little later without spending an
//! attempt, so the jobs behind it in the queue (other accounts' events)
//! run meanwhile.
//!
//! Retryable failures (connection, timeout, 5xx, 429, 403) return an
//! ordinary error, so the queue schedules the job again — no sooner than a
//! `Retry-After` the provider sent ([`NotBefore`]); permanent ones (other
//! 4xx, refused before sending) return [`AbortError`], which moves the job
//! to the dead set at once with the reason as its result.

use std::{sync::Arc, time::Duration};

use apalis::prelude::{AbortError, Attempt, BoxDynError, Data, TaskId};
use apalis_core::task::metadata::MetadataStore;
use tracing::{error, info, warn, Instrument};

use crate::{
    push::{
        delivery::DeliveryLog, job::PushJob, limits::ProviderLimits, rate_limit::RateLimiter,
        Event, EventPusher, PushError,
    },
    queue::{
        retry::{Defer, NotBefore},
        RawArgs,
    },
};

/// How long a failed run waits for the receipts of the slices it did
/// deliver to be written, so the next run finds them.
const RECEIPT_PATIENCE: Duration = Duration::from_secs(5);

/// What the handler needs, shared by every job of the worker.
#[derive(Debug)]
pub struct Deps<P> {
    /// The provider client (one connection pool per process).
    pub pusher: P,
    /// Where delivery receipts are written.
    pub delivered: DeliveryLog,
    /// The shared rate limit, for the account's share (the provider client
    /// holds the same limiter for the turns of its requests).
    pub limiter: RateLimiter,
    /// Full name of the queue, for logs.
    pub queue: String,
}

/// Handles one `push` job.
pub async fn handle<P: EventPusher>(
    payload: RawArgs,
    deps: Data<Arc<Deps<P>>>,
    task_id: TaskId,
    attempt: Attempt,
    metadata: MetadataStore,
) -> Result<(), BoxDynError> {
    let span = crate::telemetry::job_span!("push", task_id, deps.queue, attempt; event, key);
    deliver(payload, &deps, &metadata).instrument(span).await
}

/// The receipt key of the slice `start..end` of a job's channels.
pub fn slice_key(idempotency_key: &str, start: usize, end: usize) -> String {
    format!("{idempotency_key}#channels:{start}-{end}")
}

async fn deliver<P: EventPusher>(
    payload: RawArgs,
    deps: &Deps<P>,
    metadata: &MetadataStore,
) -> Result<(), BoxDynError> {
    let (pusher, delivered) = (&deps.pusher, &deps.delivered);
    let job: PushJob = match serde_json::from_str(payload.get()) {
        Ok(job) => job,
        Err(e) => {
            warn!(error = %e, "push job rejected, not retrying");
            return Err(AbortError::new(e).into());
        }
    };
    let span = tracing::Span::current();
    span.record("account_id", job.account_id.as_str());
    span.record("event", job.event.name.as_str());
    span.record("key", job.idempotency_key.as_str());
    crate::telemetry::record_trace(crate::telemetry::parent_of(job.traceparent.as_deref()));

    if let Some(at) = delivered
        .delivered_at(metadata, &job.idempotency_key)
        .await?
    {
        info!(
            delivered_at = %at,
            "event already delivered by an earlier run; not sending again"
        );
        return Ok(());
    }
    let limits = pusher.limits();
    let chunks = limits.channel_chunks(&job.event.channels).len();
    if let Err(e) = deps.limiter.admit_account(&job.account_id, chunks).await {
        return Err(failure(e.into()));
    }
    let result = if chunks == 1 {
        // `send` checks the event first; a refusal is permanent.
        pusher.send(&job.event).await
    } else {
        // All of it is checked before the first slice goes, so that a bad
        // channel in the last slice does not leave the first ones sent.
        if let Err(e) = limits.check(&job.event) {
            return Err(failure(e));
        }
        send_in_slices(&job, pusher, delivered, &limits).await?
    };
    match result {
        Ok(()) => {
            info!(requests = chunks, "event delivered");
            delivered.record(&job.idempotency_key);
            Ok(())
        }
        Err(e) => Err(failure(e)),
    }
}

/// Sends each slice of the job's channels that has no receipt yet; see
/// the module docs. The outer error is Redis's (receipts unknown, nothing
/// sent); the inner one the provider's.
async fn send_in_slices<P: EventPusher>(
    job: &PushJob,
    pusher: &P,
    delivered: &DeliveryLog,
    limits: &ProviderLimits,
) -> Result<Result<(), PushError>, BoxDynError> {
    let channels = &job.event.channels;
    let ranges: Vec<(usize, usize)> = limits
        .channel_chunks(channels)
        .scan(0, |start, chunk| {
            let range = (*start, *start + chunk.len());
            *start = range.1;
            Some(range)
        })
        .collect();
    let keys: Vec<String> = ranges
        .iter()
        .map(|&(start, end)| slice_key(&job.idempotency_key, start, end))
        .collect();
    let done = delivered.delivered_keys(&keys).await?;
    let mut sent = 0;
    for ((&(start, end), key), already) in ranges.iter().zip(&keys).zip(done) {
        if already {
            info!(
                channels = %format_args!("{start}..{end}"),
                "slice already delivered by an earlier run; not sending again"
            );
            continue;
        }
        let slice = Event {
            name: job.event.name.clone(),
            data: job.event.data.clone(),
            channels: channels[start..end].to_vec(),
        };
        if let Err(e) = pusher.send(&slice).await {
            if sent > 0 {
                delivered.flush(RECEIPT_PATIENCE).await;
            }
            return Ok(Err(e));
        }
        delivered.record(key);
        sent += 1;
    }
    Ok(Ok(()))
}

/// The job's error for a provider's failure: retryable ones as they are
/// (with the provider's `Retry-After` as a [`NotBefore`]), others aborted.
fn failure(e: PushError) -> BoxDynError {
    if let PushError::RateLimited(limited) = &e {
        if let Some(delay) = limited.retry_in() {
            info!(
                reason = %limited,
                retry_in_ms = delay.as_millis() as u64,
                "push deferred by the rate limit; no attempt spent"
            );
            return Box::new(Defer {
                delay,
                source: e.into(),
            });
        }
    }
    if e.is_refused_before_sending() {
        error!(error = %e, "event refused before sending, not retrying");
        return AbortError::new(e).into();
    }
    if !e.is_retryable() {
        error!(error = %e, "push refused, not retrying");
        return AbortError::new(e).into();
    }
    match e.retry_after() {
        Some(delay) => {
            warn!(error = %e, retry_after_secs = delay.as_secs_f64(), "push failed, will retry no sooner than the provider asked");
            Box::new(NotBefore {
                delay,
                source: e.into(),
            })
        }
        None => {
            warn!(error = %e, "push failed, will retry");
            e.into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::rate_limit::RateLimitError;

    #[test]
    fn a_provider_wait_becomes_a_not_before_and_a_refusal_an_abort() {
        let throttled = PushError::Status {
            endpoint: "http://x".into(),
            status: 429,
            body: String::new(),
            retry_after: Some(Duration::from_secs(4)),
        };
        let error = failure(throttled.clone());
        assert_eq!(
            NotBefore::find(error.as_ref()),
            Some(Duration::from_secs(4))
        );
        assert_eq!(error.to_string(), throttled.to_string());

        let plain = failure(PushError::Status {
            endpoint: "http://x".into(),
            status: 403,
            body: String::new(),
            retry_after: None,
        });
        assert_eq!(NotBefore::find(plain.as_ref()), None);
        assert!(plain.downcast_ref::<AbortError>().is_none());

        let refused = failure(PushError::DataTooLarge {
            event: "e".into(),
            bytes: 20_000,
            limit: 10_240,
        });
        assert!(refused.downcast_ref::<AbortError>().is_some());
    }

    #[test]
    fn a_rate_limit_refusal_defers_and_a_limiter_outage_is_a_plain_failure() {
        let busy = failure(PushError::RateLimited(RateLimitError::Busy {
            per_sec: 50,
            max_wait_ms: 1_000,
            retry_in: Duration::from_millis(1_300),
        }));
        assert_eq!(
            Defer::find(busy.as_ref()),
            Some(Duration::from_millis(1_300))
        );
        assert_eq!(NotBefore::find(busy.as_ref()), None);
        assert!(busy.downcast_ref::<AbortError>().is_none());

        let over = failure(PushError::RateLimited(RateLimitError::OverShare {
            account: "a".into(),
            share_percent: 50,
            per_sec: 50,
            retry_in: Duration::from_secs(2),
        }));
        assert_eq!(Defer::find(over.as_ref()), Some(Duration::from_secs(2)));

        let down = failure(PushError::RateLimited(RateLimitError::Redis {
            reason: "connection refused".into(),
        }));
        assert_eq!(Defer::find(down.as_ref()), None);
        assert!(down.downcast_ref::<AbortError>().is_none(), "retried");
    }
}
