//! The events an export sends to its account's channel.
//!
//! | event | data | how |
//! |---|---|---|
//! | `export_progress` | `key`, `processed`, `total`, `percent` | sent inline by the progress task, best-effort |
//! | `export_finish` | `key` | scheduled on the `push` queue once the file is committed |
//! | `export_failed` | `key`, `error` | scheduled on the `push` queue when the export gives up |
//!
//! Progress is sent directly: a lost one is superseded by the next, and the
//! export waits for its last one, so progress always reaches the provider
//! before the run's `export_finish`. Finish and failure must arrive, so
//! they go through the push queue, retried until delivered. Their
//! idempotency key names the event, the account, the export and the run: a
//! run's event is enqueued once however often the scheduling is retried, a
//! re-run of the key sends its own, and no account's export can stand for
//! another's.

use apalis::prelude::{TaskBuilder, TaskSink};
use herald_jobs::{AccountId, ExportKey};
use serde_json::json;

use super::{status, ExportError};
use crate::{
    push::{job::PushJob, Event},
    queue::RedisQueue,
};

/// Schedules `export_finish {key}` for run `run` of export `key`.
pub(super) async fn schedule_finish(
    queue: &RedisQueue<PushJob>,
    account: AccountId,
    key: &ExportKey,
    run: &str,
) -> Result<(), ExportError> {
    let data = json!({ "key": key.as_str() });
    schedule(queue, account, "export_finish", data, key, run).await
}

/// Schedules `export_failed {key, error}` for run `run` of export `key`.
pub(super) async fn schedule_failure(
    queue: &RedisQueue<PushJob>,
    account: AccountId,
    key: &ExportKey,
    run: &str,
    error: &str,
) -> Result<(), ExportError> {
    let data = json!({ "key": key.as_str(), "error": error });
    schedule(queue, account, "export_failed", data, key, run).await
}

/// The `export_progress` event: `processed` of `total` rows of export
/// `key` written.
pub(super) fn progress(account: AccountId, key: &ExportKey, processed: u64, total: u64) -> Event {
    let data = json!({
        "key": key.as_str(), "processed": processed, "total": total,
        "percent": status::percent(processed, total),
    });
    // Sent directly, never queued: no idempotency key.
    PushJob::account_event(account, "export_progress", data, String::new()).event
}

async fn schedule(
    queue: &RedisQueue<PushJob>,
    account: AccountId,
    event: &str,
    data: serde_json::Value,
    key: &ExportKey,
    run: &str,
) -> Result<(), ExportError> {
    let job = PushJob::account_event(
        account,
        event,
        data,
        format!("{event}:{account}:{key}:{run}"),
    );
    let task = TaskBuilder::new(job.clone())
        .idempotency_key(&job.idempotency_key)
        .build();
    let mut queue = queue.clone();
    queue
        .push_task(task)
        .await
        .map_err(|e| ExportError::Schedule(e.to_string()))
}
