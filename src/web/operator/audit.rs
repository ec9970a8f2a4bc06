//! The audit trail on the dashboard's API, and the wrapper every action
//! goes through.
//!
//! | route | what |
//! |---|---|
//! | `GET /api/v1/me` | who is signed in: `{name, role, via}` |
//! | `GET /api/v1/audit?limit=50&before=ID&actor=NAME&action=ACTION` | the trail, newest first, a page |
//!
//! [`audited`] records an action before it runs (refusing it when the
//! record cannot be written) and completes the record with how it ended;
//! see [`crate::store::audit`].

use std::future::Future;

use axum::{
    extract::{rejection::QueryRejection, Query, State},
    http::StatusCode,
    routing::get,
    Extension, Json, Router,
};
use mongodb::bson::oid::ObjectId;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Operator;
use crate::store::audit::{AuditFilter, MAX_AUDIT_PAGE};
use crate::web::{problem::Problem, WebState};

/// The routes (guarded by the caller).
pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/api/v1/me", get(me))
        .route("/api/v1/audit", get(trail))
}

/// Runs `work`, an action of `operator` named `action` on `target`, with
/// its audit record: written first (a failure refuses the action with 503),
/// completed with the count `work` reports or its error.
pub async fn audited<T, F, Fut>(
    state: &WebState,
    operator: &Operator,
    action: &str,
    target: Value,
    work: F,
) -> Result<T, Problem>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<(T, u64), Problem>>,
{
    let record = state
        .audit
        .begin(&operator.actor(), action, target)
        .await
        .map_err(|error| Problem::unavailable(&error))?;
    let result = work().await;
    let outcome = match &result {
        Ok((_, count)) => Ok(*count),
        Err(problem) => Err(problem.message().to_owned()),
    };
    if let Err(error) = state.audit.finish(record, outcome).await {
        tracing::warn!(%error, action, operator = %operator.name, "audit record left as started");
    }
    result.map(|(value, _)| value)
}

/// Who is signed in.
async fn me(Extension(operator): Extension<Operator>) -> Json<Value> {
    Json(json!({
        "name": operator.name,
        "role": operator.role.as_str(),
        "via": operator.via.as_str(),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrailQuery {
    #[serde(default = "default_limit")]
    limit: i64,
    before: Option<String>,
    actor: Option<String>,
    action: Option<String>,
}

fn default_limit() -> i64 {
    50
}

/// A page of the trail: `{"records": [...], "next": ID | null}`.
async fn trail(
    State(state): State<WebState>,
    query: Result<Query<TrailQuery>, QueryRejection>,
) -> Result<Json<Value>, Problem> {
    let Query(query) = query?;
    if !(1..=MAX_AUDIT_PAGE).contains(&query.limit) {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            format!("limit must be 1..{MAX_AUDIT_PAGE}"),
        ));
    }
    let before = query
        .before
        .as_deref()
        .filter(|b| !b.is_empty())
        .map(|b| {
            ObjectId::parse_str(b).map_err(|_| {
                Problem::invalid([("before".to_owned(), format!("'{b}' is not a record id"))])
            })
        })
        .transpose()?;
    let filter = AuditFilter {
        actor: query.actor.filter(|a| !a.is_empty()),
        action: query.action.filter(|a| !a.is_empty()),
        before,
    };
    let (records, more) = state.audit.page(&filter, query.limit).await?;
    let next = records.last().filter(|_| more).map(|r| r.id.clone());
    Ok(Json(json!({ "records": records, "next": next })))
}
