//! Export rows per second and peak memory, against a raw cursor scan.
//!
//! One collection (`customer`) is seeded with one account per size, each
//! with that many documents (number, text, nested path, array, date), and
//! an index on `{accountId: 1, seq: 1}`. Then, for each size:
//!
//! - the baseline: a child process (`herald-bench export-scan`) runs the
//!   export's own query — the same narrowed filter, sort and batch size —
//!   and walks the cursor without rendering anything;
//! - the export: a child process (`herald-bench worker`, which runs what
//!   `herald worker` runs, with the same allocator) runs the real export
//!   job (rendering, CSV file, status record, progress events to a
//!   sandbox). Its time is the status record's `startedAt` → `finishedAt`;
//! - with storage `s3` as well: the same export by a worker whose
//!   `export.storage` is `s3`, streaming a multipart upload to s3s-fs on
//!   loopback ([`crate::s3`]), so the two peaks stand side by side.
//!
//! Each size runs `trials` trials, each a scan and an export (and the S3
//! export) back to back, so baseline and subject alternate and a slow spell
//! of the machine lands on both sides of a ratio; the result is the trial
//! with the median ratio, and every trial's ratios, local and S3, which the
//! targets judge by a confidence interval of their median
//! ([`crate::report::Verdict`]).
//! Before the first measurement every account's documents are read once,
//! untimed. Each child's peak resident memory (`VmHWM` in `/proc/<pid>/status`) is
//! its own, so the figure is the export's and the scan's, not the
//! benchmark's. The run uses its own database, namespace and directory and
//! removes them afterwards.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use futures::TryStreamExt;
use herald::{config::Settings, export::status::ExportStatusStore, store};
use herald_jobs::{AccountId, Export, ExportField, ExportSort, Producer};
use herald_push_sandbox as sandbox;
use mongodb::{
    bson::{doc, oid::ObjectId, DateTime, Document, RawDocumentBuf},
    Database, IndexModel,
};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::{pipeline::unique_suffix, queue::BenchError, Row};

/// The seeded collection.
pub const SOURCE_COLLECTION: &str = "customer";

/// Documents per `insert_many` while seeding.
const SEED_BATCH: usize = 10_000;

/// What one size measured.
#[derive(Debug, Clone)]
pub struct Measured {
    /// Documents of the account.
    pub rows: u64,
    /// The raw cursor scan.
    pub scan: Row,
    /// The scan process's peak resident memory, KiB.
    pub scan_peak_kib: u64,
    /// The export.
    pub export: Row,
    /// The worker process's peak resident memory, KiB.
    pub export_peak_kib: u64,
    /// Size of the CSV file, bytes.
    pub file_bytes: u64,
    /// Each trial's export rate over its scan rate.
    pub trial_ratios: Vec<f64>,
    /// Each trial's S3 export rate over its scan rate (empty without S3).
    pub s3_trial_ratios: Vec<f64>,
    /// The same export to S3, when measured: its row and its worker's
    /// peak resident memory, KiB.
    pub s3: Option<(Row, u64)>,
}

/// What `herald-bench export-scan` prints (one JSON line).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanReport {
    /// Documents read.
    pub rows: u64,
    /// Seconds from opening the cursor to its end.
    pub seconds: f64,
    /// This process's peak resident memory, KiB.
    pub peak_kib: u64,
}

/// `key` as an export key; a benchmark's keys are always valid ones.
pub fn export_key(key: &str) -> Result<herald_jobs::ExportKey, BenchError> {
    herald_jobs::ExportKey::parse(key).map_err(|e| BenchError::Invalid(e.to_string()))
}

/// The export job measured for `account` (also what the scan runs).
pub fn job(account: AccountId, key: &str) -> Export {
    let field = |path: &str, title: &str| ExportField {
        path: path.to_owned(),
        title: title.to_owned(),
    };
    Export {
        account_id: account.to_hex(),
        key: key.to_owned(),
        collection: SOURCE_COLLECTION.to_owned(),
        filter: serde_json::json!({}),
        fields: vec![
            field("seq", "No"),
            field("name", "Name"),
            field("profile.city", "City"),
            field("tags", "Tags"),
            field("createdAt", "Created"),
        ],
        sort: vec![ExportSort {
            path: "seq".to_owned(),
            order: "asc".to_owned(),
        }],
        time_zone: None,

        traceparent: None,
    }
}

