//! `herald export ...` and `herald enqueue export`: exports from the command line.

use std::{process::ExitCode, time::Duration};

use anyhow::Context;
use clap::{Args, Subcommand};
use herald::{
    config::Settings,
    export::{
        status::{ExportStatus, ExportStatusStore},
        submit::submit,
    },
    store,
};
use herald_jobs::{AccountId, Export, ExportField, ExportKey, ExportSort, Producer};
use indicatif::{ProgressBar, ProgressStyle};
use mongodb::bson::Document;

#[derive(Debug, Args)]
pub struct EnqueueExportArgs {
    /// Account whose documents are exported (24-hex).
    #[arg(long, value_name = "HEX")]
    account: AccountId,
    /// Source collection (must be on export.collections).
    #[arg(long)]
    collection: String,
    /// A column, PATH=TITLE (e.g. profile.name=Name); repeat in column order.
    #[arg(long = "field", value_name = "PATH=TITLE", required = true, value_parser = parse_field)]
    fields: Vec<ExportField>,
    /// Extended-JSON filter, e.g. '{"status": "active"}'.
    #[arg(long, default_value = "{}")]
    filter: String,
    /// Sort key PATH or PATH:desc; repeat, most significant first.
    #[arg(long = "sort", value_name = "PATH[:asc|:desc]", value_parser = parse_sort)]
    sort: Vec<ExportSort>,
    /// Export key (default: 24 random hex digits).
    #[arg(long)]
    key: Option<ExportKey>,
    /// Time zone for dates (default: export.time_zone).
    #[arg(long)]
    time_zone: Option<String>,
    /// Show a progress bar until the export ends; exit 1 unless it finished.
    #[arg(long)]
    follow: bool,
}

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// Print an export's status record as JSON.
    Status {
        /// The account whose export it is (24-hex): keys are unique within
        /// an account only.
        #[arg(long, value_name = "HEX")]
        account: AccountId,
        /// The export key.
        key: ExportKey,
    },
    /// Cancel a queued or running export (its partial file is removed).
    Cancel {
        /// The account whose export it is (24-hex).
        #[arg(long, value_name = "HEX")]
        account: AccountId,
        /// The export key.
        key: ExportKey,
    },
}

fn parse_field(s: &str) -> Result<ExportField, String> {
    let (path, title) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not PATH=TITLE"))?;
    Ok(ExportField {
        path: path.to_owned(),
        title: title.to_owned(),
    })
}

fn parse_sort(s: &str) -> Result<ExportSort, String> {
    let (path, order) = match s.rsplit_once(':') {
        Some((path, order)) => (path, order),
        None => (s, "asc"),
    };
    Ok(ExportSort {
        path: path.to_owned(),
        order: order.to_owned(),
    })
}

/// Enqueues an export, records it as queued, optionally follows it.
pub async fn enqueue(args: EnqueueExportArgs, settings: &Settings) -> anyhow::Result<ExitCode> {
    let filter: serde_json::Value =
        serde_json::from_str(&args.filter).context("--filter is not JSON")?;
    let key = args.key.unwrap_or_else(ExportKey::generate);
    let job = Export {
        account_id: args.account.to_hex(),
        key: key.to_string(),
        collection: args.collection.clone(),
        filter,
        fields: args.fields,
        sort: args.sort,
        time_zone: args.time_zone,

        traceparent: None,
    };
    let database = store::connect(&settings.mongodb).await?;
    let outcome = enqueue_with(&database, job, args.account, &key, args.follow, settings).await;
    // Closed before the runtime ends, so the driver's tasks end first.
    store::close(&database).await;
    outcome
}

async fn enqueue_with(
    database: &mongodb::Database,
    job: Export,
    account: AccountId,
    key: &ExportKey,
    follow_it: bool,
    settings: &Settings,
) -> anyhow::Result<ExitCode> {
    let status = ExportStatusStore::new(database);
    let mut producer = Producer::connect(&settings.redis.url, &settings.redis.namespace).await?;
    submit(job, &settings.export.limits, &status, &mut producer)
        .await
        .context("export not enqueued")?;
    println!("{key}");
    if !follow_it {
        return Ok(ExitCode::SUCCESS);
    }
    follow(&status, account, key).await
}

async fn follow(
    status: &ExportStatusStore,
    account: AccountId,
    key: &ExportKey,
) -> anyhow::Result<ExitCode> {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg:10} [{bar:40}] {pos}/{len} rows ({percent}%)")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    loop {
        let record = status.get(account, key).await?.unwrap_or_default();
        let state = ExportStatus::of(&record).unwrap_or(ExportStatus::Queued);
        let number = |d: &Document, field: &str| {
            d.get(field)
                .and_then(|v| v.as_i64().or_else(|| v.as_i32().map(i64::from)))
                .unwrap_or(0)
                .max(0) as u64
        };
        bar.set_length(number(&record, "total"));
        bar.set_position(number(&record, "processed"));
        bar.set_message(state.as_str());
        match state {
            ExportStatus::Finished => {
                bar.finish_with_message(state.as_str());
                eprintln!(
                    "{} rows in {} ({} bytes)",
                    number(&record, "rows"),
                    record.get_str("fileName").unwrap_or(""),
                    number(&record, "fileSize")
                );
                return Ok(ExitCode::SUCCESS);
            }
            ExportStatus::Failed | ExportStatus::Cancelled => {
                bar.abandon_with_message(state.as_str());
                if let Ok(error) = record.get_str("error") {
                    eprintln!("error: {error}");
                }
                return Ok(ExitCode::FAILURE);
            }
            ExportStatus::Queued | ExportStatus::Running => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
        }
    }
}

/// `herald export status|cancel`.
pub async fn run(command: ExportCommand, settings: &Settings) -> anyhow::Result<ExitCode> {
    let database = store::connect(&settings.mongodb).await?;
    let outcome = run_with(&database, command, settings).await;
    store::close(&database).await;
    outcome
}

async fn run_with(
    database: &mongodb::Database,
    command: ExportCommand,
    settings: &Settings,
) -> anyhow::Result<ExitCode> {
    let status = ExportStatusStore::new(database);
    match command {
        ExportCommand::Status { account, key } => match status.get(account, &key).await? {
            Some(record) => {
                let json = mongodb::bson::Bson::Document(record).into_relaxed_extjson();
                println!("{}", serde_json::to_string_pretty(&json)?);
                Ok(ExitCode::SUCCESS)
            }
            None => {
                eprintln!("account {account} has no export with key {key}");
                Ok(ExitCode::FAILURE)
            }
        },
        ExportCommand::Cancel { account, key } => {
            let target = serde_json::json!({ "accountId": account.to_hex(), "key": key.as_str() });
            let cancelled = super::audit::audited(settings, "export_cancel", target, || async {
                let cancelled = status.cancel(account, &key).await?;
                Ok((cancelled, u64::from(cancelled)))
            })
            .await?;
            if cancelled {
                println!("cancelled {key}");
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("export {key} is not queued or running");
                Ok(ExitCode::FAILURE)
            }
        }
    }
}
