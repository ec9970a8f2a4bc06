//! A local stand-in for Tuisongbao and for a Pusher-protocol server
//! (`herald push-sandbox`).
//!
//! It answers the same REST calls as the real services — Tuisongbao's with
//! Basic auth checked and `OK` on success; the Pusher HTTP API's with the
//! request signature verified like a real server (module `pusher`) — and
//! records every event it receives, so tests, demos
//! and a developer's own setup can see exactly what Herald sent. Failures can
//! be scripted over HTTP for the next N requests (a status code, a delay or
//! both), which is how tests make a push fail and then succeed.
//!
//! Routes:
//! - `POST /v2/open/engine/events`: the Tuisongbao call.
//! - `POST /apps/{app_id}/events`, `POST /apps/{app_id}/batch_events`: the
//!   Pusher calls (same app id and secret, key [`DEFAULT_PUSHER_KEY`]
//!   unless given).
//! - `GET /_sandbox/events`: every request received, oldest first (JSON).
//! - `DELETE /_sandbox/events`: forget them.
//! - `GET /_sandbox/stats`: how many requests were answered with each status.
//! - `POST /_sandbox/failures`: `{"status": 500, "delayMs": 0, "count": 3}`
//!   makes the next `count` event requests wait `delayMs`, then answer
//!   `status` (or answer normally when `status` is absent). With
//!   `"hang": true` they are recorded on arrival (status 0) and never
//!   answered: a provider that took the event and went silent. With
//!   `"skip": N` the first N requests are answered normally before the plan
//!   applies; with `"retryAfterSecs": S` a scripted status carries
//!   `Retry-After: S`. A scripted 403 is Tuisongbao's "over the call limit".
//!
//! Like the real service, it enforces the documented limits of an event
//! (Tuisongbao's `LIMITS`): more than 10 channels, a channel
//! name that breaks the rules, or `data` over 10 KB is answered 400.
//! - `DELETE /_sandbox/failures`: cancel scripted failures.
//! - `GET /`: a page listing the events live.
//!
//! Why one module of about 490 lines: it stands in for a whole service
//! (routes, authentication, scripted failures, the documented limits, the
//! recording of what arrived) whose parts share one state; the Pusher
//! protocol's half is `pusher.rs`.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    extract::State,
    http::{header, HeaderMap, StatusCode, Uri},
    response::{Html, IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use herald::push::tuisongbao::{basic_auth, EVENTS_PATH};

mod pusher;

/// The Pusher app key the sandbox accepts unless told another (the
/// default `pusher.key`).
pub const DEFAULT_PUSHER_KEY: &str = "herald-dev-key";

/// Credentials the sandbox accepts.
#[derive(Debug, Clone)]
pub struct SandboxCredentials {
    /// Expected app id.
    pub app_id: String,
    /// Expected secret.
    pub secret: String,
}

/// One request the sandbox received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedRequest {
    /// 1 for the first request, then counting up.
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub received_at_ms: u64,
    /// Request path.
    pub path: String,
    /// Whether the request carried the sandbox's credentials (Basic auth
    /// for Tuisongbao, the query signature for Pusher). The credentials
    /// themselves are never kept: this page and its JSON are open.
    pub authorized: bool,
    /// The `Content-Type` header as received, if any.
    pub content_type: Option<String>,
    /// The HTTP status the sandbox answered with.
    pub status: u16,
    /// Event name (absent when the body did not parse).
    pub name: Option<String>,
    /// Channels.
    pub channels: Vec<String>,
    /// Event data.
    pub data: serde_json::Value,
    /// Optional socket to exclude.
    pub excluded_socket_id: Option<String>,
    /// Number of the HTTP request that carried the event: the events of
    /// one Pusher `batch_events` call share it.
    #[serde(default)]
    pub request: u64,
}

