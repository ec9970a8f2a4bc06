//! Exports over HTTP.
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/exports` | enqueue; 202 with the key |
//! | `GET /v1/exports/{key}` | the status record |
//! | `GET /v1/exports/{key}/file` | the finished CSV, streamed, or a redirect to a presigned URL |
//! | `DELETE /v1/exports/{key}` | cancel a queued or running export |
//!
//! An export is its account and its key: two accounts may use one key, and
//! nothing one does with it touches the other's. The account is the
//! token's, or, for a token that reaches every account, the `accountId`
//! the request names (in the body, or as a query parameter). So no answer
//! depends on another account's exports: a key taken in another account
//! is as free as any.

use axum::{
    body::Body,
    extract::{rejection::QueryRejection, Path, Query, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use herald_jobs::{AccountId, Export, ExportField, ExportKey, ExportSort};
use mongodb::bson::{Bson, Document};
use serde::{Deserialize, Serialize};
use tokio_util::io::ReaderStream;

use super::{
    caller::Caller,
    fields::not_null,
    messages::named_account,
    problem::{ApiJson, BodyRefused, NotThisAccount, Problem, ProblemBody, Unauthorized},
};
use crate::{
    export::{
        status::ExportStatus,
        submit::{submit, SubmitError},
    },
    store::inbox::rfc3339,
    web::WebState,
};

/// An export to run. An optional property is left out for its default;
/// `null` is refused ([`not_null`]).
///
/// Its schema in the OpenAPI document is built from the rules the server
/// checks ([`super::schema`]).
#[derive(Debug, Deserialize)]
#[serde(remote = "Self", rename_all = "camelCase", deny_unknown_fields)]
pub struct ExportRequest {
    /// The export's id (1-64 letters, digits, `-`, `_`); generated when absent.
    #[serde(default, deserialize_with = "not_null")]
    pub key: Option<String>,
    /// The account, 24-hex; may be left out with an account-bound token.
    #[serde(default, deserialize_with = "not_null")]
    pub account_id: Option<String>,
    /// Source collection; must be on `export.collections`.
    pub collection: String,
    /// MongoDB extended-JSON filter; always narrowed to the account.
    #[serde(default, deserialize_with = "not_null")]
    pub filter: Option<serde_json::Value>,
    /// Columns in order.
    pub fields: Vec<FieldBody>,
    /// Sort keys, most significant first.
    #[serde(default)]
    pub sort: Vec<SortBody>,
    /// IANA time zone for dates (default `export.time_zone`).
    #[serde(default, deserialize_with = "not_null")]
    pub time_zone: Option<String>,
}

herald_jobs::object_only!(deserialize ExportRequest, "an export object");

/// One column.
#[derive(Debug, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct FieldBody {
    /// Dotted document path.
    pub path: String,
    /// Column title.
    pub title: String,
}

herald_jobs::object_only!(deserialize FieldBody, "a field object {\"path\", \"title\"}");

/// One sort key.
#[derive(Debug, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct SortBody {
    /// Dotted document path.
    pub path: String,
    /// `asc` (default) or `desc`.
    #[serde(default, deserialize_with = "not_null")]
    pub order: Option<String>,
}

herald_jobs::object_only!(deserialize SortBody, "a sort object {\"path\", \"order\"}");

/// The account an export route addresses, for a token that reaches every
/// account.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AccountQuery {
    /// The account, 24-hex: required with a token that is not bound to an
    /// account; with a bound token it may be left out.
    account_id: Option<String>,
}

/// The answer to an accepted export.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExportAccepted {
    /// The export's key: what `export_finish` carries.
    pub key: String,
}

/// An export's status record.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExportRecord {
    /// The key.
    pub key: String,
    /// The account, 24-hex.
    pub account_id: String,
    /// Source collection.
    pub collection: String,
    /// `queued`, `running`, `finished`, `failed` or `cancelled`.
    #[schema(value_type = String)]
    pub status: Option<ExportStatus>,
    /// Documents written so far.
    pub processed: i64,
    /// Documents to write, once known.
    pub total: Option<i64>,
    /// processed / total, in percent.
    pub percent: f64,
    /// Rows in the finished file.
    pub rows: i64,
    /// The file's name when finished.
    pub file_name: Option<String>,
    /// The file's size in bytes when finished.
    pub file_size: Option<i64>,
    /// Where the storage keeps the file when finished: `<accountId>/<key>.csv`
    /// in the export directory, or `s3://bucket/key`. Never a path of the
    /// server, never credentials.
    pub file_location: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// RFC 3339 times; null until they happen.
    pub queued_at: Option<String>,
    /// When a worker started it.
    pub started_at: Option<String>,
    /// When it finished or failed.
    pub finished_at: Option<String>,
    /// When it was cancelled.
    pub cancelled_at: Option<String>,
    /// Last change.
    pub updated_at: Option<String>,
}

