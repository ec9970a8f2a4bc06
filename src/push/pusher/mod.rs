//! The Pusher Channels HTTP API client (Pusher, Sockudo, soketi, Laravel
//! Reverb).
//!
//! An event is `POST {url}/apps/{app_id}/events` with
//! `{"name", "channels", "data"}`, `data` being the event's JSON as a
//! string, and the query signed as [`signature`] describes. Any 2xx answer
//! means accepted.
//!
//! Events for one channel that are due together are sent as one
//! `POST /apps/{app_id}/batch_events` of up to [`limits::MAX_BATCH`]:
//! [`PusherClient::send`] hands such an event to a batching task, which
//! sends what is waiting as soon as one of [`MAX_IN_FLIGHT`] request slots
//! is free. Nothing waits for a batch to fill: a lone event goes out at
//! once through `/events`; batches form while the slots are busy. Every
//! event of a batch gets the batch's answer. A batch the server refuses as
//! a whole with 400 or 413 is sent again event by event, so that one event
//! it will not take does not fail the others.
//!
//! Every request (an `/events` call, a whole `/batch_events` call) waits
//! for its turn under the shared rate limit ([`RateLimiter`]) first. The
//! batching task takes a batch's turn before closing the batch, so under a
//! limit the events due while the turn is awaited leave with it: the
//! limit paces requests, and batches grow to carry the events.

pub mod limits;
pub mod signature;

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, Semaphore};

use self::limits::{LIMITS, MAX_BATCH};
use super::{
    clip_body, limits::ProviderLimits, rate_limit::RateLimiter, Event, EventPusher, PushError,
};
use crate::config::PusherSettings;

/// Most requests one process has in flight through the batching task.
pub const MAX_IN_FLIGHT: usize = 8;

/// The body of `/events`.
#[derive(Debug, Serialize)]
struct EventsBody<'a> {
    name: &'a str,
    channels: &'a [String],
    data: &'a str,
}

/// One event of a `/batch_events` body.
#[derive(Debug, Clone, Serialize)]
struct BatchItem {
    name: String,
    channel: String,
    data: String,
}

/// The body of `/batch_events`.
#[derive(Debug, Serialize)]
struct BatchBody<'a> {
    batch: &'a [BatchItem],
}

/// An event waiting for the batching task, and where its answer goes.
struct Waiting {
    item: BatchItem,
    answer: oneshot::Sender<Result<(), PushError>>,
}

/// What every request needs: the HTTP pool, the app and its secret.
struct Http {
    http: reqwest::Client,
    base: reqwest::Url,
    app_id: String,
    key: String,
    secret: SecretString,
    request_timeout: Duration,
    metrics: Option<crate::ops::Metrics>,
    limiter: RateLimiter,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http")
            .field("base", &self.base.as_str())
            .field("app_id", &self.app_id)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// A pooled client for one Pusher-protocol application.
#[derive(Debug, Clone)]
pub struct PusherClient {
    http: Arc<Http>,
    batcher: mpsc::UnboundedSender<Waiting>,
}

impl PusherClient {
    /// Builds the client and starts its batching task (so it must be called
    /// inside a Tokio runtime); fails only if the TLS backend cannot
    /// initialise.
    pub fn new(settings: &PusherSettings) -> Result<Self, reqwest::Error> {
        Self::build(settings, None, RateLimiter::unlimited())
    }

    /// Like [`PusherClient::new`], timing every call into
    /// `herald_push_duration_seconds`.
    pub fn with_metrics(
        settings: &PusherSettings,
        metrics: crate::ops::Metrics,
    ) -> Result<Self, reqwest::Error> {
        Self::build(settings, Some(metrics), RateLimiter::unlimited())
    }

