//! Export jobs: one account's documents streamed into a CSV file.
//!
//! A run goes through these modules in order:
//!
//! 1. `job`: the `export` queue's [`handle`]r. It checks the payload,
//!    runs the export, and on failure records why and reports it.
//! 2. `run`: one run's file, from the status record's `running` to the
//!    committed file (or the discarded partial, when cancelled or failed).
//! 3. `query`: the job's filter narrowed to its account, and the count
//!    that gives progress its total.
//! 4. `pipeline`: the rows themselves. A [`reader`] task walks the cursor
//!    a batch ahead, batches are rendered ([`render`]) in parallel tasks and
//!    written in order, so memory stays flat whatever the row count.
//! 5. Beside the pipeline: `cancel` watches the status record for a
//!    cancellation, `progress` records progress and sends
//!    `export_progress` at most every `progress_interval`.
//!
//! Before the run, [`slots`] holds the account to
//! `export.max_running_per_account` exports at once; during it, the
//! pipeline holds it to `export.max_rows` and `export.max_query_ms`.
//! 6. `events`: the events an export sends. Progress goes inline and
//!    best-effort (a lost one is superseded by the next), so it always
//!    reaches the provider before the run's `export_finish`; finish and
//!    failure go through the `push` queue, retried until delivered.
//!
//! Also: [`storage`] (where files go, [`storage::ExportStorage`]: a local
//! directory or an S3-compatible object store), [`retention`] (removing
//! old exports' files and records),
//! [`status`] (the `export` status record), [`submit`] (what the CLI and
//! the API share to enqueue one) and `task` (the helper tasks' guard).

mod cancel;
mod events;
mod job;
mod pipeline;
mod progress;
mod query;
pub mod reader;
pub mod render;
pub mod retention;
mod run;
pub mod slots;
pub mod status;
pub mod storage;
pub mod submit;
mod task;

use herald_jobs::ValidationError;
use mongodb::Database;

use crate::{config::ExportSettings, push::job::PushJob, queue::RedisQueue, store::StoreError};
pub use slots::AccountSlots;
use status::ExportStatusStore;

pub use job::handle;
pub use query::narrowed_filter;

/// What the handler needs: `S` keeps the files, `P` delivers progress
/// events.
#[derive(Debug)]
pub struct Deps<S, P> {
    /// The database holding the source collections and the status records.
    pub database: Database,
    /// Where files go.
    pub storage: S,
    /// The status records.
    pub status: ExportStatusStore,
    /// Where finish and failure events are scheduled.
    pub push_queue: RedisQueue<PushJob>,
    /// Sends progress events directly.
    pub pusher: P,
    /// Export settings.
    pub settings: ExportSettings,
    /// Full queue name, for logs.
    pub queue: String,
    /// Runs an export gets; the last failing one records the failure.
    pub max_attempts: usize,
    /// Where finished exports' rows are counted.
    pub metrics: crate::ops::Metrics,
    /// How many exports of one account run at once.
    pub slots: AccountSlots,
}

/// Why an export run failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The job is invalid; retrying cannot help.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading the source collection failed.
    #[error("reading {collection} failed: {source}")]
    Read {
        /// The collection.
        collection: String,
        /// The driver's error.
        #[source]
        source: mongodb::error::Error,
    },
    /// Writing the file failed.
    #[error("writing the export file failed: {0}")]
    Write(#[from] std::io::Error),
    /// Encoding a CSV row failed.
    #[error("encoding a CSV row failed: {0}")]
    Csv(#[from] csv::Error),
    /// Scheduling an event failed.
    #[error("scheduling an event failed: {0}")]
    Schedule(String),
    /// The export has more rows than one file may hold.
    #[error("the export has more than {limit} rows, the most one file may hold (export.max_rows); narrow its filter")]
    TooManyRows {
        /// `export.max_rows`.
        limit: u64,
    },
    /// The count or the scan ran longer than allowed.
    #[error("the export's query ran longer than {limit_ms} ms (export.max_query_ms); narrow its filter or add an index")]
    TimedOut {
        /// `export.max_query_ms`.
        limit_ms: u128,
    },
}

impl ExportError {
    /// Whether running the export again cannot help: it is invalid or
    /// over a limit.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            ExportError::Invalid(_)
                | ExportError::TooManyRows { .. }
                | ExportError::TimedOut { .. }
        )
    }
}

/// MongoDB's code for an operation stopped by its `maxTimeMS`.
const MAX_TIME_EXPIRED: i32 = 50;

/// Whether `error` is the server stopping an operation at its time limit.
pub(crate) fn is_time_limit(error: &mongodb::error::Error) -> bool {
    use mongodb::error::ErrorKind;
    match error.kind.as_ref() {
        ErrorKind::Command(e) => e.code == MAX_TIME_EXPIRED,
        _ => false,
    }
}
