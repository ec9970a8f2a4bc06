//! Export jobs: one account's documents streamed into a CSV file.
//!
//! The [`handle`]r validates the job, narrows the query to the job's
//! account, then walks the cursor batch by batch, writing rows as they come
//! (memory stays flat whatever the row count). Between batches it checks for
//! cancellation and, at most every N rows or T milliseconds, records
//! progress and sends `export_progress`. On success the file is committed
//! atomically and `export_finish {key}` is pushed once; on failure the
//! record says why and `export_failed {key, error}` is pushed.
//!
//! Progress events are sent inline and best-effort (a lost one is
//! superseded by the next), so they always reach the provider before the
//! run's `export_finish`; finish and failure go through the `push` queue,
//! retried until delivered.
//!
//! - [`render`]: BSON values to spreadsheet cells.
//! - [`storage`]: where files go ([`storage::ExportStorage`]).
//! - [`status`]: the `export` status record.

pub mod render;
pub mod status;
pub mod storage;
pub mod submit;

use std::{sync::Arc, time::Instant};

use apalis::prelude::{AbortError, Attempt, BoxDynError, Data, TaskBuilder, TaskId, TaskSink};
use futures::TryStreamExt;
use herald_jobs::{AccountId, Export, ValidExport, ValidationError};
use mongodb::{
    bson::{doc, Document, RawDocumentBuf},
    Database,
};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tracing::{field, info, warn, Instrument};

use crate::{
    config::ExportSettings,
    push::{job::PushJob, EventPusher, TuisongbaoClient},
    queue::RedisQueue,
    store::StoreError,
};
use status::ExportStatusStore;
use storage::{ExportStorage, PartialFile};

/// The UTF-8 byte order mark, so spreadsheet programs read Chinese text right.
const BOM: &[u8] = "\u{feff}".as_bytes();

/// What the handler needs.
#[derive(Debug)]
pub struct Deps<S> {
    /// The database holding the source collections and the status records.
    pub database: Database,
    /// Where files go.
    pub storage: S,
    /// The status records.
    pub status: ExportStatusStore,
    /// Where finish and failure events are scheduled.
    pub push_queue: RedisQueue<PushJob>,
    /// Sends progress events directly.
    pub pusher: TuisongbaoClient,
    /// Export settings.
    pub settings: ExportSettings,
    /// Full queue name, for logs.
    pub queue: String,
    /// Runs an export gets; the last failing one records the failure.
    pub max_attempts: usize,
    /// Where finished exports' rows are counted.
    pub metrics: crate::ops::Metrics,
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
}

/// How a run ended (when it did not fail).
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    Finished { rows: u64 },
    Cancelled,
}

/// Handles one `export` job.
pub async fn handle<S: ExportStorage>(
    payload: serde_json::Value,
    deps: Data<Arc<Deps<S>>>,
    task_id: TaskId,
    attempt: Attempt,
) -> Result<(), BoxDynError> {
    let span = tracing::info_span!(
        "export",
        job_id = %task_id,
        queue = %deps.queue,
        attempt = attempt.current(),
        account_id = field::Empty,
        key = field::Empty,
    );
    let run = task_id.to_string();
    process(payload, &deps, &run, attempt.current())
        .instrument(span)
        .await
}

