//! How `herald web` says no over JSON, and the JSON body extractor that
//! says it: one error body for the producers' API (`/v1`), the dashboard's
//! API (`/api/v1`) and its guard.
//!
//! Every error is a JSON object: `{"error": "what went wrong"}`, plus, for a
//! body or query that failed validation, `"fields": {"<path>": "<reason>"}`
//! with one entry per wrong field, named as in the request (`sender.id`).

use std::collections::BTreeMap;

use axum::{
    body::Bytes,
    extract::{rejection::QueryRejection, FromRequest, Request},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use herald_jobs::ValidationError;
use serde::{de::DeserializeOwned, Serialize};

/// An error answer: status, message and per-field reasons.
#[derive(Debug)]
pub struct Problem {
    status: StatusCode,
    body: ProblemBody,
}

/// The JSON of an error answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProblemBody {
    /// What went wrong, in a sentence.
    pub error: String,
    /// For invalid input: each wrong field (JSON path) and why.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, String>,
}

/// The OpenAPI answers every authenticated `/v1` route shares: no valid
/// token (401), or too many failed token checks from the caller's address
/// (429, see [`crate::web::throttle`]).
#[derive(utoipa::IntoResponses)]
pub enum Unauthorized {
    /// The request carries no token Herald knows.
    #[response(status = 401, description = "No valid token")]
    NoValidToken(ProblemBody),
    /// The caller's address failed more token checks than
    /// `web.failed_logins_per_minute` allows; nothing was checked.
    #[response(
        status = 429,
        description = "Too many failed sign-ins or token checks from this address (web.failed_logins_per_minute); nothing was checked",
        headers(("Retry-After" = u64, description = "Seconds until the address may try again"))
    )]
    Throttled(ProblemBody),
}

/// The OpenAPI answer of a `/v1` route that names an account: the token
/// may not reach it (403).
#[derive(utoipa::IntoResponses)]
#[response(status = 403, description = "The token may not reach this account")]
pub struct NotThisAccount(pub ProblemBody);

/// The OpenAPI answers of a `/v1` route with a JSON body ([`ApiJson`]):
/// too large (413) or not JSON (415).
#[derive(utoipa::IntoResponses)]
pub enum BodyRefused {
    /// The body is larger than the route accepts.
    #[response(status = 413, description = "Body too large")]
    TooLarge(ProblemBody),
    /// The body is not JSON.
    #[response(status = 415, description = "Body is not JSON")]
    NotJson(ProblemBody),
}

impl Problem {
    /// An answer with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ProblemBody {
                error: message.into(),
                fields: BTreeMap::new(),
            },
        }
    }

    /// 400 naming the wrong fields.
    pub fn invalid(errors: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut fields = BTreeMap::new();
        for (field, reason) in errors {
            fields
                .entry(field)
                .and_modify(|all: &mut String| {
                    all.push_str("; ");
                    all.push_str(&reason);
                })
                .or_insert(reason);
        }
        Self {
            status: StatusCode::BAD_REQUEST,
            body: ProblemBody {
                error: "the request has invalid fields".to_owned(),
                fields,
            },
        }
    }

    /// 400 from the validation errors of a job.
    pub fn from_validation(errors: Vec<ValidationError>) -> Self {
        Self::invalid(errors.into_iter().map(|e| (e.field.to_owned(), e.reason)))
    }

    /// 404 for `what`.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, what)
    }

    /// 503: a service Herald depends on failed. The error (a driver's,
    /// naming hosts and ports) is logged under the request's id; the answer
    /// says only that it failed and which request it was (see
    /// [`super::request`]), so the caller may retry and an operator find
    /// the cause.
    pub fn unavailable(error: &dyn std::error::Error) -> Self {
        let id = super::request::current().unwrap_or_else(|| "unknown".to_owned());
        tracing::error!(%error, request_id = %id, "request failed on a service Herald needs");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("a service Herald needs did not answer; try again (request {id})"),
        )
    }

    /// What went wrong, as the answer says it.
    pub fn message(&self) -> &str {
        &self.body.error
    }

    /// The status this answer carries.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

/// 400 for a query string that does not decode, naming `query`.
impl From<QueryRejection> for Problem {
    fn from(rejection: QueryRejection) -> Self {
        let text = rejection.body_text();
        let reason = text
            .strip_prefix("Failed to deserialize query string: ")
            .unwrap_or(&text)
            .to_owned();
        Self::invalid([("query".to_owned(), reason)])
    }
}

