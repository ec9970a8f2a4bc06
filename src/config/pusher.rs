//! `[pusher]`: a Pusher Channels HTTP API endpoint (Pusher, Sockudo,
//! soketi, Laravel Reverb) and its app credentials, used when
//! `push.provider` is `pusher`.

use std::time::Duration;

use secrecy::SecretString;

use super::setting::{define_settings, millis, non_empty, Values};
use super::ConfigError;

define_settings! {
    section "pusher";
    URL: "url" = "http://127.0.0.1:7070", "Pusher HTTP API base URL, without /apps (the sandbox by default; Pusher: https://api-CLUSTER.pusher.com)";
    APP_ID: "app_id" = "herald-dev", "app id (the /apps/{app_id} path)";
    KEY: "key" = "herald-dev-key", "app key (auth_key; public)";
    SECRET: "secret" = "herald-dev-secret", "app secret that signs requests (never logged)";
    CONNECT_TIMEOUT_MS: "connect_timeout_ms" = "3000", "connect timeout";
    REQUEST_TIMEOUT_MS: "request_timeout_ms" = "10000", "whole-request timeout";
}

/// A Pusher-protocol endpoint and app.
#[derive(Debug, Clone)]
pub struct PusherSettings {
    /// Base URL, without the `/apps/...` path.
    pub url: reqwest::Url,
    /// Application id.
    pub app_id: String,
    /// Application key (public: browsers use it too).
    pub key: String,
    /// Application secret; never printed.
    pub secret: SecretString,
    /// Connection timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout.
    pub request_timeout: Duration,
}

/// Reads and checks `[pusher]`.
pub(super) fn read(values: &Values) -> Result<PusherSettings, ConfigError> {
    Ok(PusherSettings {
        url: values.checked(&URL, |url| {
            non_empty(url).and_then(|url| super::tuisongbao::http_url(&url))
        })?,
        app_id: values.checked(&APP_ID, non_empty)?,
        key: values.checked(&KEY, non_empty)?,
        secret: SecretString::from(values.checked(&SECRET, non_empty)?),
        connect_timeout: values.checked(&CONNECT_TIMEOUT_MS, millis)?,
        request_timeout: values.checked(&REQUEST_TIMEOUT_MS, millis)?,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::{tests::vars, Settings};

    #[test]
    fn the_secret_never_prints() {
        let s = Settings::load_from(&vars(&[("HERALD_PUSHER_SECRET", "hunter2")])).unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn the_url_must_be_http() {
        let err = Settings::load_from(&vars(&[
            ("HERALD_PUSH_PROVIDER", "pusher"),
            ("HERALD_PUSHER_URL", "ws://x"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("HERALD_PUSHER_URL"), "{err}");
    }
}
