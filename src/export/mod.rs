//! Export jobs: one account's documents streamed into a CSV file.
//!
//! The [`handle`]r validates the job, narrows the query to the job's
//! account, then walks the cursor batch by batch, writing rows as they come
//! (memory stays flat whatever the row count). Every few hundred
//! milliseconds it checks for cancellation, and at most every
//! `progress_interval` it records progress and sends `export_progress`. On success the file is committed
//! atomically and `export_finish {key}` is pushed once; on failure the
//! record says why and `export_failed {key, error}` is pushed.
//!
//! Progress events are sent inline and best-effort (a lost one is
//! superseded by the next), so they always reach the provider before the
//! run's `export_finish`; finish and failure go through the `push` queue,
//! retried until delivered.
//!
//! - [`reader`]: the cursor, read a batch ahead of the writer.
//! - [`render`]: BSON values to spreadsheet cells.
//! - [`storage`]: where files go ([`storage::ExportStorage`]).
//! - [`status`]: the `export` status record.

pub mod reader;
pub mod render;
pub mod status;
pub mod storage;
pub mod submit;

use std::{
    collections::VecDeque,
    sync::Arc,
    time::{Duration, Instant},
};

use apalis::prelude::{AbortError, Attempt, BoxDynError, Data, TaskBuilder, TaskId, TaskSink};
use herald_jobs::{AccountId, Export, ValidExport, ValidationError};
use mongodb::{
    bson::{doc, Document, RawDocumentBuf},
    Database,
};
use serde_json::json;
use tokio::{io::AsyncWriteExt, sync::mpsc::error::TryRecvError};
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
            let scheduled = schedule(
                deps,
                valid.account,
                "export_finish",
                json!({ "key": valid.key }),
                format!("export_finish:{}:{run}", valid.key),
            )
            .await;
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

/// Batches the cursor reader may run ahead of the renderers.
const READ_AHEAD_BATCHES: usize = 2;

/// Batches rendered at once, each by its own task, so rendering uses every
/// core the runtime has while the file is written in order. (Rendering one
/// batch after another took twice as long as reading them from the
/// server.)
const RENDER_AHEAD_BATCHES: usize = 3;

/// Least time between two checks of whether a running export was
/// cancelled. Each check is a query on the status record; checking once a
/// batch meant thousands of them for a large export, competing with the
/// export's own cursor for the database.
const CANCEL_CHECK_INTERVAL: Duration = Duration::from_millis(200);

/// Streams the rows; `Ok(None)` when the export was cancelled.
///
/// Several things overlap so that the export runs close to the speed of
/// the cursor itself: a reader task fetches the next batch of raw
/// documents while this loop renders the current one (at most
/// [`READ_AHEAD_BATCHES`] ahead, so memory stays flat); the cancellation
/// check (at most every [`CANCEL_CHECK_INTERVAL`]) runs while the next
/// batches are written; and progress, with the count that gives its total,
/// is handled by a [`ProgressReporter`] task, which always finishes before
/// this returns — so every `export_progress` still reaches the provider
/// before the run's `export_finish`.
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
    let mut header = csv_writer();
    header.write_record(valid.fields.iter().map(|f| f.title.as_str()))?;
    file.write_all(BOM).await?;
    file.write_all(&csv_bytes(header)?).await?;

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
    let _reader = AbortOnDrop(tokio::spawn(reader::read_ahead(
        cursor,
        settings.batch_size as usize,
        ahead,
    )));
    let mut cancellation = CancelWatch::new(deps.status.clone(), valid.key.clone());

    let layout = Arc::new(render::RowLayout::new(
        valid.fields.iter().map(|f| f.path.as_str()),
        valid.time_zone,
    ));
    let mut rendering: VecDeque<AbortOnDrop<Result<RenderedBatch, csv::Error>>> = VecDeque::new();
    let mut read_all = false;
    let mut processed: u64 = 0;
    loop {
        // Hand every batch the reader has ready to a renderer (waiting for
        // the reader only when nothing is being rendered).
        while rendering.len() < RENDER_AHEAD_BATCHES && !read_all {
            let next = if rendering.is_empty() {
                batches.recv().await
            } else {
                match batches.try_recv() {
                    Ok(batch) => Some(batch),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => None,
                }
            };
            match next {
                Some(batch) => {
                    let batch = batch.map_err(read_error)?;
                    rendering.push_back(AbortOnDrop(tokio::spawn(render_batch(
                        batch,
                        layout.clone(),
                    ))));
                }
                None => read_all = true,
            }
        }
        let Some(oldest) = rendering.pop_front() else {
            break;
        };
        let rendered = oldest.finish().await??;
        file.write_all(&rendered.csv).await?;
        processed += rendered.rows;
        progress.update(processed);
        if cancellation.seen().await? {
            return Ok(None);
        }
    }
    progress.finish(processed).await;
    if deps.status.is_cancelled(&valid.key).await? {
        return Ok(None);
    }
    Ok(Some(processed))
}

