//! Reporting a running export's progress: the status record's counters and
//! the `export_progress` event.
//!
//! The export loop only notes how many rows it wrote
//! ([`ProgressReporter::update`]); a task of its own records and sends the
//! reports, so a slow database or provider never holds the rows up.
//!
//! The limit is time, not rows: at most one report every
//! `progress_interval` while rows are written, and one more when the last
//! one is. A progress bar needs a few updates a second, and a provider
//! bills and rate-limits each event. (Reporting every thousand rows sent
//! hundreds of events a second for a fast export, and their status updates
//! competed with its cursor.) If the task is still busy with one report
//! when the next is due, only the newest waits: each report supersedes the
//! one before.
//!
//! The total comes from a count that starts when the export has run for
//! one interval: an export that ends sooner never counts (its total is the
//! rows it wrote), which spares the database a second query over the same
//! rows for the many small exports. Reports wait for the count; the last
//! one does not (its total is the rows written). An export whose count
//! fails reports only its end.

use std::{
    future::Future,
    time::{Duration, Instant},
};

use herald_jobs::{AccountId, ValidExport};
use tokio::{sync::watch, task::JoinHandle};
use tracing::{warn, Instrument};

use super::{events, status::ExportStatusStore, task::AbortOnDrop};
use crate::push::EventPusher;

/// One hand-over from the export loop to its reporting task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Written {
    /// Rows written so far.
    rows: u64,
    /// Whether these are all the rows (the export's last report).
    all: bool,
}

/// The export loop's end of the progress reports: hands rows written to
/// the reporting task when a report is due.
pub(super) struct ProgressReporter {
    latest: watch::Sender<Written>,
    task: JoinHandle<()>,
    interval: Duration,
    last_report: Instant,
}

impl ProgressReporter {
    /// Starts the reporting task of export `valid`: reports go to `status`
    /// and through `pusher`, at most every `interval`, their total from
    /// `count`.
    pub(super) fn spawn<P, C>(
        valid: &ValidExport,
        status: ExportStatusStore,
        pusher: P,
        interval: Duration,
        count: C,
    ) -> Self
    where
        P: EventPusher,
        C: Future<Output = mongodb::error::Result<u64>> + Send + 'static,
    {
        let (latest, due) = watch::channel(Written::default());
        let sink = ProgressSink {
            status,
            pusher,
            account: valid.account,
            key: valid.key.clone(),
            sent: None,
        };
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
    pub(super) fn update(&mut self, rows: u64) {
        if self.last_report.elapsed() >= self.interval {
            self.latest.send_replace(Written { rows, all: false });
            self.last_report = Instant::now();
        }
    }

    /// Hands over the final count of written rows and waits until the task
    /// has sent every report.
    pub(super) async fn finish(self, rows: u64) {
        self.latest.send_replace(Written { rows, all: true });
        drop(self.latest);
        let _ = self.task.await;
    }
}

/// Where a [`ProgressReporter`]'s reports go: the status record and the
/// provider.
struct ProgressSink<P> {
    status: ExportStatusStore,
    pusher: P,
    account: AccountId,
    key: herald_jobs::ExportKey,
    /// The last report made, to skip a repeat of it.
    sent: Option<(u64, u64)>,
}

impl<P: EventPusher> ProgressSink<P> {
    /// Reports what `due` hands over until the export's last report or
    /// until the export is dropped (cancelled, failed).
    async fn run<C>(mut self, mut due: watch::Receiver<Written>, count: C, count_after: Duration)
    where
        C: Future<Output = mongodb::error::Result<u64>> + Send + 'static,
    {
        let ended_early = tokio::select! {
            _ = tokio::time::sleep(count_after) => None,
            last = wait_for_all(&mut due) => Some(last),
        };
        if let Some(last) = ended_early {
            return self.report_end(last).await;
        }
        let mut counting = AbortOnDrop::spawn(count);
        let total = tokio::select! {
            total = await_total(&mut counting) => total,
            last = wait_for_all(&mut due) => return self.report_end(last).await,
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

    /// The last report of an export that ended before its count was in:
    /// its rows are its total. Nothing when the export was dropped.
    async fn report_end(&mut self, last: Option<u64>) {
        if let Some(rows) = last {
            self.report(rows, rows).await;
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
        if let Err(e) = self
            .status
            .progress(self.account, &self.key, processed, total)
            .await
        {
            warn!(error = %e, processed, "export progress not recorded; the next report supersedes it");
        }
        if processed == 0 {
            return;
        }
        let event = events::progress(self.account, &self.key, processed, total);
        if let Err(e) = self.pusher.send(&event).await {
            warn!(error = %e, processed, "export_progress not delivered; the next one supersedes it");
        }
    }
}

/// Waits for the export's last report; its rows, or `None` if the export
/// was dropped without one.
async fn wait_for_all(due: &mut watch::Receiver<Written>) -> Option<u64> {
    loop {
        due.changed().await.ok()?;
        let written = *due.borrow_and_update();
        if written.all {
            return Some(written.rows);
        }
    }
}

/// The count's result, or `None` if it failed (logged; the export goes on
/// and reports only its end).
async fn await_total(counting: &mut AbortOnDrop<mongodb::error::Result<u64>>) -> Option<u64> {
    match counting.await {
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
