//! Optional body properties: left out for their default, never `null`.
//!
//! The document types each optional property as its value alone (a
//! string, an object), not as nullable, and leaving one out already means
//! "the default". A `null` is therefore refused with the usual 400 naming
//! the property, rather than read as "left out": the server accepts
//! exactly what the document calls valid, and a producer that sends
//! `"to": null` by mistake hears of it instead of messaging the whole
//! account.

use serde::{de::Error, Deserialize, Deserializer};

/// Why a `null` optional property is refused, as the answer states it.
pub const NULL_REFUSED: &str = "must not be null: leave it out for the default";

/// Reads an optional property that, when present, must hold a value: for
/// fields marked `#[serde(default, deserialize_with = "not_null")]`, so
/// that a missing property is `None` and a `null` one an error.
pub fn not_null<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    match Option::<T>::deserialize(deserializer)? {
        Some(value) => Ok(Some(value)),
        None => Err(D::Error::custom(NULL_REFUSED)),
    }
}

/// Decodes `body` as a handler's [`ApiJson`](super::problem::ApiJson)
/// extractor does, and renders a refusal as the answer's status and JSON:
/// what a caller sees.
#[cfg(test)]
pub(crate) async fn decoded<T: serde::de::DeserializeOwned>(
    body: &str,
) -> Result<T, (axum::http::StatusCode, serde_json::Value)> {
    use axum::{extract::FromRequest, response::IntoResponse};
    let request = axum::http::Request::builder()
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_owned()))
        .expect("a request");
    match super::problem::ApiJson::<T>::from_request(request, &()).await {
        Ok(super::problem::ApiJson(value)) => Ok(value),
        Err(problem) => {
            let response = problem.into_response();
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .expect("the answer's body");
            Err((
                status,
                serde_json::from_slice(&bytes).expect("a JSON answer"),
            ))
        }
    }
}

/// Asserts that `answer` refuses exactly `field` as null, with the API's
/// error body and nothing of the decoder's internals (positions, types).
#[cfg(test)]
pub(crate) fn assert_null_refused(
    answer: (axum::http::StatusCode, serde_json::Value),
    field: &str,
) {
    let (status, body) = answer;
    assert_eq!(status, axum::http::StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        body,
        serde_json::json!({
            "error": "the request has invalid fields",
            "fields": {field: NULL_REFUSED},
        })
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        #[serde(default, deserialize_with = "not_null")]
        key: Option<String>,
        #[serde(default, deserialize_with = "not_null")]
        filter: Option<serde_json::Value>,
    }

    #[test]
    fn a_missing_property_is_none_and_a_null_one_is_refused() {
        let body: Body = serde_json::from_str("{}").expect("an empty body");
        assert!(body.key.is_none() && body.filter.is_none());
        let body: Body = serde_json::from_str(r#"{"key": "k", "filter": {}}"#).expect("values");
        assert_eq!(body.key.as_deref(), Some("k"));
        assert_eq!(body.filter, Some(serde_json::json!({})));
        for text in [r#"{"key": null}"#, r#"{"filter": null}"#] {
            let error = serde_json::from_str::<Body>(text).expect_err(text);
            assert!(error.to_string().starts_with(NULL_REFUSED), "{error}");
        }
    }
}
