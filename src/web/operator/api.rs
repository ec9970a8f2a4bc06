//! The JSON API under `/api/v1`.
//!
//! | route | what |
//! |---|---|
//! | `GET /api/v1/queues` | counts per state for every queue |
//! | `GET /api/v1/queues/{queue}/failed?offset=0&limit=50&event=&account=&error=` | dead jobs, newest failure first, filtered by label values and error group |
//! | `GET /api/v1/queues/{queue}/failed/groups?limit=50` | error groups, largest first |
//! | `GET /api/v1/queues/{queue}/jobs?state=pending&offset=0&limit=50` | pending, scheduled or running jobs, a page |
//! | `GET /api/v1/queues/{queue}/jobs/{id}` | one job: payload, metadata, history |
//! | `GET /api/v1/queues/{queue}/history?minutes=60` | done, failed and latency per minute |
//! | `POST /api/v1/queues/{queue}/failed/{id}/retry` | retry one |
//! | `POST /api/v1/queues/{queue}/failed/retry` | `{"ids": [...]}` now; `{"all": true}` or `{"filter": {...}}` as a bulk operation (202) |
//! | `POST /api/v1/queues/{queue}/failed/{id}/discard` | discard one |
//! | `POST /api/v1/queues/{queue}/failed/discard` | the same bodies as retry |
//! | `GET /api/v1/queues/{queue}/operations` | the latest bulk operations and their progress |
//! | `GET /api/v1/queues/{queue}/operations/{id}` | one bulk operation |
//! | `POST /api/v1/queues/{queue}/pause`, `/resume` | pause or resume the queue |
//! | `GET /api/v1/messages/stats` | the `message` collection: documents, bytes, the oldest message's `createdAt`, `message.keep_days` |
//!
//! Every `POST` is an operator's action (viewers get 403 from the guard)
//! and goes through [`super::audit::audited`]: recorded with who, what
//! (the queue, the ids or the filter) and how many, before it runs.

use axum::{
    extract::{rejection::QueryRejection, Path, Query, State},
    http::StatusCode,
    routing::{get, post},
    Extension, Json, Router,
};
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{audit::audited, auth::Operator};
use crate::queue::admin::{BulkAction, DeadFilter, DeadJob, JobState, QueueAdmin, HISTORY_MINUTES};
use crate::web::{
    problem::{ApiJson, Problem},
    WebState,
};

/// The API's routes (guarded by the caller).
pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/api/v1/queues", get(queues))
        .route("/api/v1/messages/stats", get(message_stats))
        .route("/api/v1/queues/{queue}/failed", get(failed))
        .route("/api/v1/queues/{queue}/failed/groups", get(error_groups))
        .route("/api/v1/queues/{queue}/operations", get(operations))
        .route("/api/v1/queues/{queue}/operations/{id}", get(operation))
        .route("/api/v1/queues/{queue}/jobs", get(jobs))
        .route("/api/v1/queues/{queue}/jobs/{id}", get(job))
        .route("/api/v1/queues/{queue}/history", get(history))
        .route("/api/v1/queues/{queue}/failed/{id}/retry", post(retry_one))
        .route("/api/v1/queues/{queue}/failed/retry", post(retry_many))
        .route(
            "/api/v1/queues/{queue}/failed/{id}/discard",
            post(discard_one),
        )
        .route("/api/v1/queues/{queue}/failed/discard", post(discard_many))
        .route("/api/v1/queues/{queue}/pause", post(pause))
        .route("/api/v1/queues/{queue}/resume", post(resume))
}

/// Pauses a queue: `{"paused": true, "changed": <was it running>}`.
async fn pause(
    State(state): State<WebState>,
    Extension(operator): Extension<Operator>,
    Path(queue): Path<String>,
) -> Result<Json<Value>, Problem> {
    let admin = admin(&state, &queue)?;
    audited(
        &state,
        &operator,
        "pause",
        json!({ "queue": queue }),
        || async {
            let changed = admin.pause().await?;
            Ok((Json(json!({ "paused": true, "changed": changed })), 1))
        },
    )
    .await
}

/// Resumes a queue: `{"paused": false, "changed": <was it paused>}`.
async fn resume(
    State(state): State<WebState>,
    Extension(operator): Extension<Operator>,
    Path(queue): Path<String>,
) -> Result<Json<Value>, Problem> {
    let admin = admin(&state, &queue)?;
    audited(
        &state,
        &operator,
        "resume",
        json!({ "queue": queue }),
        || async {
            let changed = admin.resume().await?;
            Ok((Json(json!({ "paused": false, "changed": changed })), 1))
        },
    )
    .await
}