/// A batch of documents as CSV rows.
struct RenderedBatch {
    /// Rows in it.
    rows: u64,
    /// Their CSV text.
    csv: Vec<u8>,
}

/// Renders one batch (run as its own task, so batches render in parallel).
async fn render_batch(
    batch: reader::DocumentBatch,
    layout: Arc<render::RowLayout>,
) -> Result<RenderedBatch, csv::Error> {
    let mut rows = csv_writer();
    layout.write_rows(batch.iter(), &mut rows)?;
    Ok(RenderedBatch {
        rows: batch.len() as u64,
        csv: csv_bytes(rows)?,
    })
}

/// Watches a running export's status record for a cancellation, with one
/// query in flight at most and at most one every [`CANCEL_CHECK_INTERVAL`];
/// the query runs in the background while rows are written.
struct CancelWatch {
    status: ExportStatusStore,
    key: String,
    running: Option<AbortOnDrop<Result<bool, StoreError>>>,
    next: Instant,
}

impl CancelWatch {
    fn new(status: ExportStatusStore, key: String) -> Self {
        Self {
            status,
            key,
            running: None,
            next: Instant::now() + CANCEL_CHECK_INTERVAL,
        }
    }

    /// Whether a finished check found the export cancelled; starts the next
    /// check when one is due.
    async fn seen(&mut self) -> Result<bool, ExportError> {
        if let Some(check) = self.running.take_if(|c| c.0.is_finished()) {
            if check.finish().await?? {
                return Ok(true);
            }
        }
        if self.running.is_none() && Instant::now() >= self.next {
            self.next = Instant::now() + CANCEL_CHECK_INTERVAL;
            let status = self.status.clone();
            let key = self.key.clone();
            self.running = Some(AbortOnDrop(tokio::spawn(async move {
                status.is_cancelled(&key).await
            })));
        }
        Ok(false)
    }
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

/// One hand-over from the export loop to its [`ProgressReporter`] task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Written {
    /// Rows written so far.
    rows: u64,
    /// Whether these are all the rows (the export's last report).
    all: bool,
}

/// Records progress and sends `export_progress` from its own task, at most
/// every `progress_interval` while rows are written and once more when the
/// last one is. If the task is still busy with one report when the next is
/// due, only the newest waits (each report supersedes the one before).
///
/// The limit is time, not rows: a progress bar needs a few updates a
/// second, and a provider bills and rate-limits each event. (Reporting
/// every thousand rows sent hundreds of events a second for a fast export,
/// and their status updates competed with its cursor.)
///
/// The total comes from a count that starts when the export has run for
/// one interval: an export that ends sooner never counts (its total is the
/// rows it wrote), which spares the database a second query over the same
/// rows for the many small exports. Reports wait for the count; the last
/// one does not (its total is the rows written). An export whose count
/// fails reports only its end.
struct ProgressReporter {
    latest: tokio::sync::watch::Sender<Written>,
    task: tokio::task::JoinHandle<()>,
    interval: Duration,
    last_report: Instant,
}

impl ProgressReporter {
    fn spawn<S, C>(valid: &ValidExport, deps: &Deps<S>, count: C) -> Self
    where
        S: ExportStorage,
        C: std::future::Future<Output = mongodb::error::Result<u64>> + Send + 'static,
    {
        let (latest, due) = tokio::sync::watch::channel(Written::default());
        let sink = ProgressSink {
            status: deps.status.clone(),
            pusher: deps.pusher.clone(),
            account: valid.account,
            key: valid.key.clone(),
            sent: None,
        };
        let interval = deps.settings.progress_interval;
        let task = tokio::spawn(sink.run(due, count, interval).in_current_span());
        Self {
            latest,
            task,
            interval,
            last_report: Instant::now(),
        }
    }

    /// Notes that `rows` rows are written; hands a report to the task when
    /// one is due.
    fn update(&mut self, rows: u64) {
        if self.last_report.elapsed() >= self.interval {
            self.latest.send_replace(Written { rows, all: false });
            self.last_report = Instant::now();
        }
    }

