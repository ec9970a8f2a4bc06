//! Noticing that a running export was cancelled.
//!
//! A cancellation is a write to the status record (`herald export cancel`,
//! `DELETE /v1/exports/{key}`), so the export has to look for it. Checking
//! once a batch meant thousands of queries for a large export, competing
//! with the export's own cursor for the database; [`CancelWatch`] checks at
//! most every [`CANCEL_CHECK_INTERVAL`], in the background while rows are
//! written, so the pipeline never waits for the answer.

use std::time::{Duration, Instant};

use herald_jobs::{AccountId, ExportKey};

use super::{status::ExportStatusStore, task::AbortOnDrop, ExportError};
use crate::store::StoreError;

/// Least time between two checks of whether a running export was
/// cancelled.
const CANCEL_CHECK_INTERVAL: Duration = Duration::from_millis(200);

/// Watches a running export's status record for a cancellation, with one
/// query in flight at most and at most one every [`CANCEL_CHECK_INTERVAL`].
pub(super) struct CancelWatch {
    status: ExportStatusStore,
    account: AccountId,
    key: ExportKey,
    running: Option<AbortOnDrop<Result<bool, StoreError>>>,
    next: Instant,
}

impl CancelWatch {
    /// Watches `account`'s export `key`; the first check is due after one
    /// interval.
    pub(super) fn new(status: ExportStatusStore, account: AccountId, key: ExportKey) -> Self {
        Self {
            status,
            account,
            key,
            running: None,
            next: Instant::now() + CANCEL_CHECK_INTERVAL,
        }
    }

    /// Whether a finished check found the export cancelled; starts the next
    /// check when one is due.
    pub(super) async fn seen(&mut self) -> Result<bool, ExportError> {
        if let Some(check) = self.running.take_if(|c| c.is_finished()) {
            if check.finish().await?? {
                return Ok(true);
            }
        }
        if self.running.is_none() && Instant::now() >= self.next {
            self.next = Instant::now() + CANCEL_CHECK_INTERVAL;
            let status = self.status.clone();
            let (account, key) = (self.account, self.key.clone());
            self.running = Some(AbortOnDrop::spawn(async move {
                status.is_cancelled(account, &key).await
            }));
        }
        Ok(false)
    }
}