/// 400 with `message`.
fn bad_request(message: &str) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, message)
}

fn admin<'a>(state: &'a WebState, queue: &str) -> Result<&'a QueueAdmin, Problem> {
    state.queues.get(queue).ok_or_else(|| {
        let known: Vec<&str> = state.queues.keys().map(String::as_str).collect();
        Problem::not_found(format!("no queue '{queue}' (queues: {})", known.join(", ")))
    })
}

/// What the `message` collection holds and how long it keeps messages:
/// `{"documents", "bytes", "oldestCreatedAt" (RFC 3339 or null), "keepDays"
/// (null: kept)}`.
async fn message_stats(State(state): State<WebState>) -> Result<Json<Value>, Problem> {
    let facts = state.messages.facts().await?;
    Ok(Json(json!({
        "documents": facts.documents,
        "bytes": facts.bytes,
        "oldestCreatedAt": facts.oldest.and_then(crate::message::rfc3339),
        "keepDays": state.message_keep.map(|keep| keep.as_secs() / 86_400),
    })))
}

async fn queues(State(state): State<WebState>) -> Result<Json<Value>, Problem> {
    let mut all = Vec::new();
    for (name, admin) in state.queues.iter() {
        let stats = admin.stats().await?;
        let mut value = serde_json::to_value(stats).unwrap_or_default();
        value["name"] = json!(name);
        all.push(value);
    }
    Ok(Json(json!({ "queues": all })))
}

/// Query of the failed list: paging, an error group, and label values
/// (every other parameter, such as `event` or `account`).
#[derive(Debug)]
struct FailedQuery {
    offset: usize,
    limit: usize,
    filter: DeadFilter,
}

impl FailedQuery {
    /// Read from the parameters as sent (a flattened serde struct would
    /// see the numbers as text).
    fn parse(mut params: BTreeMap<String, String>) -> Result<Self, Problem> {
        let mut number = |name: &str, default: usize| match params.remove(name) {
            None => Ok(default),
            Some(text) => text
                .parse()
                .map_err(|_| bad_request(&format!("{name} must be a whole number, not '{text}'"))),
        };
        let offset = number("offset", 0)?;
        let limit = number("limit", default_limit())?;
        let error = params.remove("error");
        Ok(Self {
            offset,
            limit,
            filter: filter_of(params, error),
        })
    }
}

fn default_limit() -> usize {
    50
}

/// The filter of a query or body: labels with a value, and the group.
fn filter_of(labels: BTreeMap<String, String>, error: Option<String>) -> DeadFilter {
    DeadFilter {
        labels: labels.into_iter().filter(|(_, v)| !v.is_empty()).collect(),
        error: error.filter(|e| !e.is_empty()),
    }
}

/// A dead job with the fields an operator scans for, read from a push
/// job's payload (event, channel, account) when it is one.
#[derive(Debug, Serialize)]
struct FailedRow {
    #[serde(flatten)]
    job: DeadJob,
    event: Option<String>,
    channel: Option<String>,
    account_id: Option<String>,
    key: Option<String>,
}

impl From<DeadJob> for FailedRow {
    fn from(job: DeadJob) -> Self {
        let text = |v: &Value| v.as_str().map(str::to_owned);
        let payload = &job.payload;
        Self {
            event: text(&payload["event"]["name"]),
            channel: text(&payload["event"]["channels"][0]),
            account_id: text(&payload["accountId"]),
            key: text(&payload["idempotencyKey"]),
            job,
        }
    }
}