async fn process<S: ExportStorage>(
    payload: serde_json::Value,
    deps: &Deps<S>,
    run: &str,
    attempt: usize,
) -> Result<(), BoxDynError> {
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

    match export(&valid, deps, run).await {
        Ok(Ended::Finished { rows }) => {
            info!(rows, "export finished");
            deps.metrics.export_rows(rows);
            schedule(
                deps,
                valid.account,
                "export_finish",
                json!({ "key": valid.key }),
                format!("export_finish:{}:{run}", valid.key),
            )
            .await?;
            Ok(())
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

/// Records the failure and pushes `export_failed` (best effort: the job's
/// own failure is what matters; problems here are logged).
async fn report_failure<S: ExportStorage>(
    deps: &Deps<S>,
    key: &str,
    account: Option<AccountId>,
    run: &str,
    error: &str,
) {
    if let Err(e) = deps.status.fail(key, account, error).await {
        warn!(error = %e, "could not record the export's failure");
    }
    if let Some(account) = account {
        let data = json!({ "key": key, "error": error });
        if let Err(e) = schedule(
            deps,
            account,
            "export_failed",
            data,
            format!("export_failed:{key}:{run}"),
        )
        .await
        {
            warn!(error = %e, "could not schedule export_failed");
        }
    }
}

async fn schedule<S: ExportStorage>(
    deps: &Deps<S>,
    account: AccountId,
    event: &str,
    data: serde_json::Value,
    idempotency_key: String,
) -> Result<(), ExportError> {
    let job = PushJob::account_event(account, event, data, idempotency_key);
    let task = TaskBuilder::new(job.clone())
        .idempotency_key(&job.idempotency_key)
        .build();
    let mut queue = deps.push_queue.clone();
    queue
        .push_task(task)
        .await
        .map_err(|e| ExportError::Schedule(e.to_string()))
}

/// The producer's filter, always narrowed to the job's account.
///
/// The account condition is added as one more top-level field (top-level
/// conditions are ANDed, operators such as `$or` included), which servers
/// plan better than a `$and` of two documents: on SecantusDB counting
/// 100,000 rows took 0.2 s instead of 0.6 s. Only a filter that names the
/// account field itself is wrapped in `$and`, so neither condition can
/// replace the other.
pub fn narrowed_filter(valid: &ValidExport, account_field: &str) -> Document {
    let account = valid.account.object_id();
    if valid.filter.contains_key(account_field) {
        return doc! { "$and": [valid.filter.clone(), { account_field: account }] };
    }
    let mut filter = valid.filter.clone();
    filter.insert(account_field, account);
    filter
}

/// Runs the export; the partial file is removed on every path but success.
async fn export<S: ExportStorage>(
    valid: &ValidExport,
    deps: &Deps<S>,
    run: &str,
) -> Result<Ended, ExportError> {
    let source = deps.database.collection::<Document>(&valid.collection);
    let filter = narrowed_filter(valid, &deps.settings.account_field);
    if !deps
        .status
        .start(valid.account, &valid.key, &valid.collection)
        .await?
    {
        return Ok(Ended::Cancelled);
    }
    let (mut file, partial) = deps.storage.create(valid.account, &valid.key, run).await?;
    match write_rows(valid, deps, &source, filter, &mut file).await {
        Ok(Some(rows)) => {
            file.flush().await?;
            drop(file);
            let stored = deps.storage.commit(partial).await?;
            if deps
                .status
                .finish(&valid.key, rows, &stored.name, stored.size)
                .await?
            {
                Ok(Ended::Finished { rows })
            } else {
                // Cancelled in the instant before the commit: honour it.
                let _ = tokio::fs::remove_file(&stored.location).await;
                Ok(Ended::Cancelled)
            }
        }
        Ok(None) => {
            drop(file);
            deps.storage.discard(partial).await?;
            Ok(Ended::Cancelled)
        }
        Err(e) => {
            drop(file);
            discard_quietly(deps, partial).await;
            Err(e)
        }
    }
}

async fn discard_quietly<S: ExportStorage>(deps: &Deps<S>, partial: PartialFile) {
    if let Err(e) = deps.storage.discard(partial).await {
        warn!(error = %e, "could not remove a partial export file");
    }
}

/// Batches the cursor reader may run ahead of the CSV writer.
const READ_AHEAD_BATCHES: usize = 2;

/// Streams the rows; `Ok(None)` when the export was cancelled.
///
/// Four things overlap so that the export runs close to the speed of the
/// cursor itself: the rows are counted (for progress) by their own query
/// while the first ones are already written; a reader task fetches the
/// next batch of raw documents while this loop renders the current one (at
/// most [`READ_AHEAD_BATCHES`] ahead, so memory stays flat); the
/// cancellation check of one batch runs while the next is written; and
/// progress is recorded and pushed by a [`ProgressReporter`] task, which
/// always finishes before this returns — so every `export_progress` still
/// reaches the provider before the run's `export_finish`.
async fn write_rows<S: ExportStorage>(
    valid: &ValidExport,
    deps: &Deps<S>,
    source: &mongodb::Collection<Document>,
    filter: Document,
    file: &mut S::Writer,
) -> Result<Option<u64>, ExportError> {
    let settings = &deps.settings;
    let read_error = |source| ExportError::Read {
        collection: valid.collection.clone(),
        source,
    };
    let mut rows = csv_writer();
    file.write_all(BOM).await?;
    rows.write_record(valid.fields.iter().map(|f| f.title.as_str()))?;

    let count = count_rows(deps.database.clone(), &valid.collection, filter.clone());
    let mut progress = ProgressReporter::spawn(valid, deps, count);
    let cursor = source
        .clone_with_type::<RawDocumentBuf>()
        .find(filter)
        .sort(valid.sort.clone())
        .batch_size(settings.batch_size)
        .await
        .map_err(read_error)?;
    let (ahead, mut batches) = tokio::sync::mpsc::channel(READ_AHEAD_BATCHES);
    let _reader = AbortOnDrop(tokio::spawn(read_ahead(
        cursor,
        settings.batch_size.max(1) as usize,
        ahead,
    )));
    let mut cancel_check: Option<AbortOnDrop<Result<bool, StoreError>>> = None;

    let mut processed: u64 = 0;
    let mut cell = String::new();
    let paths = render::RowPaths::new(valid.fields.iter().map(|f| f.path.as_str()));
    while let Some(batch) = batches.recv().await {
        let batch = batch.map_err(read_error)?;
        let mut columns = vec![Vec::new(); paths.len()];
        for document in &batch {
            paths.resolve(document, &mut columns);
            for values in &columns {
                render::write_cell_raw(values, valid.time_zone, &mut cell);
                rows.write_field(&cell)?;
            }
            rows.write_record(None::<&[u8]>)?;
            processed += 1;
            progress.update(processed);
        }
        flush_rows(&mut rows, file).await?;
        if let Some(check) = cancel_check.take_if(|c| c.0.is_finished()) {
            if check.finish().await?? {
                return Ok(None);
            }
        }
        if cancel_check.is_none() {
            let status = deps.status.clone();
            let key = valid.key.clone();
            cancel_check = Some(AbortOnDrop(tokio::spawn(async move {
                status.is_cancelled(&key).await
            })));
        }
    }
    flush_rows(&mut rows, file).await?;
    progress.finish().await;
    if deps.status.is_cancelled(&valid.key).await? {
        return Ok(None);
    }
    Ok(Some(processed))
}

/// A spawned task that is aborted when its handle is dropped (an export
/// that ends early must not leave its helpers running).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    /// Waits for the task's result.
    async fn finish(mut self) -> Result<T, ExportError> {
        (&mut self.0)
            .await
            .map_err(|e| ExportError::Write(std::io::Error::other(e)))
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads the cursor into batches of `size` documents and sends them on,
/// until the cursor ends, fails (the error is sent) or nobody listens.
async fn read_ahead(
    mut cursor: mongodb::Cursor<RawDocumentBuf>,
    size: usize,
    ahead: tokio::sync::mpsc::Sender<Result<Vec<RawDocumentBuf>, mongodb::error::Error>>,
) {
    loop {
        let mut batch = Vec::with_capacity(size);
        let ended = loop {
            match cursor.try_next().await {
                Ok(Some(document)) => {
                    batch.push(document);
                    if batch.len() == size {
                        break false;
                    }
                }
                Ok(None) => break true,
                Err(e) => {
                    let _ = ahead.send(Err(e)).await;
                    return;
                }
            }
        };
        if !batch.is_empty() && ahead.send(Ok(batch)).await.is_err() {
            return;
        }
        if ended {
            return;
        }
    }
}

/// Records progress and sends `export_progress` from its own task, at most
/// every `progress_every_rows` rows or `progress_interval`. If the task is
/// still busy with one report when the next is due, only the newest waits
/// (each report supersedes the one before).
///
/// The total comes from a count that runs alongside the export: the task
/// reports nothing until it is known, then records it with the newest
/// number of written rows at once (which can be all of them: a fast export
/// then reports 100% just before it finishes). An export whose count fails
/// is exported without progress.
struct ProgressReporter {
    latest: tokio::sync::watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
    every_rows: u64,
    interval: std::time::Duration,
    reported: u64,
    last_report: Instant,
}

impl ProgressReporter {
    fn spawn<S, C>(valid: &ValidExport, deps: &Deps<S>, count: C) -> Self
    where
        S: ExportStorage,
        C: std::future::Future<Output = mongodb::error::Result<u64>> + Send + 'static,
    {
        let (latest, mut due) = tokio::sync::watch::channel(0_u64);
        let status = deps.status.clone();
        let pusher = deps.pusher.clone();
        let key = valid.key.clone();
        let account = valid.account;
        let task = tokio::spawn(
            async move {
                let Some(total) = await_total(AbortOnDrop(tokio::spawn(count))).await else {
                    return;
                };
                // The newest count of written rows first (it may already be
                // all of them), then each newer one.
                let mut processed = *due.borrow_and_update();
                loop {
                    report(&status, &pusher, account, &key, processed, total).await;
                    if due.changed().await.is_err() {
                        return;
                    }
                    processed = *due.borrow_and_update();
                }
            }
            .in_current_span(),
        );
        Self {
            latest,
            task,
            every_rows: deps.settings.progress_every_rows,
            interval: deps.settings.progress_interval,
            reported: 0,
            last_report: Instant::now(),
        }
    }

    /// Notes that `processed` rows are written; hands a report to the task
    /// when one is due.
    fn update(&mut self, processed: u64) {
        let due = processed - self.reported >= self.every_rows
            || self.last_report.elapsed() >= self.interval;
        if due {
            self.latest.send_replace(processed);
            self.reported = processed;
            self.last_report = Instant::now();
        }
    }

    /// Waits until the task has sent every report handed to it.
    async fn finish(self) {
        drop(self.latest);
        let _ = self.task.await;
    }
}

/// Counts the rows the export will write, for its progress.
///
/// This runs the `count` command rather than `count_documents`: the
/// command counts index keys where an index covers the filter, while
/// `count_documents` is an aggregation that reads every document (on
/// SecantusDB 2 to 3 times slower, time taken from the export it runs
/// beside). `count` can be off on a sharded cluster during chunk
/// migrations; the total only scales progress, and the finished record
/// carries the rows actually written.
fn count_rows(
    database: Database,
    collection: &str,
    filter: Document,
) -> impl std::future::Future<Output = mongodb::error::Result<u64>> + Send + 'static {
    let command = doc! { "count": collection, "query": filter };
    async move {
        let reply = database.run_command(command).await?;
        match reply.get("n") {
            Some(mongodb::bson::Bson::Int32(n)) => Ok((*n).max(0) as u64),
            Some(mongodb::bson::Bson::Int64(n)) => Ok((*n).max(0) as u64),
            Some(mongodb::bson::Bson::Double(n)) => Ok(n.max(0.0) as u64),
            _ => Err(mongodb::error::Error::custom(format!(
                "count answered without a number: {reply}"
            ))),
        }
    }
}

/// The count's result, or `None` if it failed (logged; the export goes on
/// without progress).
async fn await_total(mut counting: AbortOnDrop<mongodb::error::Result<u64>>) -> Option<u64> {
    match (&mut counting.0).await {
        Ok(Ok(total)) => Some(total),
        Ok(Err(e)) => {
            warn!(error = %e, "counting the export's rows failed; exporting without progress");
            None
        }
        Err(e) => {
            warn!(error = %e, "the export's count stopped; exporting without progress");
            None
        }
    }
}

/// Records `processed` of `total` and sends `export_progress` (only once
/// rows are written); failures are logged, the next report supersedes them.
async fn report(
    status: &ExportStatusStore,
    pusher: &TuisongbaoClient,
    account: AccountId,
    key: &str,
    processed: u64,
    total: u64,
) {
    if let Err(e) = status.progress(key, processed, total).await {
        warn!(error = %e, processed, "export progress not recorded; the next report supersedes it");
    }
    if processed == 0 {
        return;
    }
    let data = json!({
        "key": key, "processed": processed, "total": total,
        "percent": status::percent(processed, total),
    });
    let event = PushJob::account_event(account, "export_progress", data, String::new()).event;
    if let Err(e) = pusher.send(&event).await {
        warn!(error = %e, processed, "export_progress not delivered; the next one supersedes it");
    }
}

/// A CSV writer into memory; rows are moved to the file a batch at a time.
fn csv_writer() -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new().from_writer(Vec::with_capacity(64 * 1024))
}

/// Moves the CSV bytes written so far from memory to the file.
async fn flush_rows<W: tokio::io::AsyncWrite + Unpin>(
    rows: &mut csv::Writer<Vec<u8>>,
    file: &mut W,
) -> Result<(), ExportError> {
    let full = std::mem::replace(rows, csv_writer());
    let buffer = full
        .into_inner()
        .map_err(|e| ExportError::Write(e.into_error()))?;
    file.write_all(&buffer).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(filter: serde_json::Value) -> ValidExport {
        let limits = herald_jobs::ExportLimits {
            collections: ["customer".to_owned()].into(),
            default_time_zone: chrono_tz::Asia::Shanghai,
        };
        let mut job =
            crate::bench::export::job(AccountId::parse("5f0c8a3e2b1d4c0012345678").unwrap(), "k");
        job.filter = filter;
        job.validate(&limits).unwrap()
    }

    #[test]
    fn the_account_condition_joins_the_filter_at_the_top_level() {
        let account = mongodb::bson::oid::ObjectId::parse_str("5f0c8a3e2b1d4c0012345678").unwrap();
        assert_eq!(
            narrowed_filter(&valid(serde_json::json!({})), "accountId"),
            doc! { "accountId": account }
        );
        let narrowed = narrowed_filter(
            &valid(serde_json::json!({"$or": [{"vip": true}, {"seq": {"$gt": 5}}]})),
            "accountId",
        );
        assert_eq!(narrowed.get_object_id("accountId").unwrap(), account);
        assert!(narrowed.contains_key("$or"), "{narrowed}");
    }

    #[test]
    fn a_filter_naming_the_account_field_keeps_both_conditions() {
        let account = mongodb::bson::oid::ObjectId::parse_str("5f0c8a3e2b1d4c0012345678").unwrap();
        let narrowed = narrowed_filter(
            &valid(serde_json::json!({"accountId": {"$exists": true}})),
            "accountId",
        );
        assert_eq!(
            narrowed,
            doc! { "$and": [
                { "accountId": { "$exists": true } },
                { "accountId": account },
            ] }
        );
    }
}