/// Scripted misbehaviour for the next `count` event requests.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FailurePlan {
    /// Status to answer with; absent means answer normally after the delay.
    #[serde(default)]
    pub status: Option<u16>,
    /// Delay before answering, in milliseconds.
    #[serde(default)]
    pub delay_ms: u64,
    /// How many requests it applies to.
    pub count: u32,
    /// Record each request (with status 0) and never answer it.
    #[serde(default)]
    pub hang: bool,
    /// Requests answered normally before the plan applies.
    #[serde(default)]
    pub skip: u32,
    /// `Retry-After` seconds sent with a scripted status.
    #[serde(default)]
    pub retry_after_secs: Option<u64>,
}

#[derive(Debug)]
struct SandboxState {
    credentials: SandboxCredentials,
    pusher_key: String,
    requests: Mutex<Vec<RecordedRequest>>,
    plan: Mutex<Option<FailurePlan>>,
    http_requests: std::sync::atomic::AtomicU64,
}

impl SandboxState {
    /// Numbers an HTTP request (1 for the first).
    fn next_request(&self) -> u64 {
        self.http_requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1
    }
}

/// The event body the real API accepts.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventBody {
    name: String,
    data: serde_json::Value,
    channels: Vec<String>,
    #[serde(default)]
    excluded_socket_id: Option<String>,
}

/// The sandbox's routes, ready to be served, accepting the Pusher key
/// [`DEFAULT_PUSHER_KEY`].
pub fn router(credentials: SandboxCredentials) -> Router {
    router_with_key(credentials, DEFAULT_PUSHER_KEY.to_owned())
}

/// The sandbox's routes, accepting `pusher_key` as the Pusher app key.
pub fn router_with_key(credentials: SandboxCredentials, pusher_key: String) -> Router {
    let state = Arc::new(SandboxState {
        credentials,
        pusher_key,
        requests: Mutex::new(Vec::new()),
        plan: Mutex::new(None),
        http_requests: Default::default(),
    });
    Router::new()
        .route(&format!("/{EVENTS_PATH}"), post(receive_event))
        .route("/apps/{app_id}/events", post(pusher::receive_events))
        .route("/apps/{app_id}/batch_events", post(pusher::receive_batch))
        .route("/_sandbox/events", get(list_events).delete(clear_events))
        .route("/_sandbox/stats", get(stats))
        .route(
            "/_sandbox/failures",
            post(plan_failures).delete(clear_failures),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/", get(page))
        .with_state(state)
}

/// Serves the sandbox on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    credentials: SandboxCredentials,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with_key(
        listener,
        credentials,
        DEFAULT_PUSHER_KEY.to_owned(),
        shutdown,
    )
    .await
}

/// Like [`serve`], accepting `pusher_key` as the Pusher app key.
pub async fn serve_with_key(
    listener: TcpListener,
    credentials: SandboxCredentials,
    pusher_key: String,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router_with_key(credentials, pusher_key))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Starts the sandbox on `addr` in a background task; returns the bound
/// address (useful with port 0) and the task's handle.
pub async fn spawn(
    addr: SocketAddr,
    credentials: SandboxCredentials,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let handle = tokio::spawn(serve(listener, credentials, std::future::pending()));
    Ok((bound, handle))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave these plain values half
    // written, so a poisoned lock is still safe to use.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Takes one use of the failure plan, if any.
fn next_failure(state: &SandboxState) -> Option<FailurePlan> {
    let mut plan = lock(&state.plan);
    let current = plan.as_mut()?;
    if current.skip > 0 {
        current.skip -= 1;
        return None;
    }
    if current.count == 0 {
        *plan = None;
        return None;
    }
    current.count -= 1;
    let taken = current.clone();
    if current.count == 0 {
        *plan = None;
    }
    Some(taken)
}

async fn receive_event(
    State(state): State<Arc<SandboxState>>,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let header_text = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let expected = basic_auth(&state.credentials.app_id, &state.credentials.secret);
    let authorized = header_text(header::AUTHORIZATION).as_deref() == Some(expected.as_str());
    let parsed: Result<EventBody, _> = serde_json::from_slice(&body);

    let failure = next_failure(&state);
    if let Some(plan) = &failure {
        if plan.hang {
            record(
                &state,
                &uri,
                authorized,
                header_text(header::CONTENT_TYPE),
                0,
                parsed,
            );
            // The client gives up (its timeout) and drops the connection,
            // which drops this future.
            return std::future::pending().await;
        }
        if plan.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(plan.delay_ms)).await;
        }
    }

    let mut retry_after = None;
    let (status, answer) = if !authorized {
        (
            StatusCode::UNAUTHORIZED,
            "invalid app credentials".to_owned(),
        )
    } else if let Some(code) = failure.as_ref().and_then(|p| p.status) {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        retry_after = failure.as_ref().and_then(|p| p.retry_after_secs);
        (status, format!("sandbox: scripted failure {code}"))
    } else {
        match &parsed {
            Err(e) => (StatusCode::BAD_REQUEST, format!("invalid event body: {e}")),
            Ok(event) if event.name.is_empty() => {
                (StatusCode::BAD_REQUEST, "name must not be empty".to_owned())
            }
            Ok(event) => {
                tuisongbao_limits_broken(event).unwrap_or((StatusCode::OK, "OK".to_owned()))
            }
        }
    };

    record(
        &state,
        &uri,
        authorized,
        header_text(header::CONTENT_TYPE),
        status.as_u16(),
        parsed,
    );
    let mut response = (status, answer).into_response();
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
    }
    response
}