/// Runs each size in `sizes`, `trials` times, with the services of `settings`.
/// With `s3`, each trial also exports to an S3 server started for the run.
pub async fn run(
    settings: &Settings,
    sizes: &[u64],
    trials: usize,
    s3: bool,
) -> Result<Vec<Measured>, BenchError> {
    let suffix = unique_suffix();
    let mut settings = settings.clone();
    settings.redis.namespace =
        herald_jobs::Namespace::parse(&format!("herald-bench-export-{suffix}"))
            .map_err(|e| BenchError::Enqueue(e.to_string()))?;
    settings.mongodb.database = format!("herald_bench_export_{suffix}");
    settings.export.dir = std::env::temp_dir().join(format!("herald-bench-export-{suffix}"));

    let (addr, sandbox_task) = sandbox::spawn(
        ([127, 0, 0, 1], 0).into(),
        sandbox::SandboxCredentials {
            app_id: settings.tuisongbao.app_id.clone(),
            secret: settings.tuisongbao.secret.expose_secret().to_owned(),
        },
    )
    .await?;
    settings.tuisongbao.url = reqwest::Url::parse(&format!("http://{addr}"))
        .map_err(|e| BenchError::Enqueue(e.to_string()))?;

    let database = store::connect(&settings.mongodb).await?;
    let result = async {
        let s3 = match s3 {
            true => Some(crate::s3::S3Server::start().await?),
            false => None,
        };
        let accounts = seed(&database, sizes).await?;
        for (account, _) in &accounts {
            warm_up(&database, *account).await?;
        }
        let mut results = Vec::new();
        for (account, rows) in accounts {
            let mut measured = Vec::new();
            for _ in 0..trials.max(1) {
                measured.push(measure(&settings, &database, account, rows, s3.as_ref()).await?);
            }
            results.push(median_trial(measured));
        }
        Ok(results)
    }
    .await;
    sandbox_task.abort();
    let _ = database.drop().await;
    let _ = std::fs::remove_dir_all(&settings.export.dir);
    let mut conn = herald::queue::connect(settings.redis.url.as_str()).await?;
    super::queue::cleanup(&mut conn, &settings.redis.namespace.key_pattern()).await?;
    result
}

/// Seeds one account per size; returns each account and its row count.
pub(crate) async fn seed(
    database: &Database,
    sizes: &[u64],
) -> Result<Vec<(AccountId, u64)>, BenchError> {
    let collection = database.collection::<Document>(SOURCE_COLLECTION);
    let start = DateTime::parse_rfc3339_str("2026-01-01T00:00:00Z")
        .map_err(|e| BenchError::Invalid(e.to_string()))?
        .timestamp_millis();
    let mut accounts = Vec::new();
    for &size in sizes {
        let account = ObjectId::new();
        let mut batch = Vec::with_capacity(SEED_BATCH);
        for i in 0..size {
            batch.push(doc! {
                "accountId": account,
                "seq": i as i64,
                "name": format!("客户 {i}"),
                "profile": { "city": "上海" },
                "tags": ["vip", "new"],
                "createdAt": DateTime::from_millis(start + i as i64 * 1000),
            });
            if batch.len() == SEED_BATCH {
                collection.insert_many(std::mem::take(&mut batch)).await?;
            }
        }
        if !batch.is_empty() {
            collection.insert_many(batch).await?;
        }
        accounts.push((AccountId::from(account), size));
    }
    collection
        .create_index(
            IndexModel::builder()
                .keys(doc! { "accountId": 1, "seq": 1 })
                .build(),
        )
        .await?;
    Ok(accounts)
}

/// Reads an account's documents once, untimed, so the first measurement
/// does not pay for the server settling after the seeding (on SecantusDB the
/// first scan after a million inserts took up to three times as long).
pub(crate) async fn warm_up(database: &Database, account: AccountId) -> Result<(), BenchError> {
    let mut cursor = database
        .collection::<RawDocumentBuf>(SOURCE_COLLECTION)
        .find(doc! { "accountId": account.object_id() })
        .sort(doc! { "seq": 1 })
        .await?;
    while cursor.try_next().await?.is_some() {}
    Ok(())
}

