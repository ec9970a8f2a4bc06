//! Retention: ended exports older than `export.keep_days` lose their file
//! and their status record.
//!
//! [`sweep`] works through the old records in batches of [`BATCH`]: for each,
//! the file is deleted from the storage first, then the record (only if the
//! key has not been queued again meanwhile). A file that cannot be deleted
//! stops the sweep with its record kept, so the next sweep tries again and
//! no file outlives its record unnoticed.
//!
//! The worker runs a sweep when it starts and then every [`SWEEP_EVERY`],
//! one worker at a time (`crate::worker::periodic`), under [`turn_key`].

use std::time::Duration;

use herald_jobs::Namespace;
use mongodb::bson::DateTime;

use super::{status::ExportStatusStore, storage::ExportStorage};
use crate::store::StoreError;

/// Records handled per batch.
pub const BATCH: i64 = 100;

/// How often a sweep runs (across all workers).
pub const SWEEP_EVERY: Duration = Duration::from_secs(60 * 60);

/// Why a sweep stopped.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    /// Reading or deleting records failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Deleting a file failed; its record is kept.
    #[error("deleting the file of export '{key}' failed: {source}")]
    File {
        /// The export's key.
        key: String,
        /// The storage's error.
        #[source]
        source: std::io::Error,
    },
}

/// Removes the files and records of exports that ended more than `keep`
/// ago; how many exports were removed.
pub async fn sweep<S: ExportStorage>(
    status: &ExportStatusStore,
    storage: &S,
    keep: Duration,
) -> Result<u64, RetentionError> {
    let now = DateTime::now().timestamp_millis();
    let keep_millis = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
    let cutoff = DateTime::from_millis(now.saturating_sub(keep_millis));
    let mut removed = 0;
    loop {
        let batch = status.ended_before(cutoff, BATCH).await?;
        let full = batch.len() as i64 == BATCH;
        let mut progressed = false;
        for record in batch {
            // Only a key that passes the export rules names a file; a
            // record without one is removed alone.
            if let Some((account, key)) = &record.export {
                storage
                    .delete(*account, key)
                    .await
                    .map_err(|source| RetentionError::File {
                        key: key.to_string(),
                        source,
                    })?;
            }
            if status.remove_ended(&record.id, cutoff).await? {
                removed += 1;
                progressed = true;
            }
        }
        if !full || !progressed {
            return Ok(removed);
        }
    }
}

/// The key whose holder sweeps this period in `namespace`,
/// `{NAMESPACE}:retention:export`.
pub fn turn_key(namespace: &Namespace) -> String {
    namespace.key("retention:export")
}
