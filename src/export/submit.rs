//! Submitting an export: validate, claim its key, enqueue.
//!
//! Shared by `herald enqueue export` and `POST /v1/exports`, so both refuse
//! the same jobs for the same reasons.

use herald_jobs::{Export, ExportLimits, Producer, ProducerError, ValidExport, ValidationError};

use super::status::{Claim, ExportStatusStore};
use crate::store::StoreError;

/// Why an export was not submitted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The job is invalid; one error per wrong field.
    #[error("invalid export: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<ValidationError>),
    /// The account's export with this key is still queued or running.
    #[error("export '{0}' is already queued or running")]
    InProgress(herald_jobs::ExportKey),
    /// MongoDB failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Redis refused the job; the status record says so.
    #[error(transparent)]
    Enqueue(#[from] ProducerError),
}

/// Validates `job` against `limits`, records it as queued and enqueues it
/// (validated once: the producer takes the checked job as it is).
pub async fn submit(
    job: Export,
    limits: &ExportLimits,
    status: &ExportStatusStore,
    producer: &mut Producer,
) -> Result<ValidExport, SubmitError> {
    let checked = job.check_all(limits).map_err(SubmitError::Invalid)?;
    let valid = checked.valid();
    match status
        .claim(valid.account, &valid.key, &valid.collection)
        .await?
    {
        Claim::Queued => {}
        Claim::InProgress => return Err(SubmitError::InProgress(valid.key.clone())),
    }
    if let Err(error) = producer.enqueue_checked_export(&checked).await {
        // Leave no record claiming a job that is not on the queue.
        status
            .fail(valid.account, &valid.key, &error.to_string())
            .await?;
        return Err(error.into());
    }
    Ok(checked.into_valid())
}
