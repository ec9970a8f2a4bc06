//! How long a small export takes from the producer's call to its
//! `export_finish` event, against a raw read of the same documents written
//! to a file and synced, measured in alternating trials.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use futures::TryStreamExt;
use herald::{config::Settings, export::status::ExportStatusStore};
use herald_jobs::{AccountId, Producer};
use mongodb::{
    bson::{doc, Document},
    Database,
};
use tokio::io::AsyncWriteExt;

use super::{
    process::Spawned,
    send::{arrivals, Sent},
};
use crate::{
    export::{export_key, job, seed, warm_up, SOURCE_COLLECTION},
    pipeline::{recorder::Receipts, unique_suffix},
    queue::BenchError,
};

/// Longest an export of the benchmark's size may take to finish.
const PATIENCE: Duration = Duration::from_secs(120);

/// Every trial's export time and baseline time.
#[derive(Debug, Clone)]
pub struct ExportStart {
    /// Documents exported.
    pub rows: u64,
    /// From the enqueue call to the `export_finish` arrival, per trial.
    pub export: Vec<Duration>,
    /// The raw read, written and synced, per trial.
    pub baseline: Vec<Duration>,
}

impl ExportStart {
    /// The median export time.
    pub fn export_median(&self) -> Duration {
        median(&self.export)
    }

    /// The median baseline time.
    pub fn baseline_median(&self) -> Duration {
        median(&self.baseline)
    }

    /// The median export time over the median baseline time.
    pub fn ratio(&self) -> f64 {
        self.export_median().as_secs_f64() / self.baseline_median().as_secs_f64().max(1e-9)
    }
}

/// The middle value (the lower middle one of an even count).
fn median(values: &[Duration]) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted
        .get(sorted.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or_default()
}

/// What the export part needs of the running services.
pub(super) struct Services<'a> {
    /// The run's database (the worker's too).
    pub database: &'a Database,
    /// A producer on the run's namespace.
    pub producer: &'a mut Producer,
    /// The recorder's receipts.
    pub receipts: &'a Receipts,
    /// The running `herald worker`.
    pub worker: &'a mut Spawned,
}

/// Seeds one account with `rows` documents, reads them once untimed, then
/// runs `trials` trials of the baseline and the export back to back.
pub(super) async fn measure(
    settings: &Settings,
    services: Services<'_>,
    rows: u64,
    trials: usize,
) -> Result<ExportStart, BenchError> {
    let Services {
        database,
        producer,
        receipts,
        worker,
    } = services;
    let (account, _) = seed(database, &[rows])
        .await?
        .pop()
        .ok_or_else(|| BenchError::Invalid("nothing seeded".into()))?;
    warm_up(database, account).await?;
    tokio::fs::create_dir_all(&settings.export.dir).await?;
    let status = ExportStatusStore::new(database);
    let mut measured = ExportStart {
        rows,
        export: Vec::new(),
        baseline: Vec::new(),
    };
    for trial in 0..trials.max(1) {
        let file = settings.export.dir.join(format!("baseline-{trial}.csv"));
        let (read, took) = raw_read(database, account, &file, settings.export.batch_size).await?;
        if read != rows {
            return Err(BenchError::Invalid(format!(
                "the raw read found {read} of {rows} documents"
            )));
        }
        measured.baseline.push(took);
        let key = format!("latency-{}", unique_suffix());
        status
            .queued(account, &export_key(&key)?, SOURCE_COLLECTION)
            .await?;
        let at = Instant::now();
        producer
            .enqueue_export(job(account, &key))
            .await
            .map_err(|e| BenchError::Enqueue(e.to_string()))?;
        let sent = Sent::from([(format!("export_finish:{key}"), at)]);
        let arrived = arrivals(receipts, &sent, worker, PATIENCE).await?;
        measured
            .export
            .push(arrived.last.saturating_duration_since(at));
    }
    Ok(measured)
}

/// Reads `account`'s documents in the export's order with the driver,
/// writes each as a CSV-ish line to `file` and syncs it; returns the
/// documents read and the time taken.
async fn raw_read(
    database: &Database,
    account: AccountId,
    file: &Path,
    batch_size: u32,
) -> Result<(u64, Duration), BenchError> {
    let begun = Instant::now();
    let mut cursor = database
        .collection::<Document>(SOURCE_COLLECTION)
        .find(doc! { "accountId": account.object_id() })
        .sort(doc! { "seq": 1 })
        .batch_size(batch_size)
        .await?;
    let mut out = tokio::io::BufWriter::new(tokio::fs::File::create(file).await?);
    out.write_all(b"No,Name,City,Tags,Created\n").await?;
    let mut rows = 0;
    while let Some(document) = cursor.try_next().await? {
        out.write_all(csv_line(&document).as_bytes()).await?;
        rows += 1;
    }
    out.flush().await?;
    out.into_inner().sync_all().await?;
    Ok((rows, begun.elapsed()))
}

/// One seeded document as a line of the export's columns (no quoting:
/// the seeded values hold no commas).
fn csv_line(document: &Document) -> String {
    let seq = document.get_i64("seq").unwrap_or_default();
    let name = document.get_str("name").unwrap_or_default();
    let city = document
        .get_document("profile")
        .and_then(|p| p.get_str("city"))
        .unwrap_or_default();
    let tags: Vec<&str> = document
        .get_array("tags")
        .map(|tags| tags.iter().filter_map(|t| t.as_str()).collect())
        .unwrap_or_default();
    let created = document
        .get_datetime("createdAt")
        .ok()
        .and_then(|d| d.try_to_rfc3339_string().ok())
        .unwrap_or_default();
    format!("{seq},{name},{city},{},{created}\n", tags.join(";"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_is_the_lower_middle_value() {
        let ms = Duration::from_millis;
        assert_eq!(median(&[ms(5), ms(1), ms(3)]), ms(3));
        assert_eq!(median(&[ms(4), ms(1), ms(9), ms(2)]), ms(2));
        assert_eq!(median(&[]), Duration::ZERO);
    }

    #[test]
    fn a_document_becomes_one_line_of_the_exported_columns() {
        let document = doc! {
            "seq": 7_i64, "name": "客户 7", "profile": { "city": "上海" },
            "tags": ["vip", "new"],
            "createdAt": mongodb::bson::DateTime::from_millis(0),
        };
        assert_eq!(
            csv_line(&document),
            "7,客户 7,上海,vip;new,1970-01-01T00:00:00Z\n"
        );
    }
}