    /// Like [`PusherClient::new`], timing calls into `metrics` when given
    /// and waiting for `limiter`'s turn before every request.
    pub fn build(
        settings: &PusherSettings,
        metrics: Option<crate::ops::Metrics>,
        limiter: RateLimiter,
    ) -> Result<Self, reqwest::Error> {
        let http = super::http_client(settings.connect_timeout, settings.request_timeout)?;
        let base = super::as_base(&settings.url);
        let http = Arc::new(Http {
            http,
            base,
            app_id: settings.app_id.clone(),
            key: settings.key.clone(),
            secret: settings.secret.clone(),
            request_timeout: settings.request_timeout,
            metrics,
            limiter,
        });
        let (batcher, waiting) = mpsc::unbounded_channel();
        tokio::spawn(batch_events(Arc::clone(&http), waiting));
        Ok(Self { http, batcher })
    }

    /// The URL of `/events`.
    pub fn endpoint(&self) -> reqwest::Url {
        self.http.url("events")
    }
}

impl EventPusher for PusherClient {
    fn limits(&self) -> ProviderLimits {
        LIMITS
    }

    async fn send(&self, event: &Event) -> Result<(), PushError> {
        LIMITS.check(event)?;
        let data = serde_json::to_string(&event.data).map_err(|e| PushError::InvalidEvent {
            event: event.name.clone(),
            reason: e.to_string(),
        })?;
        if let [channel] = event.channels.as_slice() {
            let (answer, answered) = oneshot::channel();
            let waiting = Waiting {
                item: BatchItem {
                    name: event.name.clone(),
                    channel: channel.clone(),
                    data,
                },
                answer,
            };
            if let Err(mpsc::error::SendError(waiting)) = self.batcher.send(waiting) {
                // The batching task ended (its runtime is shutting down):
                // send this one directly.
                return self
                    .http
                    .events(&event.name, &event.channels, &waiting.item.data)
                    .await;
            }
            return answered.await.unwrap_or_else(|_| {
                Err(PushError::Transport {
                    endpoint: self.http.url("batch_events").to_string(),
                    reason: "the batching task stopped before answering".to_owned(),
                })
            });
        }
        for channels in LIMITS.channel_chunks(&event.channels) {
            self.http.events(&event.name, channels, &data).await?;
        }
        Ok(())
    }
}

/// The batching task: see the module docs. Ends when every client handle
/// is gone.
async fn batch_events(http: Arc<Http>, mut waiting: mpsc::UnboundedReceiver<Waiting>) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    loop {
        // Take a slot first: while none is free, events pile up into the
        // next batch.
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let Some(first) = waiting.recv().await else {
            return;
        };
        // The batch's turn under the shared rate limit is awaited before the
        // batch is closed, so the events due meanwhile join it.
        let turn = http.limiter.acquire().await;
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match waiting.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        if let Err(e) = turn {
            let e = PushError::from(e);
            for waiting in batch {
                let _ = waiting.answer.send(Err(e.clone()));
            }
            continue;
        }
        let http = Arc::clone(&http);
        tokio::spawn(async move {
            send_batch(&http, batch).await;
            drop(slot);
        });
    }
}

/// Sends `batch`, whose turn under the rate limit is taken, and answers
/// each of its events.
async fn send_batch(http: &Http, batch: Vec<Waiting>) {
    if let [one] = batch.as_slice() {
        let item = &one.item;
        let body = EventsBody {
            name: &item.name,
            channels: std::slice::from_ref(&item.channel),
            data: &item.data,
        };
        let result = http.timed_post_in_turn("events", &body).await;
        for waiting in batch {
            let _ = waiting.answer.send(result.clone());
        }
        return;
    }
    let items: Vec<BatchItem> = batch.iter().map(|w| w.item.clone()).collect();
    let result = http
        .timed_post_in_turn("batch_events", &BatchBody { batch: &items })
        .await;
    let refused_as_a_whole = matches!(&result, Err(e) if matches!(e.status(), Some(400 | 413)));
    if !refused_as_a_whole {
        for waiting in batch {
            let _ = waiting.answer.send(result.clone());
        }
        return;
    }
    tracing::warn!(
        events = batch.len(),
        error = %result.as_ref().err().map(ToString::to_string).unwrap_or_default(),
        "batch refused as a whole; sending its events one by one"
    );
    for waiting in batch {
        let item = &waiting.item;
        let result = http
            .events(&item.name, std::slice::from_ref(&item.channel), &item.data)
            .await;
        let _ = waiting.answer.send(result);
    }
}

