//! Retention: ended exports older than `export.keep_days` lose their file
//! and their status record.
//!
//! [`sweep`] works through the old records in batches of [`BATCH`]: for each,
//! the file is deleted from the storage first, then the record (only if the
//! key has not been queued again meanwhile). A file that cannot be deleted
//! stops the sweep with its record kept, so the next sweep tries again and
//! no file outlives its record unnoticed.
//!
//! [`spawn`] runs a sweep when the worker starts and then every
//! [`SWEEP_EVERY`]. Workers take turns through a Redis key set with `NX`
//! that expires after one period: one sweep per period across all workers.

use std::time::Duration;

use herald_jobs::{Namespace, RedisConnection};
use mongodb::bson::DateTime;
use tokio::task::JoinHandle;
use tracing::{info, warn};

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
    /// The Redis key that takes turns could not be set.
    #[error("taking the retention turn in Redis failed: {0}")]
    Turn(#[from] redis::RedisError),
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

/// Whether this worker takes this period's sweep.
async fn take_turn(redis: &mut RedisConnection, turn_key: &str) -> Result<bool, RetentionError> {
    let taken: Option<String> = redis::cmd("SET")
        .arg(turn_key)
        .arg(std::process::id())
        .arg("NX")
        .arg("PX")
        .arg(SWEEP_EVERY.as_millis() as u64)
        .query_async(redis)
        .await?;
    Ok(taken.is_some())
}

/// Sweeps now and every [`SWEEP_EVERY`] while the returned task runs, when
/// this worker holds the turn under `turn_key`.
pub fn spawn<S: ExportStorage>(
    status: ExportStatusStore,
    storage: S,
    keep: Duration,
    mut redis: RedisConnection,
    turn_key: String,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(SWEEP_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            match take_turn(&mut redis, &turn_key).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(error) => {
                    warn!(%error, "export retention skipped");
                    continue;
                }
            }
            match sweep(&status, &storage, keep).await {
                Ok(removed) => info!(
                    removed,
                    keep_days = keep.as_secs() / 86_400,
                    "export retention swept"
                ),
                Err(error) => warn!(%error, "export retention stopped; the next sweep goes on"),
            }
        }
    })
}