/// Which documented limit `event` breaks, as the real service would say.
fn tuisongbao_limits_broken(event: &EventBody) -> Option<(StatusCode, String)> {
    let bytes = herald::push::limits::data_bytes(&event.data);
    limits_broken(&herald::push::tuisongbao::LIMITS, &event.channels, bytes)
}

/// Which of `limits` an event for `channels` with `data_bytes` of data
/// breaks: the status (413 for data, else 400) and the reason.
fn limits_broken(
    limits: &herald::push::limits::ProviderLimits,
    channels: &[String],
    data_bytes: usize,
) -> Option<(StatusCode, String)> {
    let refuse = |reason: String| Some((StatusCode::BAD_REQUEST, reason));
    if channels.is_empty() {
        return refuse("channels must not be empty".to_owned());
    }
    if channels.len() > limits.max_channels {
        return refuse(format!(
            "at most {} channels per event, got {}",
            limits.max_channels,
            channels.len()
        ));
    }
    if let Some(reason) = channels.iter().find_map(|c| limits.check_channel(c).err()) {
        return refuse(reason);
    }
    (data_bytes > limits.max_data_bytes).then(|| {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "data is {data_bytes} bytes, at most {} allowed",
                limits.max_data_bytes
            ),
        )
    })
}

/// Records one received request, answered with `status` (0: not answered).
fn record(
    state: &SandboxState,
    uri: &Uri,
    authorized: bool,
    content_type: Option<String>,
    status: u16,
    parsed: Result<EventBody, serde_json::Error>,
) {
    let request = state.next_request();
    record_event(
        state,
        uri,
        authorized,
        content_type,
        status,
        parsed,
        request,
    );
}

/// Records one event of HTTP request number `request`.
fn record_event(
    state: &SandboxState,
    uri: &Uri,
    authorized: bool,
    content_type: Option<String>,
    status: u16,
    parsed: Result<EventBody, serde_json::Error>,
    request: u64,
) {
    let record = {
        let mut requests = lock(&state.requests);
        let (name, channels, data, excluded_socket_id) = match parsed {
            Ok(event) => (
                Some(event.name),
                event.channels,
                event.data,
                event.excluded_socket_id,
            ),
            Err(_) => (None, Vec::new(), serde_json::Value::Null, None),
        };
        let record = RecordedRequest {
            seq: requests.len() as u64 + 1,
            received_at_ms: now_ms(),
            path: uri.path().to_owned(),
            authorized,
            content_type,
            status,
            name,
            channels,
            data,
            excluded_socket_id,
            request,
        };
        requests.push(record.clone());
        record
    };
    tracing::info!(
        seq = record.seq,
        status = record.status,
        event = record.name.as_deref().unwrap_or("-"),
        channels = ?record.channels,
        "sandbox received an event"
    );
}

async fn list_events(State(state): State<Arc<SandboxState>>) -> Json<Vec<RecordedRequest>> {
    Json(lock(&state.requests).clone())
}