fn integer(document: &Document, name: &str) -> Option<i64> {
    match document.get(name) {
        Some(Bson::Int64(n)) => Some(*n),
        Some(Bson::Int32(n)) => Some(i64::from(*n)),
        Some(Bson::Double(n)) => Some(*n as i64),
        _ => None,
    }
}

impl From<&Document> for ExportRecord {
    fn from(d: &Document) -> Self {
        let text = |name: &str| d.get_str(name).ok().map(str::to_owned);
        let time = |name: &str| d.get_datetime(name).ok().and_then(|t| rfc3339(*t));
        let account_id = d
            .get_object_id("accountId")
            .map(|o| o.to_hex())
            .unwrap_or_default();
        // Records from before locations were relative held the worker's
        // path: shown as the relative location they stand for.
        let file_location = text("fileLocation").map(|location| {
            if location.starts_with('/') {
                format!("{account_id}/{}", text("fileName").unwrap_or_default())
            } else {
                location
            }
        });
        Self {
            key: text("key").or_else(|| text("_id")).unwrap_or_default(),
            account_id,
            collection: text("collection").unwrap_or_default(),
            status: ExportStatus::of(d),
            processed: integer(d, "processed").unwrap_or(0),
            total: integer(d, "total"),
            percent: d.get_f64("percent").unwrap_or(0.0),
            rows: integer(d, "rows").unwrap_or(0),
            file_name: text("fileName"),
            file_size: integer(d, "fileSize"),
            file_location,
            error: text("error"),
            queued_at: time("queuedAt"),
            started_at: time("startedAt"),
            finished_at: time("finishedAt"),
            cancelled_at: time("cancelledAt"),
            updated_at: time("updatedAt"),
        }
    }
}

/// The export a request addresses: the caller's account (or the one it
/// names) and the key in the path.
fn addressed(
    caller: &Caller,
    query: Result<Query<AccountQuery>, QueryRejection>,
    key: &str,
) -> Result<(AccountId, ExportKey), Problem> {
    let Query(query) = query?;
    let account = caller.account_for(named_account("accountId", query.account_id.as_deref())?)?;
    let key = ExportKey::parse(key).map_err(|e| Problem::from_validation(vec![e]))?;
    Ok((account, key))
}

/// 404 for export `key`.
fn missing_export(key: &ExportKey) -> Problem {
    Problem::not_found(format!("no export with key '{key}'"))
}

/// The record of `account`'s export `key`; 404 if there is none.
pub(crate) async fn record_of(
    state: &WebState,
    account: AccountId,
    key: &ExportKey,
) -> Result<Document, Problem> {
    state
        .api
        .exports
        .get(account, key)
        .await?
        .ok_or_else(|| missing_export(key))
}

