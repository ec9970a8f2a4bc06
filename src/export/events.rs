//! The events an export sends to its account's channel.
//!
//! | event | data | how |
//! |---|---|---|
//! | `export_progress` | `key`, `processed`, `total`, `percent` | sent inline by the progress task, best-effort |
//! | `export_finish` | `key` | handed to the `push` queue by the finished job's acknowledgement |
//! | `export_failed` | `key`, `error` | scheduled on the `push` queue when the export gives up |
//!
//! Progress is sent directly: a lost one is superseded by the next, and the
//! export waits for its last one, so progress always reaches the provider
//! before the run's `export_finish`. Finish and failure must arrive, so
//! they go through the push queue, retried until delivered. A finished
//! export *returns* its `export_finish` as a [`Handoff`], which the job's
//! acknowledgement enqueues before it records the job done, exactly as a
//! stored message hands on its push: a Redis error then delays the
//! acknowledgement, never re-runs the export. A failure is reported while
//! the job fails (a failing job hands nothing on), so `export_failed` is
//! enqueued by the job itself, best effort.
//!
//! The events' idempotency key names the event, the account, the export
//! and the run: a run's event is enqueued once however often the
//! scheduling is retried, a re-run of the key sends its own, and no
//! account's export can stand for another's.

use apalis::prelude::{TaskBuilder, TaskSink};
use herald_jobs::{AccountId, ExportKey};
use serde_json::json;

use super::{status, ExportError};
use crate::{
    push::{job::PushJob, Event},
    queue::{Handoff, RedisQueue},
};

/// The `export_finish {key}` of run `run` of export `key`, as the hand-off
/// its job returns.
pub(super) fn finish(
    account: AccountId,
    key: &ExportKey,
    run: &str,
    trace: &herald_jobs::TraceParent,
) -> Result<Handoff, serde_json::Error> {
    let job = event_job(
        account,
        "export_finish",
        json!({ "key": key.as_str() }),
        key,
        run,
    )
    .in_trace(trace);
    Handoff::one(&job, &job.idempotency_key)
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
/// `key` written. Sent directly, never queued, so it has no idempotency key.
pub(super) fn progress(account: AccountId, key: &ExportKey, processed: u64, total: u64) -> Event {
    let data = json!({
        "key": key.as_str(), "processed": processed, "total": total,
        "percent": status::percent(processed, total),
    });
    Event::to_account(account, "export_progress", data)
}

/// Push job of `event` for run `run` of export `key`, under its idempotency
/// key (see the module docs).
fn event_job(
    account: AccountId,
    event: &str,
    data: serde_json::Value,
    key: &ExportKey,
    run: &str,
) -> PushJob {
    PushJob::account_event(
        account,
        event,
        data,
        format!("{event}:{account}:{key}:{run}"),
    )
}

async fn schedule(
    queue: &RedisQueue<PushJob>,
    account: AccountId,
    event: &str,
    data: serde_json::Value,
    key: &ExportKey,
    run: &str,
) -> Result<(), ExportError> {
    let job = event_job(account, event, data, key, run);
    let task = TaskBuilder::new(job.clone())
        .idempotency_key(&job.idempotency_key)
        .build();
    let mut queue = queue.clone();
    queue
        .push_task(task)
        .await
        .map_err(|e| ExportError::Schedule(e.to_string()))
}
