//! The rows: a cursor streamed into the file as CSV.
//!
//! Several things overlap so that the export runs close to the speed of
//! the cursor itself:
//!
//! - a reader task ([`super::reader`]) fetches the next batch of raw
//!   documents while the current ones are rendered, at most
//!   [`READ_AHEAD_BATCHES`] ahead, so memory stays flat;
//! - up to [`RENDER_AHEAD_BATCHES`] batches are rendered at once, each by
//!   its own task, so rendering uses every core the runtime has while the
//!   file is still written in order. (Rendering one batch after another
//!   took twice as long as reading them from the server.);
//! - the cancellation check ([`super::cancel`]) runs in the background
//!   while the next batches are written;
//! - progress, with the count that gives its total, is handled by a
//!   [`ProgressReporter`] task, which always finishes before
//!   [`write_rows`] returns, so every `export_progress` still reaches the
//!   provider before the run's `export_finish`.
//!
//! The file is the UTF-8 byte order mark (spreadsheet programs then read
//! Chinese text right), a header row of the column titles, then one row
//! per document.
//!
//! Two limits hold while rows are written: `export.max_rows` (the file
//! stops growing past it and the export fails naming the setting) and
//! `export.max_query_ms`, sent to the server as the cursor's `maxTimeMS`
//! and kept by this process's clock as well, so a server that applies the
//! time limit to each batch alone still cannot run one export for longer.

use std::{collections::VecDeque, sync::Arc, time::Instant};

use herald_jobs::ValidExport;
use mongodb::bson::{Document, RawDocumentBuf};
use tokio::{
    io::{AsyncWrite, AsyncWriteExt},
    sync::mpsc::{self, error::TryRecvError},
};

use super::{
    cancel::CancelWatch,
    progress::ProgressReporter,
    query, reader,
    render::{self, RowLayout},
    task::AbortOnDrop,
    Deps, ExportError,
};
use crate::push::EventPusher;

/// The UTF-8 byte order mark.
const BOM: &[u8] = "\u{feff}".as_bytes();

/// Batches the cursor reader may run ahead of the renderers.
const READ_AHEAD_BATCHES: usize = 2;

/// Batches rendered at once, each by its own task.
const RENDER_AHEAD_BATCHES: usize = 3;

/// Streams the rows matching `filter` into `file`; their number, or
/// `Ok(None)` when the export was cancelled.
pub(super) async fn write_rows<S, P>(
    valid: &ValidExport,
    deps: &Deps<S, P>,
    filter: Document,
    file: &mut (impl AsyncWrite + Unpin),
) -> Result<Option<u64>, ExportError>
where
    P: EventPusher + Clone,
{
    let settings = &deps.settings;
    // The time limit counts from here: the count and the scan both run
    // within it.
    let started = Instant::now();
    let timed_out = || ExportError::TimedOut {
        limit_ms: settings.max_query.as_millis(),
    };
    let read_error = |source: mongodb::error::Error| {
        if super::is_time_limit(&source) {
            timed_out()
        } else {
            ExportError::Read {
                collection: valid.collection.clone(),
                source,
            }
        }
    };
    let mut header = csv_writer();
    header.write_record(
        valid
            .fields
            .iter()
            .map(|f| render::header_cell(&f.title).into_owned()),
    )?;
    file.write_all(BOM).await?;
    file.write_all(&csv_bytes(header)?).await?;

    let count = query::count_rows(
        deps.database.clone(),
        &valid.collection,
        filter.clone(),
        settings.max_query,
    );
    let mut progress = ProgressReporter::spawn(
        valid,
        deps.status.clone(),
        deps.pusher.clone(),
        settings.progress_interval,
        count,
    );
    let cursor = deps
        .database
        .collection::<RawDocumentBuf>(&valid.collection)
        .find(filter)
        .sort(valid.sort.clone())
        .batch_size(settings.batch_size)
        .max_time(settings.max_query)
        .await
        .map_err(read_error)?;
    let (ahead, mut batches) = mpsc::channel(READ_AHEAD_BATCHES);
    let _reader = AbortOnDrop::spawn(reader::read_ahead(
        cursor,
        settings.batch_size as usize,
        ahead,
    ));
    let mut cancellation = CancelWatch::new(deps.status.clone(), valid.account, valid.key.clone());

    let layout = Arc::new(RowLayout::new(
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
                let deadline = tokio::time::Instant::from_std(started + settings.max_query);
                tokio::time::timeout_at(deadline, batches.recv())
                    .await
                    .map_err(|_| timed_out())?
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
                    rendering.push_back(AbortOnDrop::spawn(render_batch(batch, layout.clone())));
                }
                None => read_all = true,
            }
        }
        let Some(oldest) = rendering.pop_front() else {
            break;
        };
        let rendered = oldest.finish().await??;
        if processed + rendered.rows > settings.max_rows {
            return Err(ExportError::TooManyRows {
                limit: settings.max_rows,
            });
        }
        if started.elapsed() > settings.max_query {
            return Err(timed_out());
        }
        file.write_all(&rendered.csv).await?;
        processed += rendered.rows;
        progress.update(processed);
        if cancellation.seen().await? {
            return Ok(None);
        }
    }
    progress.finish(processed).await;
    if deps.status.is_cancelled(valid.account, &valid.key).await? {
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
    layout: Arc<RowLayout>,
) -> Result<RenderedBatch, csv::Error> {
    let mut rows = csv_writer();
    layout.write_rows(batch.iter(), &mut rows)?;
    Ok(RenderedBatch {
        rows: batch.len() as u64,
        csv: csv_bytes(rows)?,
    })
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
