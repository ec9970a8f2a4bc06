//! The sandbox's Pusher HTTP API: `/apps/{app_id}/events` and
//! `/apps/{app_id}/batch_events`.
//!
//! Each request is checked as a real server checks it: the app id, the
//! key, `auth_version=1.0`, a timestamp within 600 s, `body_md5` against
//! the body and `auth_signature` against the secret (401 otherwise); then
//! the documented limits (at most 100 channels and 10 KB of data per event,
//! channel names of at most 164 allowed characters, at most 10 events per
//! batch: 400, or 413 for data). Accepted requests are answered `{}`. The
//! failure plan applies as on the Tuisongbao route. Every event is
//! recorded, its `data` string parsed back into JSON.

use std::{sync::Arc, time::Duration};

use axum::{
    extract::{Path, RawQuery, State},
    http::{header, HeaderMap, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use serde::Deserialize;

use super::{next_failure, record_event, EventBody, SandboxState};
use herald::push::pusher::{
    limits::{LIMITS, MAX_BATCH},
    signature,
};

/// Largest clock difference a signed request may have, in seconds.
const MAX_CLOCK_SKEW_SECS: u64 = 600;

/// The body of `/events`.
#[derive(Debug, Deserialize)]
struct EventsBody {
    name: String,
    #[serde(default)]
    channels: Vec<String>,
    #[serde(default)]
    channel: Option<String>,
    data: String,
    #[serde(default)]
    socket_id: Option<String>,
}

/// One event of `/batch_events`.
#[derive(Debug, Deserialize)]
struct BatchItem {
    name: String,
    channel: String,
    data: String,
    #[serde(default)]
    socket_id: Option<String>,
}

/// The body of `/batch_events`.
#[derive(Debug, Deserialize)]
struct BatchBody {
    batch: Vec<BatchItem>,
}

/// `POST /apps/{app_id}/events`.
pub(super) async fn receive_events(
    state: State<Arc<SandboxState>>,
    app_id: Path<String>,
    query: RawQuery,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let parsed = serde_json::from_slice::<EventsBody>(&body).map(|event| {
        let mut channels = event.channels;
        channels.extend(event.channel);
        vec![Received {
            data_bytes: event.data.len(),
            event: EventBody {
                name: event.name,
                data: parse_data(event.data),
                channels,
                excluded_socket_id: event.socket_id,
            },
        }]
    });
    receive(state, app_id, query, uri, headers, body, parsed).await
}

/// `POST /apps/{app_id}/batch_events`.
pub(super) async fn receive_batch(
    state: State<Arc<SandboxState>>,
    app_id: Path<String>,
    query: RawQuery,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let parsed = serde_json::from_slice::<BatchBody>(&body).map(|batch| {
        batch
            .batch
            .into_iter()
            .map(|item| Received {
                data_bytes: item.data.len(),
                event: EventBody {
                    name: item.name,
                    data: parse_data(item.data),
                    channels: vec![item.channel],
                    excluded_socket_id: item.socket_id,
                },
            })
            .collect()
    });
    receive(state, app_id, query, uri, headers, body, parsed).await
}

/// One event as received, with the size of its `data` string.
struct Received {
    event: EventBody,
    data_bytes: usize,
}

/// The event's `data` string as JSON (a string that is not JSON stays a
/// string).
fn parse_data(data: String) -> serde_json::Value {
    serde_json::from_str(&data).unwrap_or(serde_json::Value::String(data))
}

#[allow(clippy::too_many_arguments)]
async fn receive(
    State(state): State<Arc<SandboxState>>,
    Path(app_id): Path<String>,
    RawQuery(query): RawQuery,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
    parsed: Result<Vec<Received>, serde_json::Error>,
) -> Response {
    let request = state.next_request();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let record_all = |status: u16, events: &Result<Vec<Received>, serde_json::Error>| {
        match events {
            Ok(events) => {
                for Received { event, .. } in events {
                    let copy = EventBody {
                        name: event.name.clone(),
                        data: event.data.clone(),
                        channels: event.channels.clone(),
                        excluded_socket_id: event.excluded_socket_id.clone(),
                    };
                    record_event(
                        &state,
                        &uri,
                        status != 401,
                        content_type.clone(),
                        status,
                        Ok(copy),
                        request,
                    );
                }
            }
            Err(_) => record_event(
                &state,
                &uri,
                status != 401,
                content_type.clone(),
                status,
                // Not an event: recorded without one.
                serde_json::from_str::<EventBody>("null"),
                request,
            ),
        }
    };

    let failure = next_failure(&state);
    if let Some(plan) = &failure {
        if plan.hang {
            record_all(0, &parsed);
            return std::future::pending().await;
        }
        if plan.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(plan.delay_ms)).await;
        }
    }

    let mut retry_after = None;
    let (status, answer) =
        if let Err(reason) = authenticate(&state, &app_id, uri.path(), query.as_deref(), &body) {
            (StatusCode::UNAUTHORIZED, reason)
        } else if let Some(code) = failure.as_ref().and_then(|p| p.status) {
            retry_after = failure.as_ref().and_then(|p| p.retry_after_secs);
            (
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                format!("sandbox: scripted failure {code}"),
            )
        } else {
            match &parsed {
                Err(e) => (StatusCode::BAD_REQUEST, format!("invalid body: {e}")),
                Ok(events) => match limits_broken(events) {
                    Some(refusal) => refusal,
                    None => (StatusCode::OK, "{}".to_owned()),
                },
            }
        };
    record_all(status.as_u16(), &parsed);
    let mut response = (status, answer).into_response();
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
    }
    response
}

