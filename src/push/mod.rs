//! Realtime events and the providers that deliver them.
//!
//! - [`Event`] is what the browser receives: a name, data and channels.
//! - [`EventPusher`] is the seam for providers; [`TuisongbaoClient`] speaks
//!   Tuisongbao's REST API (the default), [`pusher`] the Pusher protocol.
//! - [`limits`] holds what a provider accepts in one request (channels per
//!   event, size of `data`, channel names), checked before sending;
//!   [`retry_after`] reads the wait a provider asks for.
//! - [`PushError`] classifies every failure as retryable or permanent, which is
//!   what the push queue's retry decision rests on.
//! - [`delivery`] remembers which events were delivered, so none is sent twice.
//! - [`rate_limit`] keeps every worker sharing the Redis under one request
//!   rate (`push.max_requests_per_sec`), each account within its share.
//! - [`channels`] names the account's channel and each user's;
//!   [`auth`] signs a browser's subscription to them.
//! - [`job`] defines the `push` queue's payload and the events a stored
//!   message sends; [`sandbox`] is the local stand-in for Tuisongbao used
//!   by tests, demos and development.

pub mod auth;
pub use crate::channels;
pub mod delivery;
pub mod job;
pub mod limits;
mod provider;
pub mod pusher;
pub mod rate_limit;
pub mod retry_after;
pub mod tuisongbao;

use std::{future::Future, time::Duration};

use serde::{Deserialize, Serialize};

pub use channels::{account_channel, UserChannels, ACCOUNT_CHANNEL_PREFIX};
pub use provider::Provider;
pub use pusher::PusherClient;
pub use tuisongbao::TuisongbaoClient;

pub use crate::message::NEW_MESSAGE_EVENT;

/// Event sent to a user's channel after messages were marked read.
pub const MESSAGE_READ_EVENT: &str = "message_read";
/// The event that tells a user's pages they archived, unarchived, deleted
/// or marked unread some messages (`crate::web::v1::inbox_actions`).
pub const INBOX_CHANGED_EVENT: &str = "inbox_changed";

/// One realtime event, as the provider's REST API takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct Event {
    /// Event name, e.g. `new_message`.
    pub name: String,
    /// Free-form JSON the frontend reads.
    pub data: serde_json::Value,
    /// Channels to deliver to.
    pub channels: Vec<String>,
}

herald_jobs::object_only!(Event, "an event object {\"name\", \"data\", \"channels\"}");

impl Event {
    /// Event `name` with `data` for the channel of `account`, which every
    /// signed-in user of the account listens on.
    pub fn to_account(
        account: herald_jobs::AccountId,
        name: &str,
        data: serde_json::Value,
    ) -> Self {
        Self {
            name: name.to_owned(),
            data,
            channels: vec![channels::account_channel(account)],
        }
    }
}

/// A provider that delivers events to channels.
pub trait EventPusher: Send + Sync + 'static {
    /// What one request of this provider may carry.
    fn limits(&self) -> limits::ProviderLimits;

    /// Sends `event` once, checked against [`EventPusher::limits`] first;
    /// an event naming more channels than one request may is sent as
    /// several requests, in order, stopping at the first failure. Success
    /// means the provider accepted every request.
    fn send(&self, event: &Event) -> impl Future<Output = Result<(), PushError>> + Send;
}

/// Longest piece of a provider's answer kept in an error.
const MAX_BODY_IN_ERROR: usize = 300;