    /// Hands over the final count of written rows and waits until the task
    /// has sent every report.
    async fn finish(self, rows: u64) {
        self.latest.send_replace(Written { rows, all: true });
        drop(self.latest);
        let _ = self.task.await;
    }
}

/// Where a [`ProgressReporter`]'s reports go: the status record and the
/// provider.
struct ProgressSink {
    status: ExportStatusStore,
    pusher: TuisongbaoClient,
    account: AccountId,
    key: String,
    /// The last report made, to skip a repeat of it.
    sent: Option<(u64, u64)>,
}

impl ProgressSink {
    /// Reports what `due` hands over until the export's last report or
    /// until the export is dropped (cancelled, failed).
    async fn run<C>(
        mut self,
        mut due: tokio::sync::watch::Receiver<Written>,
        count: C,
        count_after: Duration,
    ) where
        C: std::future::Future<Output = mongodb::error::Result<u64>> + Send + 'static,
    {
        let ended_early = tokio::select! {
            _ = tokio::time::sleep(count_after) => None,
            last = wait_for_all(&mut due) => Some(last),
        };
        if let Some(last) = ended_early {
            if let Some(rows) = last {
                self.report(rows, rows).await;
            }
            return;
        }
        let mut counting = AbortOnDrop(tokio::spawn(count));
        let total = tokio::select! {
            total = await_total(&mut counting) => total,
            last = wait_for_all(&mut due) => {
                if let Some(rows) = last {
                    self.report(rows, rows).await;
                }
                return;
            }
        };
        let mut written = *due.borrow_and_update();
        loop {
            match total {
                _ if written.all => return self.report(written.rows, written.rows).await,
                Some(total) => self.report(written.rows, total).await,
                None => {}
            }
            if due.changed().await.is_err() {
                return;
            }
            written = *due.borrow_and_update();
        }
    }

    /// Records `processed` of `total` and sends `export_progress` (only once
    /// rows are written, and not twice the same); failures are logged, the
    /// next report supersedes them.
    async fn report(&mut self, processed: u64, total: u64) {
        if self.sent == Some((processed, total)) {
            return;
        }
        self.sent = Some((processed, total));
        if let Err(e) = self.status.progress(&self.key, processed, total).await {
            warn!(error = %e, processed, "export progress not recorded; the next report supersedes it");
        }
        if processed == 0 {
            return;
        }
        let data = json!({
            "key": self.key, "processed": processed, "total": total,
            "percent": status::percent(processed, total),
        });
        let event =
            PushJob::account_event(self.account, "export_progress", data, String::new()).event;
        if let Err(e) = self.pusher.send(&event).await {
            warn!(error = %e, processed, "export_progress not delivered; the next one supersedes it");
        }
    }
}

/// Waits for the export's last report; its rows, or `None` if the export
/// was dropped without one.
async fn wait_for_all(due: &mut tokio::sync::watch::Receiver<Written>) -> Option<u64> {
    loop {
        due.changed().await.ok()?;
        let written = *due.borrow_and_update();
        if written.all {
            return Some(written.rows);
        }
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
/// and reports only its end).
async fn await_total(counting: &mut AbortOnDrop<mongodb::error::Result<u64>>) -> Option<u64> {
    match (&mut counting.0).await {
        Ok(Ok(total)) => Some(total),
        Ok(Err(e)) => {
            warn!(error = %e, "counting the export's rows failed; only the end will be reported");
            None
        }
        Err(e) => {
            warn!(error = %e, "the export's count stopped; only the end will be reported");
            None
        }
    }
}

/// A CSV writer into memory (a batch's rows, or the header).
fn csv_writer() -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new().from_writer(Vec::with_capacity(64 * 1024))
}

/// The bytes a [`csv_writer`] holds.
fn csv_bytes(writer: csv::Writer<Vec<u8>>) -> Result<Vec<u8>, csv::Error> {
    writer
        .into_inner()
        .map_err(|e| csv::Error::from(e.into_error()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(filter: serde_json::Value) -> ValidExport {
        let limits = herald_jobs::ExportLimits {
            collections: ["customer".to_owned()].into(),
            default_time_zone: chrono_tz::Asia::Shanghai,
        };
        let mut job: Export = serde_json::from_value(serde_json::json!({
            "accountId": "5f0c8a3e2b1d4c0012345678",
            "key": "k",
            "collection": "customer",
            "fields": [{ "path": "seq", "title": "No" }],
        }))
        .unwrap();
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