/// Variables that point a child process at this run's services.
pub(crate) fn child_env(settings: &Settings) -> Vec<(&'static str, String)> {
    vec![
        ("HERALD_REDIS_URL", settings.redis.url.clone()),
        (
            "HERALD_REDIS_NAMESPACE",
            settings.redis.namespace.as_str().to_owned(),
        ),
        ("HERALD_MONGODB_URL", settings.mongodb.url.clone()),
        ("HERALD_MONGODB_DATABASE", settings.mongodb.database.clone()),
        ("HERALD_TUISONGBAO_URL", settings.tuisongbao.url.to_string()),
        (
            "HERALD_TUISONGBAO_APP_ID",
            settings.tuisongbao.app_id.clone(),
        ),
        (
            "HERALD_TUISONGBAO_SECRET",
            settings.tuisongbao.secret.expose_secret().to_owned(),
        ),
        (
            "HERALD_EXPORT_DIR",
            settings.export.dir.display().to_string(),
        ),
        ("HERALD_EXPORT_COLLECTIONS", SOURCE_COLLECTION.to_owned()),
        (
            "HERALD_EXPORT_BATCH_SIZE",
            settings.export.batch_size.to_string(),
        ),
        ("HERALD_LOG_LEVEL", "warn".to_owned()),
    ]
}

/// This benchmark's own binary, which runs both child processes: the scan
/// (`export-scan`) and the export's worker (`worker`).
fn bench_binary() -> Result<PathBuf, BenchError> {
    Ok(std::env::current_exe()?)
}

async fn measure(
    settings: &Settings,
    database: &Database,
    account: AccountId,
    rows: u64,
    s3: Option<&crate::s3::S3Server>,
) -> Result<Measured, BenchError> {
    let scan = run_scan(settings, account).await?;
    if scan.rows != rows {
        return Err(BenchError::Invalid(format!(
            "the scan read {} of {rows} documents",
            scan.rows
        )));
    }
    let (export, peak, file_bytes) =
        run_export(settings, database, account, rows, Vec::new()).await?;
    let s3 = match s3 {
        Some(server) => {
            let (mut row, peak, _) =
                run_export(settings, database, account, rows, server.child_env()).await?;
            row.name = format!("Herald export to S3 (multipart), {rows} documents");
            Some((row, peak))
        }
        None => None,
    };
    Ok(Measured {
        rows,
        scan: Row {
            name: format!("raw cursor scan, {rows} documents"),
            count: scan.rows,
            elapsed: Duration::from_secs_f64(scan.seconds),
        },
        scan_peak_kib: scan.peak_kib,
        export,
        export_peak_kib: peak,
        file_bytes,
        trial_ratios: Vec::new(),
        s3_trial_ratios: Vec::new(),
        s3,
    })
}

/// The trial with the median ratio, carrying every trial's ratio and the
/// highest peak memory any trial reached (a peak is a worst case, not a
/// typical value).
fn median_trial(mut trials: Vec<Measured>) -> Measured {
    let ratios: Vec<f64> = trials
        .iter()
        .map(|t| t.export.rate() / t.scan.rate().max(1e-9))
        .collect();
    let scan_peak_kib = trials.iter().map(|t| t.scan_peak_kib).max().unwrap_or(0);
    let export_peak_kib = trials.iter().map(|t| t.export_peak_kib).max().unwrap_or(0);
    let s3_peak_kib = trials
        .iter()
        .filter_map(|t| t.s3.as_ref().map(|(_, peak)| *peak))
        .max();
    let s3_ratios: Vec<f64> = trials
        .iter()
        .filter_map(|t| {
            t.s3.as_ref()
                .map(|(row, _)| row.rate() / t.scan.rate().max(1e-9))
        })
        .collect();
    let median = super::median_index(&ratios, |r| *r);
    let mut chosen = trials.swap_remove(median);
    chosen.trial_ratios = ratios;
    chosen.s3_trial_ratios = s3_ratios;
    chosen.scan_peak_kib = scan_peak_kib;
    chosen.export_peak_kib = export_peak_kib;
    if let (Some((_, peak)), Some(highest)) = (chosen.s3.as_mut(), s3_peak_kib) {
        *peak = highest;
    }
    chosen
}