/// Counts of requests received, in all and per answered status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxStats {
    /// Requests received.
    pub requests: u64,
    /// Requests per answered HTTP status ("200", "401", ...).
    pub by_status: std::collections::BTreeMap<String, u64>,
}

async fn stats(State(state): State<Arc<SandboxState>>) -> Json<SandboxStats> {
    let requests = lock(&state.requests);
    let mut stats = SandboxStats {
        requests: requests.len() as u64,
        ..SandboxStats::default()
    };
    for request in requests.iter() {
        *stats
            .by_status
            .entry(request.status.to_string())
            .or_default() += 1;
    }
    Json(stats)
}

async fn clear_events(State(state): State<Arc<SandboxState>>) -> StatusCode {
    lock(&state.requests).clear();
    StatusCode::NO_CONTENT
}

async fn plan_failures(
    State(state): State<Arc<SandboxState>>,
    Json(plan): Json<FailurePlan>,
) -> Response {
    if let Some(code) = plan.status {
        if StatusCode::from_u16(code).is_err() || code < 200 {
            return (
                StatusCode::BAD_REQUEST,
                format!("status {code} is not a valid HTTP status"),
            )
                .into_response();
        }
    }
    *lock(&state.plan) = (plan.count > 0).then_some(plan.clone());
    (StatusCode::OK, Json(plan)).into_response()
}

async fn clear_failures(State(state): State<Arc<SandboxState>>) -> StatusCode {
    *lock(&state.plan) = None;
    StatusCode::NO_CONTENT
}

async fn page() -> Html<&'static str> {
    Html(include_str!("page.html"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_with(plan: Option<FailurePlan>) -> SandboxState {
        SandboxState {
            credentials: SandboxCredentials {
                app_id: "a".into(),
                secret: "s".into(),
            },
            pusher_key: DEFAULT_PUSHER_KEY.into(),
            requests: Mutex::new(Vec::new()),
            plan: Mutex::new(plan),
            http_requests: Default::default(),
        }
    }

    #[test]
    fn a_plan_applies_to_exactly_count_requests() {
        let state = state_with(Some(FailurePlan {
            status: Some(500),
            delay_ms: 0,
            count: 2,
            ..FailurePlan::default()
        }));
        assert_eq!(next_failure(&state).and_then(|p| p.status), Some(500));
        assert_eq!(next_failure(&state).and_then(|p| p.status), Some(500));
        assert!(next_failure(&state).is_none());
    }

    #[test]
    fn a_plan_with_skip_lets_that_many_requests_through_first() {
        let state = state_with(Some(FailurePlan {
            status: Some(500),
            count: 1,
            skip: 2,
            ..FailurePlan::default()
        }));
        assert!(next_failure(&state).is_none());
        assert!(next_failure(&state).is_none());
        assert_eq!(next_failure(&state).and_then(|p| p.status), Some(500));
        assert!(next_failure(&state).is_none());
    }

    fn body(channels: usize, data: serde_json::Value) -> EventBody {
        EventBody {
            name: "e".into(),
            data,
            channels: (0..channels).map(|i| format!("c{i}")).collect(),
            excluded_socket_id: None,
        }
    }

    #[test]
    fn the_documented_limits_are_enforced_like_the_real_service() {
        assert_eq!(
            tuisongbao_limits_broken(&body(10, serde_json::json!({}))),
            None
        );
        assert!(tuisongbao_limits_broken(&body(11, serde_json::json!({}))).is_some());
        assert!(tuisongbao_limits_broken(&body(0, serde_json::json!({}))).is_some());
        let big = serde_json::Value::String("x".repeat(10 * 1024));
        assert!(tuisongbao_limits_broken(&body(1, big)).is_some());
        let mut bad = body(1, serde_json::json!({}));
        bad.channels = vec!["a b".into()];
        assert!(tuisongbao_limits_broken(&bad).is_some());
    }

    #[test]
    fn without_a_plan_nothing_fails() {
        assert!(next_failure(&state_with(None)).is_none());
    }
}
