//! The Tuisongbao REST client.
//!
//! One `reqwest::Client` (one connection pool) is shared by every push job of
//! a process. Each call is `POST {base}/v2/open/engine/events` with Basic auth;
//! only a 2xx answer whose body is exactly `OK` counts as delivered. Events
//! are checked against [`LIMITS`] before any call, and every call waits for
//! its turn under the shared rate limit ([`RateLimiter`]) first.

pub mod limits;

use std::time::{Duration, SystemTime};

use base64::Engine;
use reqwest::header::{HeaderValue, AUTHORIZATION};
use secrecy::ExposeSecret;

pub use self::limits::LIMITS;
use super::{
    clip_body, limits::ProviderLimits, rate_limit::RateLimiter, Event, EventPusher, PushError,
};
use crate::config::TuisongbaoSettings;

/// Path of the events endpoint below the base URL.
pub const EVENTS_PATH: &str = "v2/open/engine/events";

/// A pooled HTTP client for one Tuisongbao application.
#[derive(Debug, Clone)]
pub struct TuisongbaoClient {
    http: reqwest::Client,
    endpoint: reqwest::Url,
    authorization: HeaderValue,
    request_timeout: Duration,
    metrics: Option<crate::ops::Metrics>,
    limiter: RateLimiter,
}

/// The `Authorization` header value for `app_id` and `secret`.
pub fn basic_auth(app_id: &str, secret: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{app_id}:{secret}"));
    format!("Basic {token}")
}

impl TuisongbaoClient {
    /// Builds the client; fails only if the TLS backend cannot initialise.
    pub fn new(settings: &TuisongbaoSettings) -> Result<Self, reqwest::Error> {
        let http = super::http_client(settings.connect_timeout, settings.request_timeout)?;
        let base = super::as_base(&settings.url);
        let endpoint = base
            .join(EVENTS_PATH)
            .expect("a fixed relative path joins any http(s) base URL");
        let mut authorization = HeaderValue::from_str(&basic_auth(
            &settings.app_id,
            settings.secret.expose_secret(),
        ))
        .unwrap_or_else(|_| HeaderValue::from_static("Basic"));
        authorization.set_sensitive(true);
        Ok(Self {
            http,
            endpoint,
            authorization,
            request_timeout: settings.request_timeout,
            metrics: None,
            limiter: RateLimiter::unlimited(),
        })
    }

    /// Times every call into `herald_push_duration_seconds`.
    pub fn with_metrics(mut self, metrics: crate::ops::Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Waits for `limiter`'s turn before every call.
    pub fn with_rate_limit(mut self, limiter: RateLimiter) -> Self {
        self.limiter = limiter;
        self
    }

    /// The full URL events are posted to.
    pub fn endpoint(&self) -> &reqwest::Url {
        &self.endpoint
    }
}

impl EventPusher for TuisongbaoClient {
    fn limits(&self) -> ProviderLimits {
        LIMITS
    }

    async fn send(&self, event: &Event) -> Result<(), PushError> {
        LIMITS.check(event)?;
        for channels in LIMITS.channel_chunks(&event.channels) {
            self.limiter.acquire().await?;
            if channels.len() == event.channels.len() {
                super::timed(self.metrics.as_ref(), self.post(event)).await?;
            } else {
                let chunk = Event {
                    name: event.name.clone(),
                    data: event.data.clone(),
                    channels: channels.to_vec(),
                };
                super::timed(self.metrics.as_ref(), self.post(&chunk)).await?;
            }
        }
        Ok(())
    }
}

impl TuisongbaoClient {
    /// One `POST` of `event`, its answer checked.
    async fn post(&self, event: &Event) -> Result<(), PushError> {
        let response = self
            .http
            .post(self.endpoint.clone())
            .header(AUTHORIZATION, self.authorization.clone())
            .json(event)
            .send()
            .await
            .map_err(|e| {
                PushError::from_transport(self.endpoint.as_str(), self.request_timeout, &e)
            })?;
        let status = response.status();
        let retry_after = super::retry_after::parse(response.headers(), SystemTime::now());
        let body = response.text().await.map_err(|e| {
            PushError::from_transport(self.endpoint.as_str(), self.request_timeout, &e)
        })?;
        if !status.is_success() {
            return Err(PushError::Status {
                endpoint: self.endpoint.to_string(),
                status: status.as_u16(),
                body: clip_body(&body),
                retry_after,
            });
        }
        if body.trim() != "OK" {
            return Err(PushError::UnexpectedBody {
                endpoint: self.endpoint.to_string(),
                status: status.as_u16(),
                body: clip_body(&body),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_encodes_app_id_and_secret() {
        // base64("app:secret")
        assert_eq!(basic_auth("app", "secret"), "Basic YXBwOnNlY3JldA==");
    }

    fn settings(url: &str) -> TuisongbaoSettings {
        TuisongbaoSettings {
            url: reqwest::Url::parse(url).unwrap(),
            app_id: "a".into(),
            secret: "s".to_owned().into(),
            connect_timeout: Duration::from_millis(100),
            request_timeout: Duration::from_millis(100),
        }
    }

    #[test]
    fn the_endpoint_keeps_a_base_path() {
        let client = TuisongbaoClient::new(&settings("https://api.example.com/proxy")).unwrap();
        assert_eq!(
            client.endpoint().as_str(),
            "https://api.example.com/proxy/v2/open/engine/events"
        );
        let client = TuisongbaoClient::new(&settings("http://127.0.0.1:7070")).unwrap();
        assert_eq!(
            client.endpoint().as_str(),
            "http://127.0.0.1:7070/v2/open/engine/events"
        );
    }

    #[tokio::test]
    async fn a_closed_port_is_a_retryable_connect_error() {
        // Bind then drop a listener to get a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = TuisongbaoClient::new(&settings(&format!("http://127.0.0.1:{port}"))).unwrap();
        let event = Event {
            name: "e".into(),
            data: serde_json::json!({}),
            channels: vec!["c".into()],
        };
        let err = client.send(&event).await.unwrap_err();
        assert!(matches!(err, PushError::Connect { .. }), "{err:?}");
        assert!(err.is_retryable());
    }
}