/// Enqueue an export.
#[utoipa::path(
    post,
    path = "/v1/exports",
    tag = "exports",
    request_body = ExportRequest,
    responses(
        (status = 202, description = "Enqueued", body = ExportAccepted),
        (status = 400, description = "Invalid fields", body = ProblemBody),
        Unauthorized,
        NotThisAccount,
        (status = 409, description = "The key is in use", body = ProblemBody),
        BodyRefused,
    ),
    security(("token" = []))
)]
pub async fn enqueue(
    State(state): State<WebState>,
    caller: Caller,
    ApiJson(request): ApiJson<ExportRequest>,
) -> Result<(StatusCode, Json<ExportAccepted>), Problem> {
    let account = caller.account_for(named_account("accountId", request.account_id.as_deref())?)?;
    let job = Export {
        account_id: account.to_hex(),
        key: request
            .key
            .unwrap_or_else(|| ExportKey::generate().to_string()),
        collection: request.collection,
        filter: request
            .filter
            .unwrap_or_else(|| serde_json::Value::Object(Default::default())),
        fields: request
            .fields
            .into_iter()
            .map(|f| ExportField {
                path: f.path,
                title: f.title,
            })
            .collect(),
        sort: request
            .sort
            .into_iter()
            .map(|s| ExportSort {
                path: s.path,
                order: s.order.unwrap_or_else(|| "asc".to_owned()),
            })
            .collect(),
        time_zone: request.time_zone,

        traceparent: crate::web::request::trace().map(|trace| trace.to_string()),
    };
    let mut producer = state.api.producer.clone();
    let valid = submit(
        job,
        &state.api.export_limits,
        &state.api.exports,
        &mut producer,
    )
    .await
    .map_err(|error| match error {
        SubmitError::Invalid(errors) => Problem::from_validation(errors),
        SubmitError::InProgress(key) => Problem::new(
            StatusCode::CONFLICT,
            format!("this account's export '{key}' is queued or running"),
        ),
        SubmitError::Store(e) => Problem::unavailable(&e),
        SubmitError::Enqueue(e) => Problem::unavailable(&e),
    })?;
    tracing::info!(
        key = %valid.key,
        account_id = %valid.account,
        queue = "export",
        "export enqueued over HTTP"
    );
    Ok((
        StatusCode::ACCEPTED,
        Json(ExportAccepted {
            key: valid.key.to_string(),
        }),
    ))
}

/// An export's status record.
#[utoipa::path(
    get,
    path = "/v1/exports/{key}",
    tag = "exports",
    params(("key" = String, Path, description = "The export key"), AccountQuery),
    responses(
        (status = 200, description = "The record", body = ExportRecord),
        (status = 400, description = "Invalid key or account", body = ProblemBody),
        Unauthorized,
        NotThisAccount,
        (status = 404, description = "The account has no such export", body = ProblemBody),
    ),
    security(("token" = []))
)]
pub async fn status(
    State(state): State<WebState>,
    caller: Caller,
    Path(key): Path<String>,
    query: Result<Query<AccountQuery>, QueryRejection>,
) -> Result<Json<ExportRecord>, Problem> {
    let (account, key) = addressed(&caller, query, &key)?;
    let record = record_of(&state, account, &key).await?;
    Ok(Json(ExportRecord::from(&record)))
}

/// Download the finished file: streamed from the storage, or (with
/// `export.presign_secs` and a storage that presigns) a 307 to a URL the
/// client downloads from directly.
#[utoipa::path(
    get,
    path = "/v1/exports/{key}/file",
    tag = "exports",
    params(("key" = String, Path, description = "The export key"), AccountQuery),
    responses(
        (status = 200, description = "The CSV (UTF-8 with BOM)", content_type = "text/csv"),
        (status = 307, description = "With `export.presign_secs` and storage `s3`: download from the presigned URL in `Location`"),
        (status = 400, description = "Invalid key or account", body = ProblemBody),
        Unauthorized,
        NotThisAccount,
        (status = 404, description = "The account has no such export, or its file is gone", body = ProblemBody),
        (status = 409, description = "The export has not finished", body = ProblemBody),
    ),
    security(("token" = []))
)]
pub async fn file(
    State(state): State<WebState>,
    caller: Caller,
    Path(key): Path<String>,
    query: Result<Query<AccountQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let (account, key) = addressed(&caller, query, &key)?;
    let record = record_of(&state, account, &key).await?;
    download(&state, account, &key, &record).await
}