impl Http {
    /// `{base}/apps/{app_id}/{resource}`.
    fn url(&self, resource: &str) -> reqwest::Url {
        let mut url = self.base.clone();
        url.set_path(&format!(
            "{}apps/{}/{resource}",
            self.base.path(),
            self.app_id
        ));
        url
    }

    /// One `/events` call.
    async fn events(&self, name: &str, channels: &[String], data: &str) -> Result<(), PushError> {
        let body = EventsBody {
            name,
            channels,
            data,
        };
        self.timed_post("events", &body).await
    }

    /// One call, after its turn under the rate limit.
    async fn timed_post(&self, resource: &str, body: &impl Serialize) -> Result<(), PushError> {
        self.limiter.acquire().await?;
        self.timed_post_in_turn(resource, body).await
    }

    /// One call whose turn under the rate limit is already taken.
    async fn timed_post_in_turn(
        &self,
        resource: &str,
        body: &impl Serialize,
    ) -> Result<(), PushError> {
        super::timed(self.metrics.as_ref(), self.post(resource, body)).await
    }

    /// One signed `POST` of `body` to `resource`, its answer checked.
    async fn post(&self, resource: &str, body: &impl Serialize) -> Result<(), PushError> {
        let mut url = self.url(resource);
        let endpoint = url.to_string();
        let body = serde_json::to_vec(body).map_err(|e| PushError::InvalidEvent {
            event: resource.to_owned(),
            reason: e.to_string(),
        })?;
        let timestamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let params = signature::signed_params(
            &self.key,
            self.secret.expose_secret(),
            url.path(),
            &body,
            timestamp,
        );
        url.query_pairs_mut().extend_pairs(&params);
        let response = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| PushError::from_transport(&endpoint, self.request_timeout, &e))?;
        let status = response.status();
        let retry_after = super::retry_after::parse(response.headers(), SystemTime::now());
        let text = response
            .text()
            .await
            .map_err(|e| PushError::from_transport(&endpoint, self.request_timeout, &e))?;
        if status.is_success() {
            return Ok(());
        }
        Err(PushError::Status {
            endpoint,
            status: status.as_u16(),
            body: clip_body(&text),
            retry_after,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str) -> PusherSettings {
        PusherSettings {
            url: reqwest::Url::parse(url).unwrap(),
            app_id: "42".into(),
            key: "k".into(),
            secret: "s".to_owned().into(),
            connect_timeout: Duration::from_millis(100),
            request_timeout: Duration::from_millis(100),
        }
    }

    #[tokio::test]
    async fn the_endpoints_keep_a_base_path() {
        let client = PusherClient::new(&settings("https://ws.example.com/pusher")).unwrap();
        assert_eq!(
            client.endpoint().as_str(),
            "https://ws.example.com/pusher/apps/42/events"
        );
        assert_eq!(
            client.http.url("batch_events").as_str(),
            "https://ws.example.com/pusher/apps/42/batch_events"
        );
    }

    #[tokio::test]
    async fn a_closed_port_is_a_retryable_connect_error_for_one_and_many_channels() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = PusherClient::new(&settings(&format!("http://127.0.0.1:{port}"))).unwrap();
        for channels in [vec!["c".to_owned()], vec!["a".to_owned(), "b".to_owned()]] {
            let event = Event {
                name: "e".into(),
                data: serde_json::json!({}),
                channels,
            };
            let err = client.send(&event).await.unwrap_err();
            assert!(matches!(err, PushError::Connect { .. }), "{err:?}");
        }
    }
}
