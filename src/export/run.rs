//! One run of an export, from its status record to its file.
//!
//! The run marks the record `running` (unless the export was cancelled
//! while queued), starts a partial file in the storage, streams the rows
//! into it (`super::pipeline`), and then:
//!
//! - all rows written: commits the file, then records `finished`. If the
//!   record was cancelled in the instant between, the cancellation wins
//!   and the committed file is deleted;
//! - cancelled while writing: discards the partial file;
//! - failed: discards the partial file and hands the error on.
//!
//! The order (file committed and durable before the record says
//! `finished`) means a finished record never points at a missing file.

use herald_jobs::ValidExport;
use tracing::warn;

use super::{pipeline, query, storage::ExportStorage, Deps, ExportError};
use crate::push::EventPusher;

/// How a run ended (when it did not fail).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Ended {
    /// Every row is in the committed file.
    Finished {
        /// Rows written.
        rows: u64,
    },
    /// The export was cancelled; no file is left.
    Cancelled,
}

/// Runs the export; the partial file is removed on every path but success.
pub(super) async fn export<S, P>(
    valid: &ValidExport,
    deps: &Deps<S, P>,
    run: &str,
) -> Result<Ended, ExportError>
where
    S: ExportStorage,
    P: EventPusher + Clone,
{
    let filter = query::narrowed_filter(valid, &deps.settings.account_field);
    if !deps
        .status
        .start(valid.account, &valid.key, &valid.collection)
        .await?
    {
        return Ok(Ended::Cancelled);
    }
    let mut file = deps.storage.create(valid.account, &valid.key, run).await?;
    match pipeline::write_rows(valid, deps, filter, &mut file).await {
        Ok(Some(rows)) => {
            let stored = deps.storage.commit(file).await?;
            if deps
                .status
                .finish(valid.account, &valid.key, rows, &stored)
                .await?
            {
                Ok(Ended::Finished { rows })
            } else {
                // Cancelled in the instant before the commit: honour it.
                if let Err(e) = deps.storage.delete(valid.account, &valid.key).await {
                    warn!(error = %e, "could not remove the file of an export cancelled as it finished");
                }
                Ok(Ended::Cancelled)
            }
        }
        Ok(None) => {
            deps.storage.discard(file).await?;
            Ok(Ended::Cancelled)
        }
        Err(e) => {
            if let Err(discard) = deps.storage.discard(file).await {
                warn!(error = %discard, "could not remove a partial export file");
            }
            Err(e)
        }
    }
}
