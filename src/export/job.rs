//! The `export` queue's handler: from a payload to a job outcome.
//!
//! [`handle`] opens the job's span (job id, queue, attempt, account, key),
//! checks the payload, takes one of its account's slots
//! ([`super::slots`]), runs the export (`super::run`) and turns how it
//! ended into what apalis needs:
//!
//! - every slot of the account taken: deferred (runs again a little
//!   later, no attempt spent, still `queued`);
//! - finished: the job returns its `export_finish` as a [`Handoff`], which
//!   its acknowledgement enqueues before recording it done (see
//!   [`super::events`]): a Redis error delays the acknowledgement and never
//!   runs the export again;
//! - cancelled: done, nothing handed on;
//! - a payload that is not an export, or an export that is invalid or over
//!   a limit (rows, time): aborted at once (retrying cannot help), and
//!   reported when its account and key are valid — a job whose account or
//!   key is not is only logged and kept dead, since nothing may be
//!   recorded under a key that was never checked;
//! - any other failure: retried, up to `max_attempts` runs; the last one
//!   reports the failure.
//!
//! Reporting a failure means recording it in the status record and
//! scheduling `export_failed`, both best effort: the job's own failure is
//! what matters, problems while reporting it are logged.

use std::sync::Arc;

use std::time::Duration;

use apalis::prelude::{AbortError, Attempt, BoxDynError, Data, TaskId};
use herald_jobs::{AccountId, Export, ExportKey};
use tracing::{field, info, warn, Instrument};

use super::{
    events,
    run::{self, Ended},
    storage::ExportStorage,
    Deps,
};
use crate::{
    push::EventPusher,
    queue::{retry::Defer, Handoff},
};

/// How long an export waits for a slot of its account before it asks
/// again (plus up to as much again at random, so waiting exports spread).
const SLOT_WAIT: Duration = Duration::from_millis(1000);

/// Why an export waits.
#[derive(Debug, thiserror::Error)]
#[error("account {account} has {limit} exports running (export.max_running_per_account); this one waits its turn")]
struct AccountBusy {
    account: AccountId,
    limit: u32,
}

/// Handles one `export` job.
pub async fn handle<S, P>(
    payload: serde_json::Value,
    deps: Data<Arc<Deps<S, P>>>,
    task_id: TaskId,
    attempt: Attempt,
) -> Result<Option<Handoff>, BoxDynError>
where
    S: ExportStorage,
    P: EventPusher + Clone,
{
    let span = crate::telemetry::job_span!("export", task_id, deps.queue, attempt; key);
    let run = task_id.to_string();
    process(payload, &deps, &run, attempt.current())
        .instrument(span)
        .await
}

async fn process<S, P>(
    payload: serde_json::Value,
    deps: &Deps<S, P>,
    run: &str,
    attempt: usize,
) -> Result<Option<Handoff>, BoxDynError>
where
    S: ExportStorage,
    P: EventPusher + Clone,
{
    let job: Export = match serde_json::from_value(payload) {
        Ok(job) => job,
        Err(e) => {
            warn!(error = %e, "export job rejected: not an export payload");
            return Err(AbortError::new(e).into());
        }
    };
    // The account and key are checked before anything is recorded under
    // them; only then do they name the span, the record and the events.
    let owner = AccountId::parse(&job.account_id)
        .ok()
        .zip(ExportKey::parse(&job.key).ok());
    let span = tracing::Span::current();
    if let Some((account, key)) = &owner {
        span.record("account_id", field::display(account));
        span.record("key", key.as_str());
    }
    let trace =
        crate::telemetry::record_trace(crate::telemetry::parent_of(job.traceparent.as_deref()));

    let valid = match job.validate(&deps.settings.limits) {
        Ok(valid) => valid,
        Err(e) => {
            warn!(error = %e, "export job rejected, not retrying");
            if let Some((account, key)) = &owner {
                report_failure(deps, *account, key, run, &e.to_string()).await;
            }
            return Err(AbortError::new(e).into());
        }
    };

    let slot = match deps.slots.acquire(valid.account, run).await {
        Ok(Some(slot)) => slot,
        Ok(None) => {
            let busy = AccountBusy {
                account: valid.account,
                limit: deps.slots.limit(),
            };
            info!(reason = %busy, "export deferred");
            return Err(Box::new(Defer {
                delay: SLOT_WAIT + SLOT_WAIT.mul_f64(fastrand::f64()),
                source: Box::new(busy),
            }));
        }
        Err(e) => {
            warn!(error = %e, "cannot take an export slot; the export will run again");
            return Err(e.into());
        }
    };
    let ended = run::export(&valid, deps, run).await;
    slot.release().await;

    match ended {
        Ok(Ended::Finished { rows }) => {
            info!(rows, "export finished");
            deps.metrics.export_rows(rows);
            // Encoding a push job of a valid key cannot fail; if it ever
            // did, the job is kept dead with the reason rather than re-run.
            match events::finish(valid.account, &valid.key, run, &trace) {
                Ok(handoff) => Ok(Some(handoff)),
                Err(e) => {
                    warn!(error = %e, "export_finish could not be encoded");
                    Err(AbortError::new(e).into())
                }
            }
        }
        Ok(Ended::Cancelled) => {
            info!("export cancelled; partial file removed");
            Ok(None)
        }
        Err(e) if e.is_permanent() => {
            warn!(error = %e, "export failed; running it again cannot help");
            report_failure(deps, valid.account, &valid.key, run, &e.to_string()).await;
            Err(AbortError::new(e).into())
        }
        Err(e) if attempt >= deps.max_attempts => {
            warn!(error = %e, "export failed on its last attempt");
            report_failure(deps, valid.account, &valid.key, run, &e.to_string()).await;
            Err(AbortError::new(e).into())
        }
        Err(e) => {
            warn!(error = %e, "export failed, will retry");
            Err(e.into())
        }
    }
}

/// Records the failure and schedules `export_failed`; problems here are
/// logged.
async fn report_failure<S, P>(
    deps: &Deps<S, P>,
    account: AccountId,
    key: &ExportKey,
    run: &str,
    error: &str,
) {
    if let Err(e) = deps.status.fail(account, key, error).await {
        warn!(error = %e, "could not record the export's failure");
    }
    if let Err(e) = events::schedule_failure(&deps.push_queue, account, key, run, error).await {
        warn!(error = %e, "could not schedule export_failed");
    }
}