/// Why a push failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// No connection could be made (refused, DNS, TLS).
    #[error("cannot connect to {endpoint}: {reason}")]
    Connect {
        /// The URL called.
        endpoint: String,
        /// The transport's explanation.
        reason: String,
    },
    /// No complete answer in time.
    #[error("no answer from {endpoint} within {timeout_ms} ms")]
    Timeout {
        /// The URL called.
        endpoint: String,
        /// The configured limit.
        timeout_ms: u128,
    },
    /// The provider answered with a non-2xx status.
    #[error("{endpoint} answered HTTP {status}: {body}")]
    Status {
        /// The URL called.
        endpoint: String,
        /// HTTP status code.
        status: u16,
        /// Start of the answer's body.
        body: String,
        /// The wait its `Retry-After` header asked for, if any.
        retry_after: Option<Duration>,
    },
    /// The provider answered 2xx but not with the body `OK`.
    #[error("{endpoint} answered HTTP {status} with {body:?} instead of \"OK\"")]
    UnexpectedBody {
        /// The URL called.
        endpoint: String,
        /// HTTP status code.
        status: u16,
        /// Start of the answer's body.
        body: String,
    },
    /// The request failed in some other way (an interrupted body, say).
    #[error("request to {endpoint} failed: {reason}")]
    Transport {
        /// The URL called.
        endpoint: String,
        /// The transport's explanation.
        reason: String,
    },
    /// The event's `data` is larger than the provider accepts; not sent.
    #[error("event {event}: data is {bytes} bytes, over the provider's limit of {limit} bytes; not sent")]
    DataTooLarge {
        /// The event's name.
        event: String,
        /// Size of its data as JSON.
        bytes: usize,
        /// The provider's limit.
        limit: usize,
    },
    /// A channel name breaks the provider's rules; not sent.
    #[error("channel {channel:?} is not a valid channel name: {reason}; not sent")]
    InvalidChannel {
        /// The channel as given.
        channel: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// The shared rate limit (or the account's share of it) held the
    /// request back; not sent.
    #[error(transparent)]
    RateLimited(#[from] rate_limit::RateLimitError),
    /// The event cannot be sent as it is (no channel, say); not sent.
    #[error("event {event} cannot be sent: {reason}")]
    InvalidEvent {
        /// The event's name.
        event: String,
        /// What is wrong.
        reason: String,
    },
}

impl PushError {
    /// Whether sending the same event again later may succeed.
    ///
    /// Connection errors, timeouts, 5xx, 429 (rate limited), 403 (over the
    /// call limit, as Tuisongbao documents it; over quota on Pusher) and 408
    /// (request timeout) are retryable; any other 4xx means the request
    /// itself is wrong (bad credentials, unknown app, malformed event) and
    /// is permanent, as is an event refused before sending. A 2xx without
    /// the expected body is treated as retryable: something answered, but
    /// we cannot tell whether the provider accepted the event.
    pub fn is_retryable(&self) -> bool {
        match self {
            PushError::Connect { .. }
            | PushError::Timeout { .. }
            | PushError::Transport { .. }
            | PushError::UnexpectedBody { .. }
            | PushError::RateLimited(_) => true,
            PushError::Status { status, .. } => {
                *status >= 500 || matches!(*status, 429 | 403 | 408)
            }
            PushError::DataTooLarge { .. }
            | PushError::InvalidChannel { .. }
            | PushError::InvalidEvent { .. } => false,
        }
    }

    /// Whether the event broke the provider's documented limits and was
    /// never sent.
    pub fn is_refused_before_sending(&self) -> bool {
        matches!(
            self,
            PushError::DataTooLarge { .. }
                | PushError::InvalidChannel { .. }
                | PushError::InvalidEvent { .. }
        )
    }

    /// The shortest wait before sending again, from the provider's
    /// `Retry-After` on a 429 or 503 answer.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            PushError::Status {
                status: 429 | 503,
                retry_after,
                ..
            } => *retry_after,
            _ => None,
        }
    }

    /// The HTTP status, when the provider answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            PushError::Status { status, .. } | PushError::UnexpectedBody { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }
}