/// Runs `herald-bench export-scan` for `account` and reads its report.
async fn run_scan(settings: &Settings, account: AccountId) -> Result<ScanReport, BenchError> {
    let job = serde_json::to_string(&job(account, "scan"))
        .map_err(|e| BenchError::Invalid(e.to_string()))?;
    let binary = bench_binary()?;
    let envs = child_env(settings);
    let output = tokio::task::spawn_blocking(move || {
        Command::new(binary)
            .args(["export-scan", "--job", &job])
            .envs(envs)
            .stdin(Stdio::null())
            .output()
    })
    .await
    .map_err(|e| BenchError::Invalid(format!("scan child: {e}")))??;
    if !output.status.success() {
        return Err(BenchError::Invalid(format!(
            "the scan process failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line)
        .map_err(|e| BenchError::Invalid(format!("scan report {line:?}: {e}")))
}

/// Runs the export in a child worker (with `storage_env` on top of the
/// run's variables); returns its row, peak memory and file size.
async fn run_export(
    settings: &Settings,
    database: &Database,
    account: AccountId,
    rows: u64,
    storage_env: Vec<(&'static str, String)>,
) -> Result<(Row, u64, u64), BenchError> {
    let key = format!("bench-{rows}-{}", unique_suffix());
    let mut child = Command::new(bench_binary()?)
        .arg("worker")
        .envs(child_env(settings))
        .envs(storage_env)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    let result = async {
        let status = ExportStatusStore::new(database);
        status
            .queued(account, &export_key(&key)?, SOURCE_COLLECTION)
            .await?;
        let mut producer = Producer::connect(&settings.redis.url, &settings.redis.namespace)
            .await
            .map_err(|e| BenchError::Enqueue(e.to_string()))?;
        producer
            .enqueue_export(job(account, &key))
            .await
            .map_err(|e| BenchError::Enqueue(e.to_string()))?;
        let begun = Instant::now();
        let record = loop {
            if let Some(exit) = child.try_wait()? {
                return Err(BenchError::Invalid(format!("the worker exited: {exit}")));
            }
            let record = status
                .get(account, &export_key(&key)?)
                .await?
                .unwrap_or_default();
            match record.get_str("status").unwrap_or("queued") {
                "finished" => break record,
                "failed" | "cancelled" => {
                    return Err(BenchError::Invalid(format!("export ended: {record}")))
                }
                _ if begun.elapsed() > Duration::from_secs(1800) => {
                    return Err(BenchError::Stuck(format!("export of {rows} rows")))
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        let peak = peak_rss_kib(child.id())
            .ok_or_else(|| BenchError::Invalid("cannot read the worker's VmHWM".into()))?;
        let millis = |field: &str| record.get_datetime(field).map(|d| d.timestamp_millis());
        let (started, finished) = match (millis("startedAt"), millis("finishedAt")) {
            (Ok(s), Ok(f)) => (s, f),
            _ => return Err(BenchError::Invalid(format!("export record: {record}"))),
        };
        let exported = number(&record, "rows");
        if exported != rows {
            return Err(BenchError::Invalid(format!(
                "the export wrote {exported} of {rows} rows"
            )));
        }
        Ok((
            Row {
                name: format!("Herald export to CSV, {rows} documents"),
                count: rows,
                elapsed: Duration::from_millis((finished - started).max(1) as u64),
            },
            peak,
            number(&record, "fileSize"),
        ))
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn number(record: &Document, field: &str) -> u64 {
    record
        .get(field)
        .and_then(|v| v.as_i64().or_else(|| v.as_i32().map(i64::from)))
        .unwrap_or(0)
        .max(0) as u64
}

/// Peak resident memory of process `pid` in KiB (`VmHWM`), on Linux.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The baseline, run in its own process: the export's query walked with a
/// cursor of raw documents (`advance`, nothing decoded), nothing rendered
/// or written.
pub async fn scan(settings: &Settings, job: &Export) -> Result<ScanReport, BenchError> {
    let valid = job
        .validate(&settings.export.limits)
        .map_err(|e| BenchError::Invalid(e.to_string()))?;
    let database = store::connect(&settings.mongodb).await?;
    let filter = herald::export::narrowed_filter(&valid, &settings.export.account_field);
    let start = Instant::now();
    let mut cursor = database
        .collection::<RawDocumentBuf>(&valid.collection)
        .find(filter)
        .sort(valid.sort.clone())
        .batch_size(settings.export.batch_size)
        .await?;
    // The cheapest walk the driver offers: each document is looked at in
    // the batch the server sent, nothing decoded or copied (the export's
    // reader takes them the same way, then copies them).
    let mut rows = 0;
    while cursor.advance().await? {
        rows += 1;
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(ScanReport {
        rows,
        seconds,
        peak_kib: peak_rss_kib(std::process::id()).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_peak_resident_size() {
        let kib = peak_rss_kib(std::process::id()).expect("Linux /proc");
        assert!(kib > 0);
    }
}
