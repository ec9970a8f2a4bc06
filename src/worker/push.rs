//! The `push` handler: deliver one event to the provider.
//!
//! A job whose idempotency key has a delivery receipt (its fetch said so,
//! see [`crate::push::delivery`]) succeeds without sending again.
//!
//! Retryable failures (connection, timeout, 5xx, 429) return an ordinary
//! error, so apalis schedules the job again; permanent ones (other 4xx)
//! return [`AbortError`], which moves the job to the dead set at once with
//! the provider's answer as its result.

use std::sync::Arc;

use apalis::prelude::{AbortError, Attempt, BoxDynError, Data, TaskId};
use apalis_core::task::metadata::MetadataStore;
use tracing::{error, info, warn, Instrument};

use crate::{
    push::{delivery::DeliveryLog, job::PushJob, EventPusher, TuisongbaoClient},
    queue::RawArgs,
};

/// What the handler needs, shared by every job of the worker.
#[derive(Debug)]
pub struct Deps {
    /// The provider client (one connection pool per process).
    pub pusher: TuisongbaoClient,
    /// Where delivery receipts are written.
    pub delivered: DeliveryLog,
    /// Full name of the queue, for logs.
    pub queue: String,
}

/// Handles one `push` job.
pub async fn handle(
    payload: RawArgs,
    deps: Data<Arc<Deps>>,
    task_id: TaskId,
    attempt: Attempt,
    metadata: MetadataStore,
) -> Result<(), BoxDynError> {
    let span = crate::telemetry::job_span!("push", task_id, deps.queue, attempt; event, key);
    deliver(payload, &deps.pusher, &deps.delivered, &metadata)
        .instrument(span)
        .await
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
    match pusher.send(&job.event).await {
        Ok(()) => {
            info!("event delivered");
            delivered.record(&job.idempotency_key);
            Ok(())
        }
        Err(e) if e.is_retryable() => {
            warn!(error = %e, "push failed, will retry");
            Err(e.into())
        }
        Err(e) => {
            error!(error = %e, "push refused, not retrying");
            Err(AbortError::new(e).into())
        }
    }
}
