//! The provider a process pushes through, chosen at start-up by
//! `push.provider`.

use super::{
    limits::ProviderLimits, rate_limit::RateLimiter, Event, EventPusher, PushError, PusherClient,
    TuisongbaoClient,
};
use crate::config::{ProviderKind, Settings};

/// One of the clients Herald speaks, behind [`EventPusher`].
#[derive(Debug, Clone)]
pub enum Provider {
    /// Tuisongbao's REST API.
    Tuisongbao(TuisongbaoClient),
    /// The Pusher Channels HTTP API (Pusher, Sockudo, soketi, Reverb).
    Pusher(PusherClient),
}

impl Provider {
    /// The client `settings.push.provider` names, timing its calls into
    /// `metrics` when given and waiting for `limiter`'s turn before each
    /// request. Must be called inside a Tokio runtime.
    pub fn from_settings(
        settings: &Settings,
        metrics: Option<crate::ops::Metrics>,
        limiter: RateLimiter,
    ) -> Result<Self, reqwest::Error> {
        Ok(match settings.push.provider {
            ProviderKind::Tuisongbao => {
                let client = TuisongbaoClient::new(&settings.tuisongbao)?.with_rate_limit(limiter);
                Provider::Tuisongbao(match metrics {
                    Some(metrics) => client.with_metrics(metrics),
                    None => client,
                })
            }
            ProviderKind::Pusher => {
                Provider::Pusher(PusherClient::build(&settings.pusher, metrics, limiter)?)
            }
        })
    }

    /// The URL events are posted to.
    pub fn endpoint(&self) -> String {
        match self {
            Provider::Tuisongbao(client) => client.endpoint().to_string(),
            Provider::Pusher(client) => client.endpoint().to_string(),
        }
    }
}

impl EventPusher for Provider {
    fn limits(&self) -> ProviderLimits {
        match self {
            Provider::Tuisongbao(client) => client.limits(),
            Provider::Pusher(client) => client.limits(),
        }
    }

    async fn send(&self, event: &Event) -> Result<(), PushError> {
        match self {
            Provider::Tuisongbao(client) => client.send(event).await,
            Provider::Pusher(client) => client.send(event).await,
        }
    }
}