/// Checks the request's signature as a Pusher server does.
fn authenticate(
    state: &SandboxState,
    app_id: &str,
    path: &str,
    query: Option<&str>,
    body: &[u8],
) -> Result<(), String> {
    if app_id != state.credentials.app_id {
        return Err(format!("unknown app id {app_id:?}"));
    }
    let params: Vec<(String, String)> =
        reqwest::Url::parse(&format!("http://sandbox/?{}", query.unwrap_or_default()))
            .map(|url| url.query_pairs().into_owned().collect())
            .unwrap_or_default();
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if param("auth_key") != Some(state.pusher_key.as_str()) {
        return Err("unknown auth_key".to_owned());
    }
    if param("auth_version") != Some(signature::AUTH_VERSION) {
        return Err("auth_version must be 1.0".to_owned());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    match param("auth_timestamp").and_then(|t| t.parse::<u64>().ok()) {
        Some(at) if at.abs_diff(now) <= MAX_CLOCK_SKEW_SECS => {}
        _ => return Err("auth_timestamp missing or more than 600 s off".to_owned()),
    }
    if param("body_md5") != Some(signature::body_md5(body).as_str()) {
        return Err("body_md5 does not match the body".to_owned());
    }
    if !signature::verify(&state.credentials.secret, "POST", path, &params) {
        return Err("invalid auth_signature".to_owned());
    }
    Ok(())
}

/// The answer a Pusher server gives to events over its limits.
fn limits_broken(events: &[Received]) -> Option<(StatusCode, String)> {
    if events.len() > MAX_BATCH {
        return Some((
            StatusCode::BAD_REQUEST,
            format!("at most {MAX_BATCH} events per batch, got {}", events.len()),
        ));
    }
    events
        .iter()
        .find_map(|r| super::limits_broken(&LIMITS, &r.event.channels, r.data_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SandboxCredentials, DEFAULT_PUSHER_KEY};

    fn state() -> SandboxState {
        SandboxState {
            credentials: SandboxCredentials {
                app_id: "7".into(),
                secret: "s".into(),
            },
            pusher_key: DEFAULT_PUSHER_KEY.into(),
            requests: Default::default(),
            plan: Default::default(),
            http_requests: Default::default(),
        }
    }

    fn query(params: &[(String, String)]) -> String {
        let mut url = reqwest::Url::parse("http://x/").unwrap();
        url.query_pairs_mut().extend_pairs(params);
        url.query().unwrap_or_default().to_owned()
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn a_correctly_signed_request_passes_and_any_change_fails() {
        let state = state();
        let body = br#"{"name":"e","channels":["c"],"data":"{}"}"#;
        let path = "/apps/7/events";
        let signed = signature::signed_params(DEFAULT_PUSHER_KEY, "s", path, body, now());
        let q = query(&signed);
        assert_eq!(authenticate(&state, "7", path, Some(&q), body), Ok(()));
        assert!(authenticate(&state, "8", path, Some(&q), body).is_err());
        assert!(authenticate(&state, "7", "/apps/7/batch_events", Some(&q), body).is_err());
        assert!(authenticate(&state, "7", path, Some(&q), b"{}").is_err());
        assert!(authenticate(&state, "7", path, None, body).is_err());
        let wrong_secret = query(&signature::signed_params(
            DEFAULT_PUSHER_KEY,
            "x",
            path,
            body,
            now(),
        ));
        assert!(authenticate(&state, "7", path, Some(&wrong_secret), body).is_err());
        let stale = query(&signature::signed_params(
            DEFAULT_PUSHER_KEY,
            "s",
            path,
            body,
            now() - 601,
        ));
        assert!(authenticate(&state, "7", path, Some(&stale), body).is_err());
    }

    fn event(channels: usize, data: &str) -> Received {
        Received {
            data_bytes: data.len(),
            event: EventBody {
                name: "e".into(),
                data: parse_data(data.to_owned()),
                channels: (0..channels).map(|i| format!("c{i}")).collect(),
                excluded_socket_id: None,
            },
        }
    }

    #[test]
    fn the_documented_limits_are_enforced() {
        assert_eq!(limits_broken(&[event(100, "{}")]), None);
        assert!(limits_broken(&[event(101, "{}")]).is_some());
        let big = "x".repeat(10 * 1024 + 1);
        assert_eq!(
            limits_broken(&[event(1, &big)]).map(|r| r.0),
            Some(StatusCode::PAYLOAD_TOO_LARGE)
        );
        let batch: Vec<Received> = (0..11).map(|_| event(1, "{}")).collect();
        assert!(limits_broken(&batch).is_some());
        assert_eq!(limits_broken(&batch[..10]), None);
        let mut bad = event(1, "{}");
        bad.event.channels = vec!["a".repeat(165)];
        assert!(limits_broken(&[bad]).is_some());
    }
}