impl From<crate::store::StoreError> for Problem {
    fn from(error: crate::store::StoreError) -> Self {
        Self::unavailable(&error)
    }
}

impl From<crate::queue::QueueError> for Problem {
    fn from(error: crate::queue::QueueError) -> Self {
        match error {
            crate::queue::QueueError::Filter { .. } => {
                Self::new(StatusCode::BAD_REQUEST, error.to_string())
            }
            error => Self::unavailable(&error),
        }
    }
}

/// The field a serde error at the body's root is about: the name in
/// ``missing field `x` `` or ``unknown field `x` ``.
fn root_field(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let length = message[start..].find('`')?;
    Some(message[start..start + length].to_owned())
}

/// Where in the body a decoding error is, and what it is.
fn decode_problem(error: serde_path_to_error::Error<serde_json::Error>) -> Problem {
    let path = error.path().to_string();
    let inner = error.into_inner();
    if inner.is_syntax() || inner.is_eof() {
        return Problem::new(
            StatusCode::BAD_REQUEST,
            format!("the body is not valid JSON: {inner}"),
        );
    }
    let message = inner.to_string();
    // serde appends " at line L column C", which says nothing to the caller.
    let reason = message
        .split(" at line ")
        .next()
        .unwrap_or(&message)
        .to_owned();
    // serde reads a struct from an array too; the API only takes objects.
    if path.starts_with('[') {
        return Problem::invalid([("body".to_owned(), "must be a JSON object".to_owned())]);
    }
    let field = match path.as_str() {
        "." | "" => root_field(&reason).unwrap_or_else(|| "body".to_owned()),
        // The path of an unknown field already ends with its name; that of
        // a missing one stops at the object that lacks it.
        nested => match root_field(&reason) {
            Some(inner_field) if reason.starts_with("missing field") => {
                format!("{nested}.{inner_field}")
            }
            _ => nested.to_owned(),
        },
    };
    Problem::invalid([(field, reason)])
}

/// A JSON request body decoded into `T`, refusing what `axum::Json` would
/// refuse but answering with a [`Problem`] that names the field: 415 for a
/// body that is not `application/json`, 413 over the size limit, 400 for
/// malformed JSON, a wrong type, a missing or an unknown field.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send the body as JSON with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                let status = rejection.status();
                if status == StatusCode::PAYLOAD_TOO_LARGE {
                    Problem::new(
                        status,
                        "the body is larger than this server accepts (web.max_body_bytes)",
                    )
                } else {
                    Problem::new(status, rejection.body_text())
                }
            })?;
        let mut decoder = serde_json::Deserializer::from_slice(&bytes);
        let value = serde_path_to_error::deserialize(&mut decoder).map_err(decode_problem)?;
        decoder.end().map_err(|e| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                format!("the body is not valid JSON: {e}"),
            )
        })?;
        Ok(Self(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        title: String,
        inner: Option<Inner>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        id: String,
    }

    fn fields_of(body: &str) -> Vec<String> {
        let mut decoder = serde_json::Deserializer::from_str(body);
        let error = serde_path_to_error::deserialize::<_, Outer>(&mut decoder).unwrap_err();
        decode_problem(error).body.fields.into_keys().collect()
    }

    #[test]
    fn decoding_errors_name_the_field_in_the_request() {
        assert_eq!(fields_of(r#"{"title": 5}"#), ["title"]);
        assert_eq!(fields_of(r#"{}"#), ["title"]);
        assert_eq!(fields_of(r#"{"title": "t", "colour": 1}"#), ["colour"]);
        assert_eq!(
            fields_of(r#"{"title": "t", "inner": {"id": 1}}"#),
            ["inner.id"]
        );
        assert_eq!(fields_of(r#"{"title": "t", "inner": {}}"#), ["inner.id"]);
        assert_eq!(
            fields_of(r#"{"title": "t", "inner": {"id": "x", "y": 1}}"#),
            ["inner.y"]
        );
    }

    #[test]
    fn several_reasons_for_one_field_are_joined() {
        let problem = Problem::invalid([
            ("a".to_owned(), "one".to_owned()),
            ("a".to_owned(), "two".to_owned()),
        ]);
        assert_eq!(problem.body.fields["a"], "one; two");
        assert_eq!(problem.status(), StatusCode::BAD_REQUEST);
    }
}