async fn failed(
    State(state): State<WebState>,
    Path(queue): Path<String>,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, Problem> {
    let Query(params) = query?;
    let query = FailedQuery::parse(params)?;
    if query.limit == 0 || query.limit > 1000 {
        return Err(bad_request("limit must be 1..1000"));
    }
    let (jobs, total) = admin(&state, &queue)?
        .dead_jobs(&query.filter, query.offset, query.limit)
        .await?;
    let rows: Vec<FailedRow> = jobs.into_iter().map(FailedRow::from).collect();
    Ok(Json(
        json!({ "queue": queue, "total": total, "offset": query.offset, "jobs": rows }),
    ))
}

#[derive(Debug, Deserialize)]
struct GroupsQuery {
    #[serde(default = "default_limit")]
    limit: usize,
}

/// Error groups of the dead jobs, largest first.
async fn error_groups(
    State(state): State<WebState>,
    Path(queue): Path<String>,
    query: Result<Query<GroupsQuery>, QueryRejection>,
) -> Result<Json<Value>, Problem> {
    let Query(query) = query?;
    if query.limit == 0 || query.limit > 1000 {
        return Err(bad_request("limit must be 1..1000"));
    }
    let (groups, total) = admin(&state, &queue)?.error_groups(query.limit).await?;
    Ok(Json(
        json!({ "queue": queue, "total": total, "groups": groups }),
    ))
}

/// The latest bulk operations, newest first.
async fn operations(
    State(state): State<WebState>,
    Path(queue): Path<String>,
) -> Result<Json<Value>, Problem> {
    let operations = admin(&state, &queue)?.bulks().await?;
    Ok(Json(json!({ "queue": queue, "operations": operations })))
}

/// One bulk operation.
async fn operation(
    State(state): State<WebState>,
    Path((queue, id)): Path<(String, String)>,
) -> Result<Json<Value>, Problem> {
    match admin(&state, &queue)?.bulk(&id).await? {
        Some(progress) => Ok(Json(json!({ "operation": progress }))),
        None => Err(Problem::not_found(format!(
            "no operation '{id}' in queue '{queue}' (records are kept a day)"
        ))),
    }
}

#[derive(Debug, Deserialize)]
struct JobsQuery {
    state: JobState,
    #[serde(default)]
    offset: usize,
    #[serde(default = "default_limit")]
    limit: usize,
}

/// A page of the queue's jobs in one state.
async fn jobs(
    State(state): State<WebState>,
    Path(queue): Path<String>,
    query: Result<Query<JobsQuery>, QueryRejection>,
) -> Result<Json<Value>, Problem> {
    let Query(query) = query?;
    if query.limit == 0 || query.limit > 1000 {
        return Err(bad_request("limit must be 1..1000"));
    }
    let (jobs, total) = admin(&state, &queue)?
        .jobs_in(query.state, query.offset, query.limit)
        .await?;
    Ok(Json(json!({
        "queue": queue, "state": query.state, "total": total, "offset": query.offset, "jobs": jobs,
    })))
}

#[derive(Debug, Deserialize)]
struct HistoryQuery {
    #[serde(default = "default_minutes")]
    minutes: usize,
}

fn default_minutes() -> usize {
    HISTORY_MINUTES
}

/// The queue's last hour, minute by minute.
async fn history(
    State(state): State<WebState>,
    Path(queue): Path<String>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<Value>, Problem> {
    let Query(query) = query?;
    if query.minutes == 0 || query.minutes > HISTORY_MINUTES {
        return Err(bad_request(&format!(
            "minutes must be 1..{HISTORY_MINUTES}"
        )));
    }
    let minutes = admin(&state, &queue)?.history(query.minutes).await?;
    Ok(Json(json!({ "queue": queue, "minutes": minutes })))
}

async fn job(
    State(state): State<WebState>,
    Path((queue, id)): Path<(String, String)>,
) -> Result<Json<Value>, Problem> {
    match admin(&state, &queue)?.job(&id).await? {
        Some(detail) => Ok(Json(serde_json::to_value(detail).unwrap_or_default())),
        None => Err(Problem::not_found(format!(
            "no job '{id}' in queue '{queue}'"
        ))),
    }
}

async fn retry_one(
    State(state): State<WebState>,
    Extension(operator): Extension<Operator>,
    Path((queue, id)): Path<(String, String)>,
) -> Result<Json<Value>, Problem> {
    let admin = admin(&state, &queue)?;
    let target = json!({ "queue": queue, "ids": [id] });
    audited(&state, &operator, "retry", target, || async {
        let retried = admin.retry(std::slice::from_ref(&id)).await?;
        if retried.is_empty() {
            return Err(Problem::not_found(format!(
                "no failed job '{id}' in queue '{queue}'"
            )));
        }
        Ok((
            Json(json!({ "retried": retried.len() })),
            retried.len() as u64,
        ))
    })
    .await
}

/// Body of the bulk routes: ids (handled at once), or every dead job
/// (`all`), or those a filter selects, as a bulk operation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Selection {
    #[serde(default)]
    ids: Vec<String>,
    #[serde(default)]
    all: bool,
    #[serde(default)]
    filter: Option<FilterBody>,
}

/// A filter in a body: `{"labels": {"event": "new_message"}, "error": "<group id>"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilterBody {
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    error: Option<String>,
}

