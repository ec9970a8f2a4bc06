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
        delivery::DeliveryLog, job::PushJob, limits::ProviderLimits, Event, EventPusher, PushError,
    },
    queue::{retry::NotBefore, RawArgs},
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
    deliver(payload, &deps.pusher, &deps.delivered, &metadata)
        .instrument(span)
        .await
}

/// The receipt key of the slice `start..end` of a job's channels.
pub fn slice_key(idempotency_key: &str, start: usize, end: usize) -> String {
    format!("{idempotency_key}#channels:{start}-{end}")
}

async fn deliver<P: EventPusher>(
    payload: RawArgs,
    pusher: &P,
    delivered: &DeliveryLog,
    metadata: &MetadataStore,
) -> Result<(), BoxDynError> {
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
}
