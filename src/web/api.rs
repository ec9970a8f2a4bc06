//! The JSON API under `/api/v1`.
//!
//! | route | what |
//! |---|---|
//! | `GET /api/v1/queues` | counts per state for every queue |
//! | `GET /api/v1/queues/{queue}/failed?offset=0&limit=50` | dead jobs, newest failure first |
//! | `GET /api/v1/queues/{queue}/jobs/{id}` | one job: payload, metadata, history |
//! | `POST /api/v1/queues/{queue}/failed/{id}/retry` | retry one |
//! | `POST /api/v1/queues/{queue}/failed/retry` | `{"ids": [...]}` or `{"all": true}` |
//! | `POST /api/v1/queues/{queue}/failed/{id}/discard` | discard one |
//! | `POST /api/v1/queues/{queue}/failed/discard` | `{"ids": [...]}` |

use axum::{
    extract::{rejection::QueryRejection, Path, Query, State},
    http::StatusCode,
    routing::{get, post},
    Json, Router,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{
    problem::{ApiJson, Problem},
    WebState,
};
use crate::queue::admin::{DeadJob, QueueAdmin};

/// The API's routes (guarded by the caller).
pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/api/v1/queues", get(queues))
        .route("/api/v1/queues/{queue}/failed", get(failed))
        .route("/api/v1/queues/{queue}/jobs/{id}", get(job))
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
    Path(queue): Path<String>,
) -> Result<Json<Value>, Problem> {
    let changed = admin(&state, &queue)?.pause().await?;
    Ok(Json(json!({ "paused": true, "changed": changed })))
}

/// Resumes a queue: `{"paused": false, "changed": <was it paused>}`.
async fn resume(
    State(state): State<WebState>,
    Path(queue): Path<String>,
) -> Result<Json<Value>, Problem> {
    let changed = admin(&state, &queue)?.resume().await?;
    Ok(Json(json!({ "paused": false, "changed": changed })))
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

#[derive(Debug, Deserialize)]
struct Page {
    #[serde(default)]
    offset: usize,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    50
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
    page: Result<Query<Page>, QueryRejection>,
) -> Result<Json<Value>, Problem> {
    let Query(page) = page?;
    if page.limit == 0 || page.limit > 1000 {
        return Err(bad_request("limit must be 1..1000"));
    }
    let (jobs, total) = admin(&state, &queue)?
        .dead_jobs(page.offset, page.limit)
        .await?;
    let rows: Vec<FailedRow> = jobs.into_iter().map(FailedRow::from).collect();
    Ok(Json(
        json!({ "queue": queue, "total": total, "jobs": rows }),
    ))
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
    Path((queue, id)): Path<(String, String)>,
) -> Result<Json<Value>, Problem> {
    let retried = admin(&state, &queue)?
        .retry(std::slice::from_ref(&id))
        .await?;
    if retried.is_empty() {
        return Err(Problem::not_found(format!(
            "no failed job '{id}' in queue '{queue}'"
        )));
    }
    Ok(Json(json!({ "retried": retried.len() })))
}

/// Body of the bulk routes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Selection {
    #[serde(default)]
    ids: Vec<String>,
    #[serde(default)]
    all: bool,
}

async fn retry_many(
    State(state): State<WebState>,
    Path(queue): Path<String>,
    ApiJson(selection): ApiJson<Selection>,
) -> Result<Json<Value>, Problem> {
    let admin = admin(&state, &queue)?;
    let retried = match (selection.all, selection.ids.is_empty()) {
        (true, true) => admin.retry_all().await?,
        (false, false) => admin.retry(&selection.ids).await?.len() as u64,
        _ => {
            return Err(bad_request(
                "send either {\"ids\": [...]} or {\"all\": true}",
            ))
        }
    };
    Ok(Json(json!({ "retried": retried })))
}

async fn discard_one(
    State(state): State<WebState>,
    Path((queue, id)): Path<(String, String)>,
) -> Result<Json<Value>, Problem> {
    let discarded = admin(&state, &queue)?
        .discard(std::slice::from_ref(&id))
        .await?;
    if discarded == 0 {
        return Err(Problem::not_found(format!(
            "no failed job '{id}' in queue '{queue}'"
        )));
    }
    Ok(Json(json!({ "discarded": discarded })))
}

async fn discard_many(
    State(state): State<WebState>,
    Path(queue): Path<String>,
    ApiJson(selection): ApiJson<Selection>,
) -> Result<Json<Value>, Problem> {
    if selection.all || selection.ids.is_empty() {
        return Err(bad_request(
            "send {\"ids\": [...]}; discarding all is not offered",
        ));
    }
    let discarded = admin(&state, &queue)?.discard(&selection.ids).await?;
    Ok(Json(json!({ "discarded": discarded })))
}