impl PushError {
    /// The error for a request to `endpoint` that got no usable answer.
    pub(crate) fn from_transport(
        endpoint: &str,
        request_timeout: Duration,
        err: &reqwest::Error,
    ) -> Self {
        let endpoint = endpoint.to_owned();
        if err.is_timeout() {
            PushError::Timeout {
                endpoint,
                timeout_ms: request_timeout.as_millis(),
            }
        } else if err.is_connect() {
            PushError::Connect {
                endpoint,
                reason: error_chain(err),
            }
        } else {
            PushError::Transport {
                endpoint,
                reason: error_chain(err),
            }
        }
    }
}

/// Runs one provider call, timing it into `herald_push_duration_seconds`
/// with its outcome when `metrics` is given.
pub(crate) async fn timed(
    metrics: Option<&crate::ops::Metrics>,
    call: impl Future<Output = Result<(), PushError>>,
) -> Result<(), PushError> {
    let start = std::time::Instant::now();
    let result = call.await;
    if let Some(metrics) = metrics {
        let outcome = match &result {
            Ok(()) => crate::ops::PushOutcome::Ok,
            Err(e) if e.is_retryable() => crate::ops::PushOutcome::Retryable,
            Err(_) => crate::ops::PushOutcome::Permanent,
        };
        metrics.push_sent(outcome, start.elapsed());
    }
    result
}

/// The pooled HTTP client of a provider: its timeouts, Herald's user agent.
pub(crate) fn http_client(
    connect_timeout: Duration,
    request_timeout: Duration,
) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .timeout(request_timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// `url` with a path ending in `/`, so relative paths join below it.
pub(crate) fn as_base(url: &reqwest::Url) -> reqwest::Url {
    let mut base = url.clone();
    if !base.path().ends_with('/') {
        base.set_path(&format!("{}/", base.path()));
    }
    base
}

/// The error and its causes in one line ("error sending request: connection refused").
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Cuts a provider's body to a length fit for logs, on a character boundary.
pub(crate) fn clip_body(body: &str) -> String {
    let trimmed = body.trim();
    if trimmed.len() <= MAX_BODY_IN_ERROR {
        return trimmed.to_owned();
    }
    let mut end = MAX_BODY_IN_ERROR;
    while !trimmed.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &trimmed[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> PushError {
        status_after(code, None)
    }

    fn status_after(code: u16, retry_after: Option<Duration>) -> PushError {
        PushError::Status {
            endpoint: "http://x".into(),
            status: code,
            body: String::new(),
            retry_after,
        }
    }

    #[test]
    fn server_errors_throttling_and_the_call_limit_are_retryable() {
        for code in [500, 502, 503, 504, 429, 408, 403] {
            assert!(status(code).is_retryable(), "{code}");
        }
    }

    #[test]
    fn other_client_errors_are_permanent() {
        for code in [400, 401, 404, 405, 413, 422] {
            assert!(!status(code).is_retryable(), "{code}");
        }
    }

    #[test]
    fn retry_after_counts_on_429_and_503_only() {
        let wait = Some(Duration::from_secs(9));
        assert_eq!(status_after(429, wait).retry_after(), wait);
        assert_eq!(status_after(503, wait).retry_after(), wait);
        assert_eq!(status_after(500, wait).retry_after(), None);
        assert_eq!(status_after(403, wait).retry_after(), None);
        assert_eq!(status_after(429, None).retry_after(), None);
    }

    #[test]
    fn transport_failures_are_retryable() {
        let endpoint = "http://x".to_owned();
        assert!(PushError::Connect {
            endpoint: endpoint.clone(),
            reason: "refused".into()
        }
        .is_retryable());
        assert!(PushError::Timeout {
            endpoint: endpoint.clone(),
            timeout_ms: 5
        }
        .is_retryable());
        assert!(PushError::UnexpectedBody {
            endpoint,
            status: 200,
            body: "NO".into()
        }
        .is_retryable());
    }

    #[test]
    fn long_bodies_are_clipped_on_a_character_boundary() {
        let body = "错".repeat(200);
        let clipped = clip_body(&body);
        assert!(clipped.len() <= MAX_BODY_IN_ERROR + "…".len());
        assert!(clipped.ends_with('…'));
    }
}
