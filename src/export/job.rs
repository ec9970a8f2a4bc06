//! The `export` queue's handler: from a payload to a job outcome.
//!
//! [`handle`] opens the job's span (job id, queue, attempt, account, key),
//! checks the payload, runs the export (`super::run`) and turns how it
//! ended into what apalis needs:
//!
//! - finished: `export_finish` is scheduled; if that fails the job fails
//!   and runs again (the file is replaced, the event sent once);
//! - cancelled: done, nothing to report;
//! - a payload that is not an export, or an export that is invalid: aborted
//!   at once (retrying cannot help), the invalid one reported;
//! - any other failure: retried, up to `max_attempts` runs; the last one
//!   reports the failure.
//!
//! Reporting a failure means recording it in the status record and
//! scheduling `export_failed`, both best effort: the job's own failure is
//! what matters, problems while reporting it are logged.

use std::sync::Arc;

use apalis::prelude::{AbortError, Attempt, BoxDynError, Data, TaskId};
use herald_jobs::{AccountId, Export};
use tracing::{field, info, warn, Instrument};

use super::{
    events,
    run::{self, Ended},
    storage::ExportStorage,
    Deps,
};
use crate::push::EventPusher;

/// Handles one `export` job.
pub async fn handle<S, P>(
    payload: serde_json::Value,
    deps: Data<Arc<Deps<S, P>>>,
    task_id: TaskId,
    attempt: Attempt,
) -> Result<(), BoxDynError>
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
) -> Result<(), BoxDynError>
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
    let span = tracing::Span::current();
    span.record("key", job.key.as_str());
    let account = AccountId::parse(&job.account_id).ok();
    if let Some(account) = account {
        span.record("account_id", field::display(account));
    }

    let valid = match job.validate(&deps.settings.limits) {
        Ok(valid) => valid,
        Err(e) => {
            warn!(error = %e, "export job rejected, not retrying");
            report_failure(deps, &job.key, account, run, &e.to_string()).await;
            return Err(AbortError::new(e).into());
        }
    };

    match run::export(&valid, deps, run).await {
        Ok(Ended::Finished { rows }) => {
            info!(rows, "export finished");
            deps.metrics.export_rows(rows);
            let scheduled =
                events::schedule_finish(&deps.push_queue, valid.account, &valid.key, run).await;
            if let Err(e) = &scheduled {
                warn!(error = %e, "export_finish not scheduled; the export will run again");
            }
            Ok(scheduled?)
        }
        Ok(Ended::Cancelled) => {
            info!("export cancelled; partial file removed");
            Ok(())
        }
        Err(e) if attempt >= deps.max_attempts => {
            warn!(error = %e, "export failed on its last attempt");
            report_failure(deps, &valid.key, Some(valid.account), run, &e.to_string()).await;
            Err(AbortError::new(e).into())
        }
        Err(e) => {
            warn!(error = %e, "export failed, will retry");
            Err(e.into())
        }
    }
}

/// Records the failure and schedules `export_failed` (when the account is
/// known); problems here are logged.
async fn report_failure<S, P>(
    deps: &Deps<S, P>,
    key: &str,
    account: Option<AccountId>,
    run: &str,
    error: &str,
) {
    if let Err(e) = deps.status.fail(key, account, error).await {
        warn!(error = %e, "could not record the export's failure");
    }
    if let Some(account) = account {
        if let Err(e) = events::schedule_failure(&deps.push_queue, account, key, run, error).await {
            warn!(error = %e, "could not schedule export_failed");
        }
    }
}
