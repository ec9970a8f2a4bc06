//! The dashboard's view of exports, across accounts: the latest (or only
//! the queued and running ones, with their live progress), cancel, and
//! download. Guarded like the rest of `/api/v1`; the producers' API has
//! the per-account routes.
//!
//! | route | what |
//! |---|---|
//! | `GET /api/v1/exports?active=true&limit=50` | the latest exports, newest first |
//! | `POST /api/v1/exports/{accountId}/{key}/cancel` | cancel a queued or running export |
//! | `GET /api/v1/exports/{accountId}/{key}/file` | download a finished export's file |
//!
//! An export is its account and its key (two accounts may use one key), so
//! the routes name both. Cancelling and downloading are operators' actions
//! (a download hands an account's data out): viewers get 403, and each is
//! recorded in the audit trail.

use axum::{
    extract::{rejection::QueryRejection, Path, Query, State},
    response::Response,
    routing::{get, post},
    Extension, Json, Router,
};
use herald_jobs::{ids::parse_object_id, AccountId, ExportKey};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{audit::audited, auth::Operator};
use crate::web::{
    problem::Problem,
    v1::exports::{cancel_export, download, record_of, ExportRecord},
    WebState,
};

/// The account and key of the path, parsed.
fn export_in(account: &str, key: &str) -> Result<(AccountId, ExportKey), Problem> {
    let account = parse_object_id("accountId", account)
        .map(AccountId::from)
        .map_err(|e| Problem::from_validation(vec![e]))?;
    let key = ExportKey::parse(key).map_err(|e| Problem::from_validation(vec![e]))?;
    Ok((account, key))
}

/// The routes (guarded by the caller).
pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/api/v1/exports", get(list))
        .route("/api/v1/exports/{account}/{key}/cancel", post(cancel))
        .route("/api/v1/exports/{account}/{key}/file", get(file))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    #[serde(default)]
    active: bool,
    #[serde(default = "default_limit")]
    limit: i64,
}

fn default_limit() -> i64 {
    50
}

async fn list(
    State(state): State<WebState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, Problem> {
    let Query(query) = query?;
    if !(1..=500).contains(&query.limit) {
        return Err(Problem::new(
            axum::http::StatusCode::BAD_REQUEST,
            "limit must be 1..500",
        ));
    }
    let records = state.api.exports.recent(query.active, query.limit).await?;
    let exports: Vec<ExportRecord> = records.iter().map(ExportRecord::from).collect();
    Ok(Json(json!({ "exports": exports })))
}

async fn cancel(
    State(state): State<WebState>,
    Extension(operator): Extension<Operator>,
    Path((account, key)): Path<(String, String)>,
) -> Result<Json<Value>, Problem> {
    let (account, key) = export_in(&account, &key)?;
    let target = json!({ "accountId": account.to_hex(), "key": key.as_str() });
    audited(&state, &operator, "export_cancel", target, || async {
        let before = record_of(&state, account, &key).await?;
        cancel_export(&state, account, &key, &before).await?;
        let after = record_of(&state, account, &key).await?;
        Ok((Json(json!({ "export": ExportRecord::from(&after) })), 1))
    })
    .await
}

async fn file(
    State(state): State<WebState>,
    Extension(operator): Extension<Operator>,
    Path((account, key)): Path<(String, String)>,
) -> Result<Response, Problem> {
    operator.must_act()?;
    let (account, key) = export_in(&account, &key)?;
    let target = json!({ "accountId": account.to_hex(), "key": key.as_str() });
    audited(&state, &operator, "export_download", target, || async {
        let record = record_of(&state, account, &key).await?;
        Ok((download(&state, account, &key, &record).await?, 1))
    })
    .await
}