/// The file of the export `key` of `account`, whose record is `record`:
/// streamed, or a redirect to a presigned URL. Shared with the dashboard.
pub(crate) async fn download(
    state: &WebState,
    account: AccountId,
    key: &ExportKey,
    record: &Document,
) -> Result<Response, Problem> {
    let status = ExportStatus::of(record);
    if status != Some(ExportStatus::Finished) {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            format!(
                "export '{key}' is {}, not finished",
                status.map_or("", ExportStatus::as_str)
            ),
        ));
    }
    if let Some(valid_for) = state.api.presign {
        let url = state
            .api
            .storage
            .download_url(account, key, valid_for)
            .await
            .map_err(|e| Problem::unavailable(&e))?;
        if let Some(url) = url {
            return Ok((StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, url)]).into_response());
        }
    }
    let opened = state
        .api
        .storage
        .open_file(account, key)
        .await
        .map_err(|e| Problem::unavailable(&e))?
        .ok_or_else(|| Problem::not_found(format!("the file of export '{key}' is gone")))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_LENGTH, opened.file.size.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}\"", opened.file.name),
            ),
        ],
        Body::from_stream(ReaderStream::new(opened.reader)),
    )
        .into_response())
}

/// Cancel a queued or running export; its partial file is removed.
#[utoipa::path(
    delete,
    path = "/v1/exports/{key}",
    tag = "exports",
    params(("key" = String, Path, description = "The export key"), AccountQuery),
    responses(
        (status = 200, description = "Cancelled; the record", body = ExportRecord),
        (status = 400, description = "Invalid key or account", body = ProblemBody),
        Unauthorized,
        NotThisAccount,
        (status = 404, description = "The account has no such export", body = ProblemBody),
        (status = 409, description = "The export already ended", body = ProblemBody),
    ),
    security(("token" = []))
)]
pub async fn cancel(
    State(state): State<WebState>,
    caller: Caller,
    Path(key): Path<String>,
    query: Result<Query<AccountQuery>, QueryRejection>,
) -> Result<Json<ExportRecord>, Problem> {
    let (account, key) = addressed(&caller, query, &key)?;
    let record = record_of(&state, account, &key).await?;
    cancel_export(&state, account, &key, &record).await?;
    let record = record_of(&state, account, &key).await?;
    Ok(Json(ExportRecord::from(&record)))
}

/// Cancels `account`'s export `key` (record `record`); 409 if it already
/// ended. Shared with the dashboard.
pub(crate) async fn cancel_export(
    state: &WebState,
    account: AccountId,
    key: &ExportKey,
    record: &Document,
) -> Result<(), Problem> {
    if !state.api.exports.cancel(account, key).await? {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            format!(
                "export '{key}' is {}; only a queued or running export can be cancelled",
                ExportStatus::of(record).map_or("ended", ExportStatus::as_str)
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::web::v1::fields::{assert_null_refused, decoded};

    fn export() -> Value {
        json!({"collection": "message", "fields": [{"path": "title", "title": "Title"}]})
    }

    #[tokio::test]
    async fn an_optional_property_sent_as_null_is_refused_naming_it() {
        for name in ["key", "accountId", "filter", "timeZone"] {
            let mut body = export();
            body[name] = Value::Null;
            let answer = decoded::<ExportRequest>(&body.to_string())
                .await
                .expect_err(name);
            assert_null_refused(answer, name);
        }
        let mut body = export();
        body["sort"] = json!([{"path": "a", "order": null}]);
        let answer = decoded::<ExportRequest>(&body.to_string())
            .await
            .expect_err("order: null");
        assert_null_refused(answer, "sort[0].order");
        // Left out, each is its default.
        let request = decoded::<ExportRequest>(&export().to_string())
            .await
            .expect("an export");
        assert!(request.key.is_none() && request.filter.is_none());
    }
}