/// What a selection asks for.
enum Chosen {
    Ids(Vec<String>),
    Bulk(DeadFilter),
}

impl Selection {
    fn chosen(self) -> Result<Chosen, Problem> {
        let usage = "send one of {\"ids\": [...]}, {\"all\": true} or {\"filter\": {\"labels\": {...}, \"error\": \"...\"}}";
        match (self.ids.is_empty(), self.all, self.filter) {
            (false, false, None) => Ok(Chosen::Ids(self.ids)),
            (true, true, None) => Ok(Chosen::Bulk(DeadFilter::all())),
            (true, false, Some(body)) => {
                let filter = filter_of(body.labels, body.error);
                if filter.is_empty() {
                    return Err(bad_request("the filter selects nothing: name a label value or an error group (or send {\"all\": true})"));
                }
                Ok(Chosen::Bulk(filter))
            }
            _ => Err(bad_request(usage)),
        }
    }
}

/// Begins a bulk operation and runs it in the background; answers 202
/// with its record, which `GET .../operations/{id}` follows, and reports
/// how many jobs it selected.
async fn begin_bulk(
    admin: &QueueAdmin,
    action: BulkAction,
    filter: DeadFilter,
) -> Result<((StatusCode, Json<Value>), u64), Problem> {
    let progress = admin.begin_bulk(action, filter).await?;
    let runner = admin.clone();
    let started = progress.clone();
    tokio::spawn(async move {
        if let Err(e) = runner.run_bulk(started).await {
            tracing::error!(queue = %runner.name(), error = %e, "bulk operation on dead jobs failed");
        }
    });
    let total = progress.total;
    Ok((
        (StatusCode::ACCEPTED, Json(json!({ "operation": progress }))),
        total,
    ))
}

/// Retries or discards what `selection` chooses, recorded as `action` (for
/// ids) or `<action>_bulk` (for a filter, with it).
async fn act_on(
    state: &WebState,
    operator: &Operator,
    queue: &str,
    action: BulkAction,
    selection: Selection,
) -> Result<(StatusCode, Json<Value>), Problem> {
    let admin = admin(state, queue)?;
    let name = match action {
        BulkAction::Retry => "retry",
        BulkAction::Discard => "discard",
    };
    match selection.chosen()? {
        Chosen::Ids(ids) => {
            let target = json!({ "queue": queue, "ids": ids });
            audited(state, operator, name, target, || async {
                let count = match action {
                    BulkAction::Retry => admin.retry(&ids).await?.len() as u64,
                    BulkAction::Discard => admin.discard(&ids).await?,
                };
                let key = if action == BulkAction::Retry {
                    "retried"
                } else {
                    "discarded"
                };
                Ok(((StatusCode::OK, Json(json!({ key: count }))), count))
            })
            .await
        }
        Chosen::Bulk(filter) => {
            let target = json!({ "queue": queue, "filter": filter });
            audited(state, operator, &format!("{name}_bulk"), target, || {
                begin_bulk(admin, action, filter)
            })
            .await
        }
    }
}

async fn retry_many(
    State(state): State<WebState>,
    Extension(operator): Extension<Operator>,
    Path(queue): Path<String>,
    ApiJson(selection): ApiJson<Selection>,
) -> Result<(StatusCode, Json<Value>), Problem> {
    act_on(&state, &operator, &queue, BulkAction::Retry, selection).await
}

async fn discard_one(
    State(state): State<WebState>,
    Extension(operator): Extension<Operator>,
    Path((queue, id)): Path<(String, String)>,
) -> Result<Json<Value>, Problem> {
    let admin = admin(&state, &queue)?;
    let target = json!({ "queue": queue, "ids": [id] });
    audited(&state, &operator, "discard", target, || async {
        let discarded = admin.discard(std::slice::from_ref(&id)).await?;
        if discarded == 0 {
            return Err(Problem::not_found(format!(
                "no failed job '{id}' in queue '{queue}'"
            )));
        }
        Ok((Json(json!({ "discarded": discarded })), discarded))
    })
    .await
}

async fn discard_many(
    State(state): State<WebState>,
    Extension(operator): Extension<Operator>,
    Path(queue): Path<String>,
    ApiJson(selection): ApiJson<Selection>,
) -> Result<(StatusCode, Json<Value>), Problem> {
    act_on(&state, &operator, &queue, BulkAction::Discard, selection).await
}
