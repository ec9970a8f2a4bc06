//! The `send_message` handler: payload → [`ValidMessage`] → document → push job.
//!
//! Outcomes, as apalis sees them:
//! - `Ok(`[`Handoff`]`)`: the document exists; the returned push jobs (one,
//!   or two for a message to one user: see [`crate::push::job`]) are
//!   enqueued on the `push` queue by this job's acknowledgement, before the
//!   job is recorded done (see [`crate::queue::handoff`]), so the push never
//!   precedes the stored message and costs no round trip of its own.
//!   A message whose `expiresAt` has passed when its job runs is neither
//!   stored nor pushed: the hand-off is empty.
//! - [`AbortError`]: the payload cannot be decoded or fails validation, or
//!   its id is already another message's ([`StoreError::IdTaken`]). The job
//!   goes straight to the dead set with the error; retrying cannot help.
//! - any other error (MongoDB unavailable): the job is retried later.
//!   A retry is safe because the insert is idempotent by message id and the
//!   push is enqueued under an idempotency key.
//!
//! [`ValidMessage`]: herald_jobs::ValidMessage

use std::sync::Arc;

use apalis::prelude::{AbortError, Attempt, BoxDynError, Data, TaskId};
use herald_jobs::{MessageLimits, SendMessage, ValidationError};
use tracing::{field, info, warn, Instrument};

use crate::{
    push::{job::PushJob, UserChannels},
    queue::{Handoff, RawArgs},
    store::{MessageBatcher, StoreError},
};

/// What the handler needs, shared by every job of the worker.
#[derive(Debug)]
pub struct Deps {
    /// The `message` collection, written in batches shared by running jobs.
    pub store: MessageBatcher,
    /// Validation limits.
    pub limits: MessageLimits,
    /// Each user's channel, for messages addressed to one user.
    pub users: UserChannels,
    /// Full name of the queue, for logs.
    pub queue: String,
}

/// Why a payload was refused without retrying.
#[derive(Debug, thiserror::Error)]
pub enum Rejected {
    /// The JSON does not have the `send_message` shape.
    #[error("payload is not a send_message job: {0}")]
    Decode(#[from] serde_json::Error),
    /// A field is invalid.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
}

/// Handles one `send_message` job.
pub async fn handle(
    payload: RawArgs,
    deps: Data<Arc<Deps>>,
    task_id: TaskId,
    attempt: Attempt,
) -> Result<Handoff, BoxDynError> {
    let span =
        crate::telemetry::job_span!("send_message", task_id, deps.queue, attempt; message_id);
    process(payload, &deps).instrument(span).await
}

async fn process(payload: RawArgs, deps: &Deps) -> Result<Handoff, BoxDynError> {
    let message = match decode(payload.get(), &deps.limits) {
        Ok(message) => message,
        Err(rejected) => {
            warn!(error = %rejected, "job rejected, not retrying");
            return Err(AbortError::new(rejected).into());
        }
    };
    let span = tracing::Span::current();
    span.record("account_id", field::display(message.account));
    span.record("message_id", field::display(message.id));
    let trace = crate::telemetry::record_trace(message.traceparent);
    if message
        .expires_at
        .is_some_and(|at| at <= chrono::Utc::now())
    {
        // A notification whose time has passed is not news: a run this late
        // (a backlog, a long outage) neither stores nor pushes it.
        info!("message expired before it was stored; neither stored nor pushed");
        return Ok(Handoff::many::<PushJob>([])?);
    }

    let stored = match deps.store.insert(message).await {
        Ok(stored) => stored,
        Err(e @ StoreError::IdTaken { .. }) => {
            warn!(error = %e, "job rejected, not retrying");
            return Err(AbortError::new(e).into());
        }
        Err(e) => {
            warn!(error = %e, "message not stored; the job will run again");
            return Err(e.into());
        }
    };
    if stored.newly_inserted {
        info!("message stored");
    } else {
        info!("message already stored by an earlier run");
    }

    let pushes: Vec<PushJob> = PushJob::for_message(&stored, &deps.users)
        .into_iter()
        .map(|push| push.in_trace(&trace))
        .collect();
    let handoff = Handoff::many(pushes.iter().map(|p| (p, p.idempotency_key.as_str())))?;
    for push in &pushes {
        info!(key = %push.idempotency_key, "push handed to the push queue");
    }
    Ok(handoff)
}

fn decode(payload: &str, limits: &MessageLimits) -> Result<herald_jobs::ValidMessage, Rejected> {
    let job: SendMessage = serde_json::from_str(payload)?;
    Ok(job.validate(limits)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_of_the_wrong_shape_are_decode_rejections() {
        let err = decode(r#"{"title": "x"}"#, &MessageLimits::default()).unwrap_err();
        assert!(matches!(err, Rejected::Decode(_)));
        assert!(err.to_string().contains("missing field"), "{err}");
        let err = decode("42", &MessageLimits::default()).unwrap_err();
        assert!(matches!(err, Rejected::Decode(_)));
    }
}
